"""Child processes running a long operation, and waiting for their progress: shared by the tests
that kill or interrupt a long operation (an add, a view's build) half-way and resume it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pxlite as pxl
from pxlite import catalog


def start(tmp_path: Path, script: str, *args: str) -> subprocess.Popen:
    """Runs ``script`` (Python source) in a child process with its own pxlite home, its output
    piped for the test to read."""
    path = tmp_path / "child.py"
    path.write_text(script)
    return subprocess.Popen([sys.executable, str(path), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PXLITE_HOME": str(tmp_path / "home")})


def wait_for_progress(db_path: Path, at_least: int, *, kind: str | None = None,
                      timeout: float = 60) -> None:
    """Until the (first) job of ``kind`` (any kind: None) has committed ``at_least`` rows."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with pxl.connect(db_path) as db:
            jobs = [j for j in catalog.jobs(db.db) if kind is None or j.kind == kind]
            if jobs and jobs[0].done_rows >= at_least:
                return
        time.sleep(0.05)
    raise AssertionError(f"the child's {kind or 'job'} did not commit {at_least} rows "
                         f"in {timeout} s")
