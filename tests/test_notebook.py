"""What a notebook user sees, on a real Jupyter kernel (nbclient + ipykernel), once with
ipywidgets and once in a kernel where importing ipywidgets fails (a module of that name on the
kernel's PYTHONPATH that raises ImportError: nothing is uninstalled).

One kernel start per run. The notebook follows the README: a table, computed columns with two
destinations, their file URLs, the table itself, a large result, ``pxl.check()``, the settings
and an insert of a missing file. The saved outputs are what a person reads in the notebook (or
in a page exported from it); the messages the kernel sent while it ran are what a person
watching saw (the progress bars)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[1]
ROWS = 45

CELLS = [
    # 0: a table of 45 photos
    """import os
os.chdir({workdir!r})
import pxlite as pxl
from PIL import Image
for i in range({rows}):
    Image.new("RGB", (64, 48), (i * 5, 90, 160)).save(f"p{{i}}.jpg")
db = pxl.connect("photos.pxl")
t = db.create_table("media", {{"image": pxl.Image, "label": pxl.String}})
t.insert([{{"image": f"p{{i}}.jpg", "label": f"photo {{i}}"}} for i in range({rows})])""",
    # 1, 2: computed columns (a bar while they run), an explicit and the default destination
    't.add_computed_column(rotated=t.image.rotate(90), destination="rotated/")',
    "t.add_computed_column(thumb=t.image.thumbnail((32, 32)))",
    # 3: progress=False: no bar at all
    """pxl.configure(progress=False)
status = t.add_computed_column(flipped=t.image.transpose(pxl.FLIP_LEFT_RIGHT))
pxl.configure(progress=None)
status""",
    # 4, 5: where the files went, as HTML and as text
    "rs = t.select(t.label, t.rotated.fileurl, t.thumb.fileurl).head(3)\nrs",
    "print(rs)",
    # 6, 7: the table itself, and describe()
    "t",
    "t.describe()",
    # 8: a large result
    "t.collect()",
    # 9: check() after connect(): no default database made to check it
    """try:
    pxl.check()
except pxl.NotFoundError as e:
    print(f"NotFoundError: {e}")
db.check()""",
    # 10: the settings
    "pxl.settings()",
    # 11: an insert of a file that does not exist
    't.insert([{"image": "missing.jpg", "label": "gone"}])',
]


class _Recording(nbclient.NotebookClient):
    """A notebook client that also keeps every output message the kernel sent, per cell."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent: dict[int, list[tuple[str, dict]]] = {}

    def process_message(self, msg: dict, cell: Any, cell_index: int) -> Any:
        if msg["msg_type"] in ("display_data", "update_display_data", "stream"):
            self.sent.setdefault(cell_index, []).append((msg["msg_type"], msg["content"]))
        return super().process_message(msg, cell, cell_index)


def _run(tmp_path: Path, widgets: bool) -> tuple[Any, _Recording, Path]:
    workdir, home = tmp_path / "work", tmp_path / "home"
    workdir.mkdir()
    paths = [str(ROOT)]
    if not widgets:
        shadow = tmp_path / "no-widgets"
        (shadow / "ipywidgets").mkdir(parents=True)
        (shadow / "ipywidgets" / "__init__.py").write_text(
            "raise ModuleNotFoundError(\"No module named 'ipywidgets'\", name='ipywidgets')\n")
        paths.insert(0, str(shadow))
    env = {**os.environ, "PXLITE_HOME": str(home),
           "PYTHONPATH": os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")])}
    env.pop("COLUMNS", None)
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(c.format(workdir=str(workdir), rows=ROWS) if i == 0 else c)
        for i, c in enumerate(CELLS)])
    client = _Recording(nb, timeout=300, kernel_name="python3", allow_errors=True)
    client.execute(env=env, cwd=str(workdir))
    return nb, client, home


