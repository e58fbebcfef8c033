"""What a person sees of pxlite's values, as text and as notebook HTML.

A long URL is cut where it says least, never where it says where a file is: the scheme, the
bucket or host and the destination folder stay, the content hash of a file pxlite wrote is
abbreviated (``5e52…/3/cd/cd82…a159.jpg``, as git abbreviates commits), and only then are folders
in the middle of a long path dropped. The full URL stays in the HTML's hover title and, in
Python, in the value itself. This module also holds the CSS of pxlite's notebook tables (scoped
to them, and specific enough that a notebook's own table style cannot right-align or centre
them) and :class:`TableDescription`, what ``describe()`` and ``repr(t)`` show.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .media import split_key

#: Marks what a cut left out (one character wide in a text table).
ELLIPSIS = "\u2026"
#: The widest a URL is shown: in a text table, in notebook HTML (where the hover shows it all).
TEXT_URL_WIDTH = 56
HTML_URL_WIDTH = 60

#: Scoped to pxlite's own tables (``div.pxl-rs table.pxl-t``); the selectors are more specific
#: than JupyterLab's ``:not(.jp-RenderedMarkdown).jp-RenderedHTMLCommon td`` (which right-aligns
#: and centres tables), so ours win in any order. Colours are translucent greys: readable on a
#: light and on a dark theme.
CSS = ("<style>"
       ".pxl-rs table.pxl-t{border-collapse:collapse;font-size:13px;margin:0 0 4px 0;"
       "table-layout:auto;width:auto}"
       ".pxl-rs table.pxl-t th,.pxl-rs table.pxl-t td{border:1px solid rgba(128,128,128,.4);"
       "padding:2px 6px;text-align:left;vertical-align:top;max-width:40em;line-height:1.35;"
       "white-space:normal;overflow-wrap:anywhere}"
       ".pxl-rs table.pxl-t th{background:rgba(128,128,128,.12);font-weight:600}"
       ".pxl-rs table.pxl-t .ref{font-family:monospace;white-space:nowrap;overflow-wrap:normal}"
       ".pxl-rs table.pxl-t .bad{color:#c33}"
       ".pxl-rs table.pxl-t .why{opacity:.7}"
       ".pxl-rs table.pxl-t img{display:block;max-width:96px;max-height:96px}"
       ".pxl-rs table.pxl-t progress{width:8em;vertical-align:middle}"
       ".pxl-rs p.pxl-note{margin:2px 0;text-align:left;opacity:.8}"
       "</style>")

_ROOT = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^/?#]*)(.*)\Z", re.S)


def middle_cut(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters, cut in the middle with ``...`` when longer, so
    that both where a path or URL starts and its file name (its last part) stay visible."""
    if len(text) <= width:
        return text
    if width <= 3:
        return text[:width]
    name = len(text) - text.rstrip("/").rfind("/")          # the last part with its "/"
    tail = min(max((width - 3) // 2, name), width - 4)       # at least one character of the head
    return text[:width - 3 - tail] + "..." + text[len(text) - tail:]


def end_cut(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters, ending in ``...`` when cut."""
    if len(text) <= width:
        return text
    return text[:width] if width <= 3 else text[:width - 3] + "..."


def short_key(key: str) -> str:
    """A content-addressed key (``<table uid>/<col id>/<xx>/<sha256>.<ext>``) as people compare
    keys: the table uid and the hash abbreviated, ``5e52…/3/cd/cd82…a159.jpg``."""
    uid, col, xx, name = key.split("/")
    digest, ext = name.split(".", 1)
    return f"{uid[:4]}{ELLIPSIS}/{col}/{xx}/{digest[:4]}{ELLIPSIS}{digest[-4:]}.{ext}"


def short_url(url: str, width: int) -> str:
    """``url`` (or an absolute local path) in at most ``width`` characters, keeping what says
    where the file is.

    In order, until it fits: the content hash of a file pxlite wrote is abbreviated
    (:func:`short_key`); folders in the middle of the path are replaced by ``…``, keeping the
    first and the last ones longest; then the first folder goes too. The scheme and the bucket or
    host are never cut, nor the folder just above the file (the destination of a computed
    column). Only a URL that still does not fit (a very long file or folder name) is cut in the
    middle as plain text."""
    if len(url) <= width:
        return url
    m = _ROOT.match(url)
    if m is None and not url.startswith("/"):
        return middle_cut(url, width)
    root, path = m.groups() if m is not None else ("", url)  # a URL, or a local path
    split = split_key(url)
    if split is not None:
        folders = [f for f in path[:len(path) - len(split[1])].split("/") if f]
        tail = short_key(split[1])
    else:
        parts = [f for f in path.split("/") if f]
        folders, tail = (parts, "") if path.endswith("/") or not parts else (parts[:-1], parts[-1])
    n = len(folders)
    tries = [[*folders, tail]]
    tries += [[folders[0], ELLIPSIS, *folders[n - k:], tail] for k in range(n - 2, 0, -1)]
    tries += [[ELLIPSIS, *folders[n - k:], tail] for k in range(n - 1, 0, -1)]
    if split is not None and folders:  # the folder above the key before the key's folders
        tries.append([*([ELLIPSIS] if n > 1 else []), folders[-1], ELLIPSIS,
                      tail.rsplit("/", 1)[1]])
    if tail:  # a folder's URL keeps its last folder: it is the place itself
        tries.append([ELLIPSIS, tail] if folders else [tail])
    if split is not None:
        tries.append([ELLIPSIS, tail.rsplit("/", 1)[1]])
    text = url
    for shown in tries:
        text = f"{root}/{'/'.join(shown)}"
        if len(text) <= width:
            return text
    # Still too long: the last name (a file's, or a folder's) is cut in its middle
    last = tries[-1][-1] or (folders[-1] + "/" if folders else "")
    head = f"{root}/{ELLIPSIS}/" if len(tries[-1]) > 1 or not tail else f"{root}/"
    room = width - len(head)
    if room >= 8 and len(last) > room and ELLIPSIS not in last:
        front = (room - 1) // 2
        return f"{head}{last[:front]}{ELLIPSIS}{last[len(last) - (room - 1 - front):]}"
    room = width - len(root) - 2          # the root, "/" and the ellipsis, then the path's end
    if room >= 8:
        return f"{root}/{ELLIPSIS}{text[len(text) - room:]}"
    return middle_cut(text, width)


def ref_html(url: str, width: int = HTML_URL_WIDTH) -> str:
    """A URL as notebook HTML: cut (:func:`short_url`), monospace, the whole of it on hover."""
    return (f'<span class="ref" title="{html.escape(url)}">'
            f"{html.escape(short_url(url, width))}</span>")


def html_table(head: Sequence[str], rows: Sequence[str], notes: Sequence[str] = (),
               title: str = "") -> str:
    """pxlite's notebook table: the scoped CSS, a title line (HTML), a header row, ``rows``
    (each ``<tr>…</tr>``), and lines of notes under it (HTML)."""
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    before = f'<p class="pxl-note"><b>{title}</b></p>' if title else ""
    after = "".join(f'<p class="pxl-note">{n}</p>' for n in notes)
    return (f'{CSS}<div class="pxl-rs">{before}<table class="pxl-t"><thead><tr>{th}</tr>'
            f"</thead><tbody>{''.join(rows)}</tbody></table>{after}</div>")


def text_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Lines of a plain text table: a header, a dashed rule, the rows, columns two spaces
    apart (no line ends in spaces)."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(head)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return [line(head), line(["-" * w for w in widths]), *(line(r) for r in rows)]


# ---- a table's description ---------------------------------------------------------------------
@dataclass(frozen=True)
class Destination:
    """Where a media column's files go, and where those it has are.

    ``uri``: the folder new files go to; ``why``: where that comes from (``'destination='``, a
    setting and its source, or the database's media folder by default); ``existing``: the
    folders holding the column's files now, when that is not just ``uri`` (a setting changed
    since they were written); ``note``: what else a person should know (an input column keeps
    inserted paths and URLs where they are)."""

    uri: str
    why: str = ""
    existing: tuple[str, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class ColumnInfo:
    """One column of a table's description: its name, type, the expression computing it,
    the progress of an unfinished add (``pending``: rows done, rows in all) and, for a stored
    media column, its :class:`Destination`. ``on_read``: computed when read (``stored=False``)."""

    name: str
    type: str
    computed_with: str = ""
    pending: tuple[int, int] | None = None
    destination: Destination | None = None
    on_read: bool = False

    def pending_text(self) -> str:
        if self.pending is None:
            return ""
        done, total = self.pending
        return f"pending {done:,}/{total:,}" if total else "pending"


@dataclass(frozen=True)
class TableDescription:
    """What ``describe()`` and ``repr(t)`` show: the table's path and row count, and per column
    its name, type, computed-with expression (with an unfinished add's progress) and where its
    files go. Text for a terminal (:meth:`to_text`), HTML for a notebook (``_repr_html_``)."""

    path: str
    rows: int
    columns: tuple[ColumnInfo, ...]
    #: A view: what it is a view of (``of 'videos' with frame_iterator(video, fps=1.0)``).
    view: str | None = None

    HEAD = ("Column", "Type", "Computed with", "Destination")

    def title(self) -> str:
        what = "Table" if self.view is None else "View"
        of = "" if self.view is None else f" {self.view}"
        return f"{what} '{self.path}'{of} ({self.rows:,} row{'' if self.rows == 1 else 's'})"

    def to_text(self, width: int = TEXT_URL_WIDTH) -> str:
        """The description as a text table; URLs are cut to ``width`` characters (keeping
        where the files are: :func:`short_url`). A destination's note and the folders a
        column's older files are in get lines of their own under the column."""
        rows: list[list[str]] = []
        for c in self.columns:
            computed = c.computed_with + (f"  [{c.pending_text()}]" if c.pending else "")
            rows.append([c.name, c.type, computed, _dest_text(c, width)])
            d = c.destination
            if d is not None and d.note:
                rows.append(["", "", "", d.note])
            if d is not None and d.existing:
                rows.append(["", "", "", "existing files: "
                             + ", ".join(short_url(u, width) for u in d.existing)])
        return "\n".join([self.title(), *text_table(self.HEAD, rows)])

    def __repr__(self) -> str:
        return self.to_text()

    def _repr_html_(self) -> str:
        rows = []
        for c in self.columns:
            computed = html.escape(c.computed_with)
            if c.pending is not None:
                done, total = c.pending
                computed += (f'<div><progress value="{done}" max="{max(total, 1)}"></progress> '
                             f"{html.escape(c.pending_text())}</div>")
            rows.append(f"<tr><td>{html.escape(c.name)}</td><td>{html.escape(c.type)}</td>"
                        f"<td>{computed}</td><td>{_dest_html(c)}</td></tr>")
        return html_table(self.HEAD, rows, title=html.escape(self.title()))


def _dest_text(c: ColumnInfo, width: int) -> str:
    if c.on_read:
        return "(computed when read: stored=False)"
    d = c.destination
    if d is None:
        return ""
    text = short_url(d.uri, width) + (f" ({d.why})" if d.why else "")
    return ("new files: " + text) if d.existing else text


def _dest_html(c: ColumnInfo) -> str:
    if c.on_read:
        return '<span class="why">computed when read (stored=False)</span>'
    d = c.destination
    if d is None:
        return ""
    why = "; ".join(html.escape(x) for x in (d.why, d.note) if x)
    out = ("new files: " if d.existing else "") + ref_html(d.uri)
    if why:
        out += f' <span class="why">({why})</span>'
    if d.existing:
        out += "<div>existing files: " + ", ".join(ref_html(u) for u in d.existing) + "</div>"
    return out


def show(obj: object) -> None:
    """Show ``obj`` the way the session shows values: through IPython's display system when
    IPython runs (HTML in a notebook, text in its terminal shell), else printed as text."""
    import sys

    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is not None:
        from IPython.display import display

        display(obj)
        return
    print(repr(obj))
