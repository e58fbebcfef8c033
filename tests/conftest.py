"""Shared fixtures: an isolated PXLITE_HOME per test, a fresh database, generated images.

Real storage servers (moto, the GCS emulator, Azurite) come from the fixtures_storage plugin.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["fixtures_storage"]


@pytest.fixture(autouse=True)
def pxlite_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own PXLITE_HOME and no leftover configure() or PXLITE_* settings.

    Tests keep no history by default (``PXLITE_VERSION_RETENTION_DAYS=0``): a delete frees its
    files at the end of the same write, through the pruning of the version before it, as the
    tests written before versions expect. The tests of versions set their retention."""
    import os

    for k in list(os.environ):
        if k.startswith("PXLITE_"):
            monkeypatch.delenv(k)
    home = tmp_path / "pxhome"
    monkeypatch.setenv("PXLITE_HOME", str(home))
    # Not through monkeypatch: a test calling monkeypatch.undo() keeps it (as its child
    # processes, which inherit it, do).
    os.environ["PXLITE_VERSION_RETENTION_DAYS"] = "0"
    from pxlite import config

    config.reset()
    yield home
    config.reset()
    os.environ.pop("PXLITE_VERSION_RETENTION_DAYS", None)


@pytest.fixture
def db(tmp_path: Path):
    import pxlite as pxl

    conn = pxl.connect(tmp_path / "test.pxl")
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pxlite.imagegen import write_images

    d = tmp_path_factory.mktemp("images")
    write_images(d, 6, size=(64, 48))
    write_images(d, 2, size=(40, 30), fmt="png")
    return d


@pytest.fixture
def jpegs(image_dir: Path) -> list[Path]:
    return sorted(image_dir.glob("*.jpg"))


@pytest.fixture
def pngs(image_dir: Path) -> list[Path]:
    return sorted(image_dir.glob("*.png"))


@pytest.fixture
def fresh_backends():
    """No storage backend cached from another test, before or after this one."""
    from pxlite import storage

    storage.clear_backends()
    yield
    storage.clear_backends()
