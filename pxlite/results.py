"""Query results: :class:`ResultSet` (rows, text table, HTML with thumbnails) and
:class:`UpdateStatus` (what a write did, read like "Inserted 5 rows with 0 errors in ...")."""

from __future__ import annotations

import base64
import contextlib
import html
import io
import re
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .display import (
    ELLIPSIS,
    HTML_URL_WIDTH,
    end_cut,
    html_table,
    short_url,
)
from .errors import ConfigError, NotFoundError, SchemaError
from .media import MEDIA_REF, has_alpha, split_key
from .redact import redact
from .types import ColumnType, is_pil_image

#: A quoted absolute path or URL in an error message; group 1 is its last segment.
_QUOTED_PATH = re.compile(r"'(?:[A-Za-z][A-Za-z0-9+.-]*:)?/[^'\s]*/([^'/\s]+)'")

#: A text value that is one URL (``file:///…``, ``s3://…``, ``https://…``), shown as a reference.
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+\Z")

#: Longest a media reference is shown in the text table, and a text cell there (a text row
#: cannot wrap). The notebook HTML wraps text in its cells, so it shows text whole up to
#: HTML_TEXT_MAX characters (as Pixeltable does) and URLs up to display.HTML_URL_WIDTH.
_REF_WIDTH = 48
_TEXT_WIDTH = 60
HTML_TEXT_MAX = 1000
#: Rows the notebook HTML shows; the rest are counted under it ("… 180 more rows"). A notebook
#: saves its outputs: 200 rows of three image columns were 1.2 MB of HTML in it.
HTML_ROWS = 20
#: Notebook thumbnails: the longest side in pixels, and the lossy encoders' quality. Small
#: enough that a 1,000-row result stays a few hundred kB of HTML rather than ~20 MB of PNGs.
_THUMB_PX = 96
_THUMB_QUALITY = 70
#: Narrowest a column is cut to when a text table must fit a terminal.
_MIN_COL = 6


def abbreviate(text: str, limit: int = HTML_TEXT_MAX) -> str:
    """``text`` whole up to ``limit`` characters, else its beginning and end around `` … ``."""
    if len(text) <= limit:
        return text
    half = (limit - 3) // 2
    return f"{text[:half]} {ELLIPSIS} {text[len(text) - half:]}"


@dataclass
class UpdateStatus:
    """The outcome of insert/update/delete/add_computed_column."""

    verb: str                      # 'Inserted', 'Updated', 'Deleted', 'Added'
    num_rows: int
    num_errors: int = 0
    elapsed_s: float = 0.0
    noun: str = "row"              # 'row' or 'column value'
    errors: list[str] = field(default_factory=list)   # first few error messages

    @property
    def num_excs(self) -> int:  # Pixeltable's name for the same count
        return self.num_errors

    def __str__(self) -> str:
        n = self.num_rows
        noun = self.noun if n == 1 else self.noun + "s"
        err = "error" if self.num_errors == 1 else "errors"
        rate = n / self.elapsed_s if self.elapsed_s > 0 else 0.0
        return (f"{self.verb} {n:,} {noun} with {self.num_errors:,} {err} in "
                f"{self.elapsed_s:.2f} s ({rate:,.2f} rows/s)")

    def __repr__(self) -> str:
        return str(self)


