"""Docs that run: the README's Python example executes as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).parents[1] / "README.md"


def test_readme_example_runs(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert blocks, "the README has a Python example"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PXLITE_VERSION_RETENTION_DAYS", "30")  # as a user has it (conftest: 0)
    for code in blocks:
        exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})
    out = capsys.readouterr().out
    assert "Inserted 2 rows with 0 errors" in out and "1 row left" in out
    assert "3 delete +0 -2\n" in out and "3 rows in version 2" in out  # Undo and history
    # file URLs keep their folders; describe() says where files go
    row = next(line for line in out.splitlines() if line.startswith("a path "))
    assert "/photos.pxl.media/" in row and "/rotated/" in row, out
    assert "Table 'demo.media' (2 rows)" in out and "(set by destination=)" in out
    assert (tmp_path / "photos.pxl").is_file() and any((tmp_path / "rotated").rglob("*.jpg"))


def test_readme_names_the_two_commands():
    text = README.read_text(encoding="utf-8")
    assert "python -m pip install . && pxlite demo" in text
    assert "bash tools/test.sh" in text
    ci = (Path(__file__).parents[1] / ".ci" / "run").read_text()
    assert "tools/test.sh" in ci