def _text(output: Any) -> str:
    if output.output_type == "stream":
        return output.text
    if output.output_type == "error":
        return "\n".join(output.traceback)
    return "\n".join(str(v) for v in output.get("data", {}).values())


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.mark.parametrize("widgets", [True, False], ids=["ipywidgets", "no-ipywidgets"])
def test_a_notebook_shows_clean_output(tmp_path: Path, widgets: bool) -> None:
    nb, client, home = _run(tmp_path, widgets)
    cells = nb.cells
    every = [o for c in cells for o in c.outputs]

    # -- no warning, no stderr noise anywhere (a TqdmWarning was a pink box)
    stderr = [o.text for o in every if o.output_type == "stream" and o.name == "stderr"]
    assert stderr == [], stderr
    assert not any("Tqdm" in _text(o) or "Warning" in _text(o) for o in every)
    if widgets:
        import ipywidgets  # noqa: F401  (the run with widgets had them)

    # -- progress: shown while an add ran, one display updated in place, nothing left behind
    for i in (1, 2):
        sent = client.sent.get(i, [])
        shown = [c for kind, c in sent if kind == "display_data"]
        assert len(shown) == 1, sent                          # one bar per operation
        if widgets:
            assert "application/vnd.jupyter.widget-view+json" in shown[0]["data"], shown
        else:
            drawn = [c["data"].get("text/html", "") for kind, c in sent
                     if kind == "update_display_data"]
            assert any("<progress" in h and f"/{ROWS}" in h for h in drawn), sent
        lines = [line for o in cells[i].outputs if o.output_type != "execute_result"
                 for line in _text(o).splitlines() if line.strip()]
        assert len(lines) <= 1, cells[i].outputs              # at most one line, saved
        assert not any("widget-view" in _text(o) for o in cells[i].outputs)
        result = [o for o in cells[i].outputs if o.output_type == "execute_result"]
        assert f"Added {ROWS} column values with 0 errors" in _text(result[0])
    assert "display_data" not in {k for k, _ in client.sent.get(3, [])}  # progress=False
    assert [o.output_type for o in cells[3].outputs] == ["execute_result"]

    # -- file URLs keep their folder in the HTML and in the text table
    html = cells[4].outputs[0].data["text/html"]
    text = cells[4].outputs[0].data["text/plain"] + cells[5].outputs[0].text
    for shown in (html, text):
        assert "/rotated/" in shown and "/photos.pxl.media/" in shown, shown
        assert re.search(r"/[0-9a-f]{2}/[0-9a-f]{4}\u2026[0-9a-f]{4}\.jpg", shown), shown
    assert re.search(r'title="file://[^"]*/rotated/[0-9a-f]{12}/\d+/[0-9a-f]{2}/[0-9a-f]{64}'
                     r'\.jpg"', html), html

    # -- the table shows as HTML (Table._repr_html_), and describe() too
    for i in (6, 7):
        data = cells[i].outputs[0].data
        assert "<table" in data["text/html"] and "Computed with" in data["text/html"], data
        assert "image.rotate(90)" in data["text/html"] and "rotated/" in data["text/html"]
    assert cells[6].outputs[0].output_type == "execute_result"

    # -- a large result: 20 rows in the HTML, the rest counted
    big = cells[8].outputs[0].data["text/html"]
    assert big.count("<tr>") == 1 + 20 and f"{ROWS - 20} more rows ({ROWS} in all)" in big

    # -- pxl.check() after connect(): names the database it would check, creates none
    said = _text(cells[9].outputs[0])
    assert said.startswith("NotFoundError: pxl.check() checks the default database"), said
    assert "db.check()" in said and str(tmp_path / "work" / "photos.pxl") in said
    report = cells[9].outputs[1].data["text/plain"]
    assert report.startswith(f"pxlite check of {tmp_path / 'work' / 'photos.pxl'}: OK"), report
    assert not (home / "pxlite.db").exists()

    # -- the settings, one a line
    settings = cells[10].outputs[0].data["text/plain"]
    assert len(settings.splitlines()) > 10 and "output_media_dest" in settings

    # -- a missing file: the message once, no internal chain, a short traceback
    (error,) = cells[11].outputs
    assert error.output_type == "error" and error.ename == "ComputeError"
    assert "does not exist" in error.evalue and "on_error='ignore'" in error.evalue
    trace = _ANSI.sub("", "\n".join(error.traceback))
    assert trace.count("does not exist") == 1, trace
    assert "direct cause" not in trace and "During handling" not in trace, trace
    assert "concurrent/futures" not in trace
    assert len(error.traceback) <= 8 and len(trace.splitlines()) <= 45, trace
