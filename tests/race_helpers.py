"""Deterministic races between processes: both sides of each race are real processes, and the
interleaving is forced at pxlite's named fault points (:mod:`pxlite.faults`), never left to timing.

The test (the parent) starts :func:`spawn` children. A child connects, optionally waits for a
file to appear before its operation (``start_after``), runs one operation, and prints its
outcome as JSON on its last stdout line (an error pxlite raised is an outcome, not a crash).
Its ``hooks`` replace ``pxlite.faults.point``: at the ``nth`` hit of a point (``every``: that
hit and each later one) the child touches ``signal`` and then waits for ``wait`` to exist.
A wait gives up after :data:`WAIT_S` seconds (saying so on stderr) so nothing hangs; the test
then fails on the outcome. Hooks never wait at ``before_commit``: that runs inside the write
lock, and the other side would wait for the lock until the busy timeout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import PIL.Image

import pxlite as pxl

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"

#: How long a child waits for a signal file before giving up.
WAIT_S = 30.0
#: How long the parent waits for a child to finish, or for a signal from it.
PARENT_WAIT_S = 90.0

#: The input of ``rot_or_fail`` that fails (13 pixels wide), and the file whose appearance it
#: waits for before failing (set by the child from its arguments).
FAIL_WIDTH = 13
_fail_after: str | None = None


def wait_for_file(path: str | os.PathLike[str], timeout: float = WAIT_S) -> bool:
    """Wait until ``path`` exists; False (and a line on stderr) when it did not in time."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            print(f"race_helpers: gave up waiting for {path}", file=sys.stderr, flush=True)
            return False
        time.sleep(0.005)
    return True


@pxl.udf
def rot_or_fail(img: PIL.Image.Image) -> PIL.Image.Image:
    """rotate(90), except that an image FAIL_WIDTH pixels wide fails, once the file named by the
    child's ``fail_after`` argument exists (so it fails exactly when the test wants)."""
    if img.width == FAIL_WIDTH:
        if _fail_after:
            wait_for_file(_fail_after)
        raise ValueError("this input fails on purpose")
    return img.rotate(90)


# ---- the child ---------------------------------------------------------------------------------
def _install_hooks(hooks: list[dict[str, Any]]) -> None:
    from pxlite import faults

    hits: dict[str, int] = {}
    lock = threading.Lock()

    def point(name: str) -> None:
        with lock:
            hits[name] = hits.get(name, 0) + 1
            n = hits[name]
        for h in hooks:
            if h["point"] == name and (n == h["nth"] or (h.get("every") and n > h["nth"])):
                if h.get("signal"):
                    Path(h["signal"]).touch()
                if h.get("wait"):
                    wait_for_file(h["wait"])

    faults.point = point


def _image(spec: Any) -> Any:
    """A row's image: ``{"file": path}`` (a reference) or ``{"color", "size"}`` (a PIL image,
    stored as a new file in the media folder)."""
    if "file" in spec:
        return spec["file"]
    return PIL.Image.new("RGB", tuple(spec["size"]), spec["color"])


def _run(conn: pxl.Connection, op: dict[str, Any]) -> Any:
    kind = op["kind"]
    if kind == "many":  # several operations in turn: the outcome of the last
        return [_run(conn, o) for o in op["ops"]][-1]
    if kind == "drop_table":
        return conn.drop_table("t")
    t = conn.get_table("t")
    if kind == "insert":
        rows = [{"k": r["k"], "image": _image(r["image"])} for r in op["rows"]]
        return t.insert(rows, on_error=op.get("on_error", "abort"))
    if kind == "delete":
        return t.delete(where=t.k == op["k"])
    if kind == "add":
        exprs: dict[str, Callable[[], Any]] = {
            "rotate90": lambda: t.image.rotate(90),
            "width": lambda: t.image.width,
            "rot_or_fail": lambda: rot_or_fail(t.image),
        }
        return t.add_computed_column(destination=op.get("destination"),
                                     **{op["name"]: exprs[op["expr"]]()})
    raise AssertionError(f"unknown operation {kind!r}")


