"""Query results: :class:`ResultSet` (rows, text table, HTML with thumbnails) and
:class:`UpdateStatus` (what a write did, read like "Inserted 5 rows with 0 errors in ...")."""

from __future__ import annotations

import base64
import html
import io
import re
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError, NotFoundError, SchemaError
from .media import MEDIA_REF
from .types import ColumnType, is_pil_image

#: A quoted absolute path or URL in an error message; group 1 is its last segment.
_QUOTED_PATH = re.compile(r"'(?:[A-Za-z][A-Za-z0-9+.-]*:)?/[^'\s]*/([^'/\s]+)'")


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
    ``PIL.Image`` objects (images) or local paths (other media) only when accessed."""

    def __init__(self, names: list[str], types: list[ColumnType], rows: list[tuple],
                 media: Callable[[int, Any], Any] | None = None) -> None:
        self.names = names
        self.types = types
        self._rows = rows
        self._media = media          # (column index, stored value) -> user-facing value
        self._lazy = [i for i, t in enumerate(types) if t.is_media] if media else []

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
            if len(key) != 2:
                raise SchemaError(f"a cell is rs[row, column], got rs[{key!r}]")
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
            return ResultSet(self.names, self.types, self._rows[key], self._media)
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
        return text if len(text) <= width else text[:width - 3] + "..."

    def _short(self, i: int, v: Any) -> str:
        if v is None:
            return "None"
        if self.types[i].is_media and isinstance(v, str):
            # a local file by its name as the user wrote it (my photo #1.jpg, not my%20photo...)
            shown = urllib.parse.unquote(v) if v.startswith(("file://", MEDIA_REF)) else v
            return shown.rsplit("/", 1)[-1] if len(shown) > 40 else shown
        if is_pil_image(v):
            return f"<Image {v.mode} {v.width}x{v.height}>"
        s = str(v)
        return s if len(s) <= 60 else s[:57] + "..."

    def _cell_text(self, i: int, v: Any) -> str:
        """A cell as text. A media reference to a local file is opened (header only; no network
        for a text table) so that a missing or unreadable file says so."""
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
            return f"<{problem if len(problem) <= 100 else problem[:97] + '...'}>"
        return text

    def __repr__(self) -> str:
        header = self.names
        body = [[self._cell_text(i, v) for i, v in enumerate(r)] for r in self._rows]
        widths = [max([len(h)] + [len(b[i]) for b in body]) for i, h in enumerate(header)]
        line = lambda cells: "  ".join(  # noqa: E731
            c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
        out = [line(header), line(["-" * w for w in widths])] + [line(b) for b in body]
        return "\n".join(out) + f"\n({len(self)} row{'s' if len(self) != 1 else ''})"

    def _thumb(self, img: Any, *, owned: bool) -> str:
        # An image resolved just for this table is ours to shrink in place: thumbnail() then
        # decodes a JPEG at reduced scale (draft) instead of copying the full-size pixels.
        if not owned:
            img = img.copy()
        img.thumbnail((128, 128))
        if img.mode not in ("RGB", "RGBA", "L"):
            img = img.convert("RGBA")
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        b64 = base64.b64encode(buf.getvalue()).decode()
        return f'<img src="data:image/png;base64,{b64}" style="max-width:128px;max-height:128px"/>'

    def _html_cell(self, i: int, v: Any) -> str:
        owned = v is not None and i in self._lazy and isinstance(v, str)
        try:
            shown = self._value(i, v)
            if shown is not None and is_pil_image(shown):
                try:
                    return f"<td>{self._thumb(shown, owned=owned)}</td>"
                finally:
                    if owned:
                        shown.close()
            return f"<td>{html.escape(self._short(i, v))}</td>"
        except Exception as e:
            name = self._short(i, v) if isinstance(v, str) else ""
            return (f'<td title="{html.escape(name)}"><span style="color:#b00">&#9888; '
                    f"{html.escape(self._problem(e, 300, name))}</span></td>")

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(n)}</th>" for n in self.names)
        rows = ["<tr>" + "".join(self._html_cell(i, v) for i, v in enumerate(r)) + "</tr>"
                for r in self._rows]
        return (f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
                f"<p>{len(self)} row{'s' if len(self) != 1 else ''}</p>")
