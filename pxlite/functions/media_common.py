"""What the video, audio and document function modules share: registering a function as a
method of a media type whose optional package is checked when a call is built, and loading
that package with an error naming the pip extra."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from ..errors import SchemaError
from ..exprs import Expr
from ..iterators.base import require
from ..types import ColumnType
from ..udf import Function, register


class _MediaSignature(inspect.Signature):
    """A signature whose ``bind`` (run when an expression is built) also checks that the
    optional package is installed and that the receiver has the media type."""

    __slots__ = ("_fn_name", "_requires", "_type")

    def __init__(self, sig: inspect.Signature, fn_name: str, ctype: ColumnType,
                 requires: tuple[tuple[str, str], ...]) -> None:
        super().__init__(list(sig.parameters.values()), return_annotation=sig.return_annotation)
        self._fn_name, self._type, self._requires = fn_name, ctype, requires

    def bind(self, *args: Any, **kwargs: Any) -> inspect.BoundArguments:
        bound = super().bind(*args, **kwargs)
        for module, extra in self._requires:
            require(module, extra, f"{self._fn_name}()")
        first = next(iter(bound.arguments.values()), None)
        if isinstance(first, Expr) and not first.type.same_kind(self._type):
            raise SchemaError(f"{self._fn_name}(): expects a {self._type.name} expression, got "
                              f"{first!r} of type {first.type.name}")
        for k, v in bound.arguments.items():
            if v is not first and not isinstance(v, Expr) and not (
                    v is None or isinstance(v, (bool, int, float, str))):
                raise SchemaError(f"{self._fn_name}(): {k}={v!r} cannot be stored in a column "
                                  "definition; use a number, a string or an expression")
        return bound


def media_function(family: str, ctype: ColumnType, requires: tuple[tuple[str, str], ...],
                   return_type: ColumnType | None = None
                   ) -> Callable[[Callable[..., Any]], Function]:
    """Register ``fn`` as ``pxlite.functions.<family>.<name>``, a method of ``ctype``
    expressions (``t.video.get_metadata()``); the value it receives is a local file path."""

    def wrap(fn: Callable[..., Any]) -> Function:
        func = Function(fn, name=f"pxlite.functions.{family}.{fn.__name__}", is_method=True,
                        method_of=ctype, return_type=return_type)
        func.signature = _MediaSignature(func.signature, fn.__name__, ctype, requires)
        register(func)
        return func

    return wrap


def load(module: str, extra: str, what: str) -> Any:
    """Import an optional package, or raise the error naming its pip extra."""
    require(module, extra, what)
    return importlib.import_module(module)