def main(argv: Sequence[str]) -> None:
    """The child: connect, install the hooks (so hits count from the operation on, not from
    the connect), wait for ``start_after``, run the operation, print its outcome as JSON."""
    global _fail_after
    a = json.loads(argv[0])
    _fail_after = a.get("fail_after")
    if a.get("single_thread"):
        from pxlite import compute

        compute.workers = lambda: 1  # one compute thread: files are written one at a time
    conn = pxl.connect(a["db"], config=a.get("config"))
    _install_hooks(a.get("hooks", []))
    if a.get("start_after"):
        wait_for_file(a["start_after"])
    try:
        status = _run(conn, a["op"])
        out: dict[str, Any] = {"ok": True, "status": str(status),
                               "num_rows": getattr(status, "num_rows", None),
                               "num_errors": getattr(status, "num_errors", None)}
    except Exception as e:  # the outcome the test judges
        out = {"ok": False, "mro": [f"{c.__module__}.{c.__name__}" for c in type(e).__mro__],
               "error": f"{type(e).__module__}.{type(e).__name__}: {e}",
               "pxlite_error": isinstance(e, pxl.PxliteError)}
    conn.close()
    print(json.dumps(out), flush=True)


# ---- the parent --------------------------------------------------------------------------------
BOOT = (f"import sys; sys.path[:0] = [{str(TESTS)!r}, {str(ROOT)!r}]; import race_helpers; "
        "race_helpers.main(sys.argv[1:])")


class Child:
    """One child process running one operation (see the module docstring)."""

    def __init__(self, name: str, args: dict[str, Any], home: Path) -> None:
        self.name = name
        env = {**os.environ, "PXLITE_HOME": str(home)}
        self.proc = subprocess.Popen([sys.executable, "-c", BOOT, json.dumps(args)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=env)
        self.out = self.err = ""

    def done(self) -> bool:
        return self.proc.poll() is not None

    def result(self, timeout: float = PARENT_WAIT_S) -> dict[str, Any]:
        """Wait for the child; its outcome (an AssertionError with its stderr if it crashed)."""
        try:
            self.out, self.err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"child {self.name} did not finish in {timeout} s: "
                                 f"{self.err[-3000:]}") from None
        lines = self.out.strip().splitlines()
        if self.proc.returncode != 0 or not lines:
            raise AssertionError(f"child {self.name} crashed ({self.proc.returncode}): "
                                 f"{self.out[-2000:]} {self.err[-4000:]}")
        got: dict[str, Any] = json.loads(lines[-1])
        got["stderr"] = self.err
        return got

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.out, self.err = self.proc.communicate()


def spawn(tmp_path: Path, name: str, db: Path, op: dict[str, Any], *,
          config: dict[str, Any] | None = None, hooks: Sequence[dict[str, Any]] = (),
          start_after: Path | None = None, fail_after: Path | None = None,
          single_thread: bool = False) -> Child:
    """Start a child running ``op`` on database ``db`` (see the module docstring)."""
    args = {"db": str(db), "config": config, "op": op, "hooks": [
        {k: (str(v) if isinstance(v, Path) else v) for k, v in h.items()} for h in hooks],
        "start_after": str(start_after) if start_after else None,
        "fail_after": str(fail_after) if fail_after else None,
        "single_thread": single_thread}
    return Child(name, args, tmp_path / f"home-{name}")


def wait_until(what: str, pred: Callable[[], bool], children: Sequence[Child] = (),
               timeout: float = PARENT_WAIT_S, stop_if_exited: Sequence[Child] = ()) -> None:
    """Wait until ``pred()``; fail naming ``what`` on timeout, or when one of ``children``
    exits first (its output in the message). A child in ``stop_if_exited`` that exits ends the
    wait instead (the race went the other way: that is for the test to judge)."""
    deadline = time.monotonic() + timeout
    while not pred():
        if any(c.done() for c in stop_if_exited):
            return
        for c in children:
            if c.done():
                out, err = c.proc.communicate()
                raise AssertionError(f"child {c.name} exited ({c.proc.returncode}) before "
                                     f"{what}: {out[-2000:]} {err[-4000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.005)


def reap(children: Sequence[Child]) -> None:
    """Kill whatever child is still running (a failed test leaves none behind)."""
    for c in children:
        if not c.done():
            c.kill()
