"""Progress bars of long operations, shown only where a person watches them.

- ``progress=False`` (the setting): none, anywhere.
- A Jupyter kernel: one bar in the cell's output, updated in place through an IPython display
  handle and cleared when the operation ends. With ipywidgets it is tqdm's notebook widget;
  without, an HTML ``<progress>`` element and tqdm's text (rate, ETA), so no TqdmWarning is
  raised (tqdm.auto warns "IProgress not found" and falls back to text bars on stderr, which a
  notebook keeps as one frozen line per refresh). Because the handle is updated rather than
  appended to, a notebook run without a person watching (nbclient, CI, an export) keeps no
  progress line at all: the operation's status line says what was done.
- A terminal (stderr is a TTY): tqdm's text bar, redrawn in place and removed at the end.
- Anything else (a pipe, a log file, CI output): nothing.

tqdm and IPython are imported only when a bar is shown (``import pxlite`` stays cheap).
"""

from __future__ import annotations

import html
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .config import Settings

#: What a bar's text says: the operation, the share done, rows and rate (the HTML and the
#: widget draw the bar itself).
_TEXT = "{desc}: {percentage:3.0f}% {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}]"
#: Fewest seconds between two redraws of a notebook bar (each is a message to the front end).
_NOTEBOOK_INTERVAL = 0.2


class Bar(Protocol):
    """What a long operation does with its bar."""

    def update(self, n: int = 1) -> object: ...
    def set_postfix(self, *, refresh: bool = True, **values: Any) -> object: ...
    def close(self) -> None: ...


def bar(total: Callable[[], int | None], desc: str, settings: Settings, *, initial: int = 0,
        unit: str = "row") -> Bar | None:
    """A bar for an operation of ``total()`` units, ``initial`` of them done already, or None
    where no bar is shown (see the module docstring). ``total`` is only called (it may be a
    query) when a bar can show; None: not known (a streamed listing), the bar counts units and
    shows their rate."""
    if not settings.get("progress", True):
        return None
    where = _where()
    if where is None:
        return None
    n = total()
    if n is not None and n < 2:
        return None
    if where == "terminal":
        from tqdm import tqdm  # only now: importing it costs ~45 ms

        return tqdm(total=n, initial=initial, desc=desc, unit=unit, leave=False,
                    file=sys.stderr, dynamic_ncols=True)
    return NotebookBar(n, initial, desc, unit)


def _where() -> str | None:
    """'notebook' in a Jupyter kernel, 'terminal' when stderr is a TTY, else None."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is not None and getattr(shell, "kernel", None) is not None:
        return "notebook"
    try:
        return "terminal" if sys.stderr.isatty() else None
    except (AttributeError, ValueError):  # no stderr, or a closed one
        return None


class NotebookBar:
    """A bar in a Jupyter cell's output: one display, updated in place, cleared at close.

    With ipywidgets, tqdm's widget; without it (or with one tqdm cannot use), tqdm counts and
    formats, and its text lands in an HTML ``<progress>`` bar through :meth:`write`."""

    def __init__(self, total: int | None, initial: int, desc: str, unit: str) -> None:
        from IPython.display import display

        self.total = total
        self._widget: Any = None
        self._tqdm: Any = None
        try:
            import ipywidgets  # noqa: F401  (tqdm's widget needs it; absent: the HTML bar)
            from tqdm.notebook import tqdm as widget_tqdm

            self._tqdm = widget_tqdm(total=total, initial=initial, desc=desc, unit=unit,
                                     leave=False, display=False)
            self._widget = self._tqdm.container
        except Exception:  # no ipywidgets, or one tqdm cannot drive: the HTML bar instead
            self._widget = None
        self._handle = display(self._widget if self._widget is not None else self._blank(),
                               display_id=True, raw=self._widget is None)
        if self._widget is None:
            from tqdm import tqdm

            self._tqdm = tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=False,
                              file=self, bar_format=_TEXT, mininterval=_NOTEBOOK_INTERVAL)
            self._tqdm.refresh()  # its first drawing came before self._tqdm was set

    @staticmethod
    def _blank() -> dict[str, str]:
        return {"text/plain": ""}

    def write(self, text: str) -> None:
        """tqdm's text bar, drawn as ``\\r<line>``: the line goes into the HTML bar."""
        line = text.rsplit("\r", 1)[-1].strip()
        if not line or self._tqdm is None:
            return
        # An unknown total (a streamed listing): an indeterminate bar beside the count.
        value = "" if self.total is None else \
            f' value="{min(int(self._tqdm.n), self.total)}" max="{self.total}"'
        self._handle.update({
            "text/plain": line,
            "text/html": f'<progress{value} style="width:12em;vertical-align:middle">'
                         f"</progress> <span style='font-family:monospace'>"
                         f"{html.escape(line)}</span>",
        }, raw=True)

    def flush(self) -> None:
        """tqdm flushes its file after each redraw; the display is already sent."""

    def update(self, n: int = 1) -> object:
        return self._tqdm.update(n)

    def set_postfix(self, *, refresh: bool = True, **values: Any) -> object:
        """Figures shown after the bar (``added=5``), as tqdm shows them."""
        return self._tqdm.set_postfix(refresh=refresh, **values)

    def close(self) -> None:
        """The operation ended (done, failed or interrupted): the bar goes, and its output
        holds nothing, live or saved."""
        try:
            self._tqdm.close()
            if self._widget is not None:
                self._widget.close()
        finally:
            self._handle.update(self._blank(), raw=True)
