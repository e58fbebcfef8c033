"""User-defined functions: ``@pxl.udf`` turns a type-hinted Python function into an expression
builder, registered under its qualified name so a reopened database can find it again.

Calling a :class:`Function` with any expression argument builds a ``Call`` expression; calling it
with plain values just runs it. ``is_method=True`` also makes it available as a method on
expressions of its first parameter's type (``t.image.my_fn(...)``); ``is_property=True`` as a
property (``t.image.width``).
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import inspect
import threading
import typing
from collections.abc import Callable, Iterable, Iterator
from typing import Any, overload

from .config import resolve as resolve_settings
from .errors import NotFoundError, SchemaError
from .types import ColumnType, as_type

_registry: dict[str, Function] = {}
_methods: dict[str, dict[str, Function]] = {}   # type name -> method name -> Function
_lock = threading.Lock()


def _hint_type(hint: Any, what: str) -> ColumnType:
    """Column type for a type hint; ``Optional[X]`` is nullable X."""
    args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and args:
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _hint_type(inner[0], what)
    if origin in (list, dict, tuple):
        return as_type(dict)
    if hint is tuple:
        return as_type(dict)
    try:
        return as_type(hint)
    except SchemaError:
        raise SchemaError(
            f"{what}: the type hint {hint!r} has no pxlite column type; use int, float, str, "
            "bool, dict, list, datetime or PIL.Image.Image"
        ) from None


def hint_type(hint: Any, what: str) -> ColumnType:
    """The column type a Python type hint stands for (``Optional[X]`` is a nullable X);
    ``what`` names the function in the error for a hint without one (also for ``@pxl.uda``)."""
    return _hint_type(hint, what)


class Function:
    """A function usable in expressions; see module docstring."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        return_type: ColumnType | None = None,
        is_method: bool = False,
        is_property: bool = False,
        method_of: ColumnType | None = None,
        wants_settings: bool = False,
        sql: Callable[[Any], Any] | None = None,
        in_sql: bool = False,
    ) -> None:
        self.fn = fn
        #: Built-in functions only. ``sql(args: exprs.SqlArgs) -> (sql, params) | None``: the
        #: call in SQL where SQLite gives Python's answer; ``in_sql``: the Python function is
        #: pure and quick, so SQLite may call it (see pxlite.sqlcall) instead of the query
        #: leaving SQL. A user's @udf has neither and runs in Python, outside SQLite.
        self.sql = sql
        self.in_sql = in_sql
        #: True for functions that need the database's effective settings (credentials,
        #: endpoints): the executor passes them as the keyword argument ``settings``.
        self.wants_settings = wants_settings
        self.name = name or f"{fn.__module__}.{fn.__qualname__}"
        self.method_name = fn.__name__
        self.signature = inspect.signature(fn)
        self.__doc__ = fn.__doc__
        self.__name__ = fn.__name__
        if return_type is None:
            hints = typing.get_type_hints(fn)
            if "return" not in hints:
                raise SchemaError(
                    f"@udf {self.name}: add a return type hint (e.g. '-> int' or "
                    "'-> PIL.Image.Image') so pxlite knows the column type"
                )
            return_type = _hint_type(hints["return"], f"@udf {self.name}")
        self.return_type = return_type
        self.is_method = is_method or is_property
        self.is_property = is_property
        if self.is_method and method_of is None:
            params = list(self.signature.parameters.values())
            if not params:
                raise SchemaError(f"@udf {self.name}: a method needs at least one parameter")
            hints = typing.get_type_hints(fn)
            if params[0].name not in hints:
                raise SchemaError(f"@udf {self.name}: hint the first parameter's type")
            method_of = _hint_type(hints[params[0].name], f"@udf {self.name}")
        self.method_of = method_of
        self.accepts_none = _accepts_none(fn, self.signature)

    def required(self, n_args: int, kwargs: Iterable[str]) -> tuple[list[int], list[str]]:
        """Which of a call's positional indexes and keyword names go to parameters that do not
        accept None: when one of them is None, the call gives None without running."""
        names = [p.name for p in self.signature.parameters.values()
                 if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        pos = [i for i in range(n_args) if i < len(names) and names[i] not in self.accepts_none]
        kw = [k for k in kwargs if k not in self.accepts_none]
        return pos, kw

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from .exprs import Call, Expr

        if any(isinstance(a, Expr) for a in (*args, *kwargs.values())):
            try:
                self.signature.bind(*args, **kwargs)
            except TypeError as e:
                raise SchemaError(f"{self.method_name}(): {e}") from None
            return Call(self, list(args), dict(kwargs))
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<pxlite function {self.name}{self.signature}>"


def _accepts_none(fn: Callable[..., Any], signature: inspect.Signature) -> frozenset[str]:
    """Parameters a None may be passed to: hinted Optional (``X | None``) or defaulting to
    None. (Hints that cannot be resolved count as not accepting None.)"""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        hints = {}
    out = set()
    for p in signature.parameters.values():
        hint = hints.get(p.name)
        if p.default is None or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or (
                hint is not None and type(None) in typing.get_args(hint)) or hint is Any:
            out.add(p.name)
    return frozenset(out)


@overload
def udf(fn: Callable[..., Any]) -> Function: ...
@overload
def udf(*, is_method: bool = ..., is_property: bool = ..., name: str | None = ...
        ) -> Callable[[Callable[..., Any]], Function]: ...


def udf(fn: Callable[..., Any] | None = None, *, is_method: bool = False,
        is_property: bool = False, name: str | None = None) -> Any:
    """Make a type-hinted Python function usable in pxlite expressions (see module docstring)."""

    def wrap(f: Callable[..., Any]) -> Function:
        func = Function(f, name=name, is_method=is_method, is_property=is_property)
        register(func)
        return func

    return wrap(fn) if fn is not None else wrap


def register(func: Function) -> None:
    with _lock:
        _registry[func.name] = func
        if func.is_method and func.method_of is not None:
            _methods.setdefault(func.method_of.name, {})[func.method_name] = func


#: The module of pxlite.functions with the built-in methods of each type.
_FAMILIES = {"Image": "image", "Video": "video", "Audio": "audio", "Document": "document",
             "String": "string", "Int": "math", "Float": "math", "Timestamp": "timestamp",
             "Date": "date", "Json": "json"}


def methods_for(ctype: ColumnType) -> dict[str, Function]:
    """Methods and properties usable on expressions of this type. An Int also has the Float
    methods (``t.n.pow(2)``), as in Pixeltable."""
    family = _FAMILIES.get(ctype.name)
    if family is not None:  # the built-in functions of a type register when their module loads
        importlib.import_module(f"pxlite.functions.{family}")
    if ctype.name == "Int":
        return {**_methods.get("Float", {}), **_methods.get("Int", {})}
    return _methods.get(ctype.name, {})


def lookup(name: str) -> Function:
    """Find a function by qualified name among those registered in this process.

    A database file names the functions of its computed columns; opening one must never make
    pxlite run code it names (importing a module runs its top-level code). So a module is only
    imported to find a function when it is pxlite's own, or when the user allowed it with the
    ``udf_modules`` setting (module names or package prefixes). Otherwise the column reports the
    function as missing, naming it, and the rest of the table keeps working.
    """
    func = _registry.get(name)
    if func is not None:
        return func
    module, _, _attr = name.rpartition(".")
    allowed = _allowed_modules()
    last_error: Exception | None = None
    if any(module == a or module.startswith(a + ".") for a in allowed):
        # qualified names may be nested (module.Class.fn): try shorter module paths
        while module:
            try:
                importlib.import_module(module)
                break
            except ImportError as e:
                last_error = e
                module = module.rpartition(".")[0]
        func = _registry.get(name)
    if func is None:
        why = f" ({last_error})" if last_error else ""
        raise NotFoundError(
            f"function {name!r} cannot be found{why}: it is not registered in this process; "
            "import the module that defines it (with its @pxl.udf) before using the column, "
            "or redefine the function (pxlite never imports a module because a database file "
            "names it; trusted modules can be allowed with the udf_modules setting)"
        )
    return func


_trusted: contextvars.ContextVar[Any] = contextvars.ContextVar("pxlite_udf_settings",
                                                               default=None)


@contextlib.contextmanager
def trusting(settings: Any) -> Iterator[None]:
    """Within: look functions up with these settings' ``udf_modules`` (a database's own)."""
    token = _trusted.set(settings)
    try:
        yield
    finally:
        _trusted.reset(token)


def _allowed_modules() -> list[str]:
    """pxlite's own functions, plus the modules the user allowed (``udf_modules``)."""
    settings = _trusted.get() or resolve_settings()
    extra = settings.get("udf_modules") or []
    return ["pxlite", *(str(m) for m in extra if m)]
