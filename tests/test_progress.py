"""Progress bars (pxlite.progress): shown only where a person watches, never counted otherwise.
The notebook bars are exercised on a real Jupyter kernel by tests/test_notebook.py."""

from __future__ import annotations

import pytest

from pxlite import config, progress


def _no_count() -> int:
    raise AssertionError("rows counted although no bar can show")


def test_no_bar_where_nobody_watches(monkeypatch) -> None:
    s = config.resolve({"progress": False})
    assert progress.bar(_no_count, "x", s) is None
    assert progress._where() is None                   # pytest captures stderr: not a terminal
    assert progress.bar(_no_count, "x", config.resolve()) is None


def test_a_terminal_gets_a_tqdm_bar_unless_switched_off(monkeypatch) -> None:
    monkeypatch.setattr(progress, "_where", lambda: "terminal")
    bar = progress.bar(lambda: 1000, "x", config.resolve(), initial=10)
    assert bar is not None
    assert bar.total == 1000 and bar.n == 10            # type: ignore[attr-defined]
    bar.update(5)
    bar.close()
    assert progress.bar(lambda: 1, "x", config.resolve()) is None      # one row: no bar
    assert progress.bar(_no_count, "x", config.resolve({"progress": False})) is None


@pytest.mark.parametrize("value", ["0", "false", "off"])
def test_progress_switched_off_by_the_environment(monkeypatch, value: str) -> None:
    monkeypatch.setenv("PXLITE_PROGRESS", value)
    monkeypatch.setattr(progress, "_where", lambda: "notebook")
    assert progress.bar(_no_count, "x", config.resolve()) is None
