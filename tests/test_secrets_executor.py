"""Credentials in a Dask scheduler address never reach an error or ``pxlite config`` (issue 17,
point 9).

``executor='tcp://user:PW@host:8786'`` or ``'tcp://host:8786?token=...'`` carry a secret the way
an endpoint URL can; like every other secret pxlite handles they are masked wherever the address
is shown. Nothing listens at 127.0.0.1:1, so each call fails fast.
"""

from __future__ import annotations

import os
import subprocess
import sys
import traceback
import uuid

import pytest
from PIL import Image

import pxlite as pxl
from pxlite import executors

PW = f"PXPW{uuid.uuid4().hex}"
TOKEN = f"PXTOKEN{uuid.uuid4().hex}"
ADDRESSES = [(f"tcp://pxuser:{PW}@127.0.0.1:1", PW),
             (f"tcp://127.0.0.1:1?token={TOKEN}", TOKEN)]
IDS = ["userinfo", "token"]


def _texts(error: BaseException) -> str:
    return "\n".join([str(error), repr(error), "".join(traceback.format_exception(error))])


@pytest.fixture
def table(tmp_path, monkeypatch):
    monkeypatch.setattr(executors, "CONNECT_TIMEOUT_S", 1.0, raising=False)
    db = pxl.connect(tmp_path / "x.pxl")
    t = db.create_table("t", {"image": pxl.Image})
    t.insert(image=Image.new("RGB", (8, 8), "red"))
    yield t
    db.close()


@pytest.mark.parametrize("address,secret", ADDRESSES, ids=IDS)
@pytest.mark.parametrize("how", ["add_computed_column", "insert", "configure"])
def test_a_secret_in_a_scheduler_address_never_reaches_an_error(table, address, secret, how):
    t = table
    if how == "insert":  # the insert computes its rows' cells where executor= says
        t.add_computed_column(r=t.image.rotate(90))
    with pytest.raises(Exception) as e:  # its kind: checked after the leak
        if how == "add_computed_column":
            t.add_computed_column(r=t.image.rotate(90), executor=address)
        elif how == "insert":
            t.insert(image=Image.new("RGB", (4, 4), "blue"), executor=address)
        else:
            pxl.configure(executor=address)  # the setting, used by the next computation
            t.add_computed_column(r=t.image.rotate(90))
    text = _texts(e.value)
    assert secret not in text, f"the secret is echoed by the error:\n{text}"
    assert isinstance(e.value, pxl.PxliteError), text
    assert "127.0.0.1" in text, text  # it still says which scheduler
    assert t.count() == 1  # nothing was written
    if how != "insert":
        assert "r" not in t.columns()


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