class ResultSet:
    """Rows of a query. ``rs[i]`` is a row dict, ``rs['col']`` a column list; media cells become
    ``PIL.Image`` objects (images) or local paths (other media) only when accessed.
    ``errors_skipped``: how many cells holding an error the query's aggregates skipped."""

    def __init__(self, names: list[str], types: list[ColumnType], rows: list[tuple],
                 media: Callable[[int, Any], Any] | None = None,
                 errors: Mapping[tuple[int, int], tuple[str, str]] | None = None,
                 uri: Callable[[str], str] | None = None, *, errors_skipped: int = 0) -> None:
        self.names = names
        self.types = types
        self._rows = rows
        self._media = media          # (column index, stored value) -> user-facing value
        #: Cells that hold an error instead of a value: (row, column) -> (errortype, errormsg);
        #: shown instead of None, so a failed image says why it is missing.
        self._errors = dict(errors or {})
        #: The absolute URI of a stored reference ('media:<key>' in the database's media
        #: folder), so that a cell shows where its file is.
        self._uri = uri
        self._lazy = [i for i, t in enumerate(types) if t.is_media] if media else []
        self.errors_skipped = errors_skipped

    def __len__(self) -> int:
        return len(self._rows)

    def _value(self, i: int, v: Any) -> Any:
        if v is not None and i in self._lazy and isinstance(v, str):
            assert self._media is not None
            return self._media(i, v)
        return v

    def _row(self, r: tuple) -> dict[str, Any]:
        return {n: self._value(i, v) for i, (n, v) in enumerate(zip(self.names, r, strict=True))}

    def __getitem__(self, key: int | str | slice | tuple[int, int | str]) -> Any:
        """``rs[i]`` a row (dict), ``rs['c']`` a column (list), ``rs[i, 'c']`` or ``rs[i, j]``
        one cell, ``rs[a:b]`` a ResultSet of those rows."""
        if isinstance(key, tuple):
            if len(key) != 2 or isinstance(key[0], bool) or not isinstance(key[0], int) or \
                    isinstance(key[1], bool) or not isinstance(key[1], (int, str)):
                raise SchemaError(f"a cell is rs[row number, column name or number], e.g. "
                                  f"rs[0, 'label']; got rs{list(key)!r}")
            row, col = key
            if isinstance(col, str):
                if col not in self.names:
                    raise NotFoundError(f"no column {col!r} in this result; it has {self.names}")
                col = self.names.index(col)
            return self._value(col, self._rows[row][col])
        if isinstance(key, str):
            try:
                i = self.names.index(key)
            except ValueError:
                raise NotFoundError(
                    f"no column {key!r} in this result; it has {self.names}") from None
            return [self._value(i, r[i]) for r in self._rows]
        if isinstance(key, slice):
            kept = range(len(self._rows))[key]
            errors = {(n, c): self._errors[r, c] for n, r in enumerate(kept)
                      for c in range(len(self.names)) if (r, c) in self._errors}
            return ResultSet(self.names, self.types, self._rows[key], self._media, errors,
                             self._uri, errors_skipped=self.errors_skipped)
        if isinstance(key, bool) or not isinstance(key, int):
            raise SchemaError(f"a ResultSet takes rs[row number], rs['column'], rs[row, column] "
                              f"or rs[a:b]; got rs[{key!r}]")
        return self._row(self._rows[key])

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for r in self._rows:
            yield self._row(r)

    def to_dicts(self) -> list[dict[str, Any]]:
        return [self._row(r) for r in self._rows]

    def to_pandas(self) -> Any:
        try:
            import pandas as pd
        except ImportError as e:
            raise ConfigError("to_pandas() needs pandas: pip install pandas") from e
        return pd.DataFrame(self.to_dicts(), columns=self.names)

    @property
    def schema(self) -> dict[str, ColumnType]:
        return dict(zip(self.names, self.types, strict=True))

    # ---- display -------------------------------------------------------------------------------
    # One broken cell (a missing, truncated or refused file) shows as text saying what is wrong;
    # it never takes the whole table down with it.
    def _problem(self, e: BaseException, width: int, name: str = "") -> str:
        """What is wrong with a cell, in at most ``width`` characters: the error's type and
        message, after the file's name unless the message names it already."""
        message = " ".join(str(e).split())
        text = f"{type(e).__name__}: {message}" if message else type(e).__name__
        if name and name.rsplit("/", 1)[-1] not in message:
            text = f"{name}: {text}"
        return end_cut(text, width)

    def _ref(self, v: str) -> str:
        """A media reference as people read it: a local file by its name as the user wrote it
        (``my photo #1.jpg``, not ``my%20photo%20%231.jpg``), credentials in a URL masked."""
        if v.startswith(MEDIA_REF) and self._uri is not None:
            with contextlib.suppress(Exception):  # a crafted reference shows as stored
                v = self._uri(v)
        return urllib.parse.unquote(v) if v.startswith(("file://", MEDIA_REF)) else redact(v)

    def _is_ref(self, i: int, v: Any) -> bool:
        """Whether a cell is a path or URL: a media reference, or a text value that is one URL
        (such as ``.fileurl``) or the local path of a file pxlite wrote (``.localpath``); those
        are cut where they say least and shown in monospace."""
        return isinstance(v, str) and (self.types[i].is_media or _URL.match(v) is not None
                                       or (v.startswith("/") and split_key(v) is not None))

    def _short(self, i: int, v: Any) -> str:
        if v is None:
            return "None"
        if self._is_ref(i, v):
            return short_url(self._ref(v), _REF_WIDTH if self.types[i].is_media else _TEXT_WIDTH)
        if is_pil_image(v):
            # the file format once the image came from a file, its pixel mode when computed
            return f"<Image {v.width}x{v.height} {v.format or v.mode}>"
        return end_cut(str(v), _TEXT_WIDTH)

    def _cell_error(self, r: int, i: int, width: int) -> str | None:
        """A cell that holds an error instead of a value: its type and a short message."""
        found = self._errors.get((r, i))
        if found is None:
            return None
        errortype, message = found
        message = _QUOTED_PATH.sub(r"'\1'", " ".join(str(message or "").split()))
        return end_cut(f"{errortype}: {message}" if message else str(errortype), width)

    def _cell_text(self, r: int, i: int, v: Any) -> str:
        """A cell as text. A media reference to a local file is opened (header only; no network
        for a text table) so that a missing or unreadable file says so."""
        if v is None:
            failed = self._cell_error(r, i, 100)
            if failed is not None:
                return f"<{failed}>"
        try:
            text = self._short(i, v)
            if (i in self._lazy and isinstance(v, str)
                    and v.startswith((MEDIA_REF, "file://"))):
                value = self._value(i, v)
                if is_pil_image(value):
                    value.close()
        except Exception as e:
            problem = self._problem(e, 10_000, v if isinstance(v, str) else "")
            # A table row has no room for full paths: quoted paths and URLs show their last part
            problem = _QUOTED_PATH.sub(r"'\1'", problem)
            return f"<{end_cut(problem, 100)}>"
        return text

    def to_text(self, width: int | None = None) -> str:
        """The rows as a text table. With ``width`` (a terminal's columns) every line fits in
        it: the widest columns are cut first (paths and URLs where they say least, other text
        at the end), and a row is never wrapped onto a second line."""
        header = list(self.names)
        body = [[self._cell_text(n, i, v) for i, v in enumerate(r)]
                for n, r in enumerate(self._rows)]
        widths = [max([len(h)] + [len(b[i]) for b in body]) for i, h in enumerate(header)]
        if width is not None:
            widths = _fit(widths, width)
        media = [t.is_media for t in self.types]

        def cut(c: str, w: int, m: bool) -> str:
            return short_url(c, w) if m or _URL.match(c) or c.startswith("/") else end_cut(c, w)

        def line(cells: list[str]) -> str:
            out = "  ".join(cut(c, w, m).ljust(w)
                            for c, w, m in zip(cells, widths, media, strict=True)).rstrip()
            # more columns than fit even at their narrowest: the row ends at the edge
            return out if width is None else end_cut(out, width)

        out = [line(header), line(["-" * w for w in widths])] + [line(b) for b in body]
        return "\n".join(out) + f"\n({len(self)} row{'s' if len(self) != 1 else ''}" \
            f"{self._skipped_note()})"

    def _skipped_note(self) -> str:
        n = self.errors_skipped
        return f"; aggregates skipped {n} error cell{'s' if n != 1 else ''}" if n else ""

    def __repr__(self) -> str:
        return self.to_text()

    def _thumb(self, img: Any, *, owned: bool) -> str:
        # An image resolved just for this table is ours to shrink in place: thumbnail() then
        # decodes a JPEG at reduced scale (draft) instead of copying the full-size pixels.
        if not owned:
            img = img.copy()
        img.thumbnail((_THUMB_PX, _THUMB_PX))
        fmt, mime, options = _thumb_format(img)
        if fmt == "JPEG":
            img = img if img.mode in ("RGB", "L") else img.convert("RGB")
        elif img.mode != "RGBA":
            img = img.convert("RGBA")
        buf = io.BytesIO()
        img.save(buf, format=fmt, **options)
        b64 = base64.b64encode(buf.getvalue()).decode()
        return (f'<img src="data:{mime};base64,{b64}" width="{img.width}" '
                f'height="{img.height}" alt=""/>')

    def _html_cell(self, r: int, i: int, v: Any) -> str:
        if v is None:
            failed = self._cell_error(r, i, 300)
            if failed is not None:
                return f'<td><span class="bad">&#9888; {html.escape(failed)}</span></td>'
        owned = v is not None and i in self._lazy and isinstance(v, str)
        ref = self._ref(v) if self._is_ref(i, v) else ""
        title = f' title="{html.escape(ref)}"' if ref else ""
        try:
            shown = self._value(i, v)
            if shown is not None and is_pil_image(shown):
                try:
                    return f"<td{title}>{self._thumb(shown, owned=owned)}</td>"
                finally:
                    if owned:
                        shown.close()
            if ref:
                return (f'<td class="ref"{title}>'
                        f"{html.escape(short_url(ref, HTML_URL_WIDTH))}</td>")
            if shown is None or isinstance(shown, (bool, int, float)):
                return f"<td>{html.escape(self._short(i, v))}</td>"
            return f"<td>{html.escape(abbreviate(str(shown)))}</td>"
        except Exception as e:
            name = self._short(i, v) if isinstance(v, str) else ""
            return (f'<td{title}><span class="bad">&#9888; '
                    f"{html.escape(self._problem(e, 300, name))}</span></td>")

    def _repr_html_(self) -> str:
        """The notebook view: the first HTML_ROWS rows (thumbnails for images, URLs cut where
        they say least), and how many more there are; the whole result stays in Python."""
        rows = ["<tr>" + "".join(self._html_cell(n, i, v) for i, v in enumerate(r)) + "</tr>"
                for n, r in enumerate(self._rows[:HTML_ROWS])]
        n = len(self)
        more = n - len(rows)
        note = (f"{ELLIPSIS} {more:,} more row{'s' if more != 1 else ''} ({n:,} in all)"
                if more > 0 else f"{n:,} row{'s' if n != 1 else ''}") + self._skipped_note()
        return html_table(self.names, rows, [note])


