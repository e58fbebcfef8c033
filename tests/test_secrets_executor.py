"""Credentials in a Dask scheduler address never reach an error or ``pxlite config`` (issue 17,
point 9).

``executor='tcp://user:PW@host:8786'`` or ``'tcp://host:8786?token=...'`` carry a secret the way
an endpoint URL can; like every other secret pxlite handles they are masked wherever the address
is shown. Nothing listens at 127.0.0.1:1, so each call fails fast.

Each call runs in a process of its own: a ``distributed.Client`` whose constructor failed can
deadlock a later one in the same process when the garbage collector closes it while the next
one starts (a lock taken twice in one thread), so one failed client per process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PW = f"PXPW{uuid.uuid4().hex}"
TOKEN = f"PXTOKEN{uuid.uuid4().hex}"
ADDRESSES = [(f"tcp://pxuser:{PW}@127.0.0.1:1", PW),
             (f"tcp://127.0.0.1:1?token={TOKEN}", TOKEN)]
IDS = ["userinfo", "token"]

ATTEMPT = textwrap.dedent("""
    import json, os, sys, traceback
    sys.path[:0] = [{root!r}]
    import pxlite as pxl
    from pxlite import executors
    from PIL import Image
    a = json.loads(sys.argv[1])
    executors.CONNECT_TIMEOUT_S = 1.0  # nothing listens there: fail fast
    db = pxl.connect(a["db"])
    t = db.create_table("t", {{"image": pxl.Image}})
    t.insert(image=Image.new("RGB", (8, 8), "red"))
    if a["how"] == "insert":  # the insert computes its rows' cells where executor= says
        t.add_computed_column(r=t.image.rotate(90))
    out = {{"raised": False}}
    try:
        if a["how"] == "add_computed_column":
            t.add_computed_column(r=t.image.rotate(90), executor=a["address"])
        elif a["how"] == "insert":
            t.insert(image=Image.new("RGB", (4, 4), "blue"), executor=a["address"])
        else:
            pxl.configure(executor=a["address"])  # the setting, used by the next computation
            t.add_computed_column(r=t.image.rotate(90))
    except Exception as e:
        out = {{"raised": True, "pxlite": isinstance(e, pxl.PxliteError),
               "type": type(e).__module__ + "." + type(e).__name__,
               "text": "\\n".join([str(e), repr(e), "".join(traceback.format_exception(e))])}}
    out["rows"], out["columns"] = t.count(), t.columns()
    print(json.dumps(out), flush=True)
    os._exit(0)  # no interpreter shutdown: a failed Dask client's finaliser can take seconds
""").format(root=str(ROOT))


@pytest.mark.parametrize("address,secret", ADDRESSES, ids=IDS)
@pytest.mark.parametrize("how", ["add_computed_column", "insert", "configure"])
def test_a_secret_in_a_scheduler_address_never_reaches_an_error(tmp_path, address, secret, how):
    args = {"db": str(tmp_path / "x.pxl"), "how": how, "address": address}
    run = subprocess.run([sys.executable, "-c", ATTEMPT, json.dumps(args)], capture_output=True,
                         text=True, timeout=120,
                         env={**os.environ, "PXLITE_HOME": str(tmp_path / "home")})
    assert run.returncode == 0 and run.stdout.strip(), run.stderr[-4000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["raised"], got
    assert secret not in got["text"], f"the secret is echoed by the error:\n{got['text']}"
    assert got["pxlite"], f"not a pxlite error: {got['type']}"
    assert "127.0.0.1" in got["text"], got["text"]  # it still says which scheduler
    assert got["rows"] == 1  # nothing was written
    assert got["columns"] == (["image", "r"] if how == "insert" else ["image"])


@pytest.mark.parametrize("address,secret", ADDRESSES, ids=IDS)
def test_pxlite_config_masks_a_secret_in_the_executor_setting(tmp_path, address, secret):
    out = subprocess.run([sys.executable, "-m", "pxlite.cli", "config"], capture_output=True,
                         text=True, timeout=60,
                         env={**os.environ, "PXLITE_HOME": str(tmp_path / "home"),
                              "PXLITE_EXECUTOR": address})
    assert out.returncode == 0, out.stderr
    assert secret not in out.stdout + out.stderr, out.stdout
    executor_line = next(line for line in out.stdout.splitlines() if line.startswith("executor"))
    assert "127.0.0.1:1" in executor_line and "[environment]" in executor_line, executor_line