def _fit(widths: list[int], width: int) -> list[int]:
    """Column widths cut so that the columns and their 2-space gaps fit in ``width``: the
    widest are cut first, down to a common cap, none below ``_MIN_COL`` (or its own width)."""
    gaps = 2 * (len(widths) - 1)
    cap = max(widths, default=0)
    while cap > _MIN_COL and sum(min(w, cap) for w in widths) + gaps > width:
        cap -= 1
    return [min(w, cap) for w in widths]


def _thumb_format(img: Any) -> tuple[str, str, dict[str, Any]]:
    """How to encode a thumbnail: JPEG when it is opaque, WebP with its alpha channel when it
    has transparency (PNG if this Pillow has no WebP encoder). Lossy, small: a 96 px JPEG is
    ~3 kB where the PNG was ~20 kB."""
    transparent = has_alpha(img)
    if transparent:
        alpha = img.convert("RGBA").getchannel("A")
        transparent = alpha.getextrema()[0] < 255    # an alpha channel all opaque is not
    if not transparent:
        return "JPEG", "image/jpeg", {"quality": _THUMB_QUALITY}
    from PIL import features

    if features.check("webp"):
        return "WEBP", "image/webp", {"quality": _THUMB_QUALITY}
    return "PNG", "image/png", {"optimize": True}
