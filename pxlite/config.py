"""Settings: where they come from and what they resolve to.

Precedence, highest first: a database's own ``connect(path, config=...)``, then
``pxl.configure(...)`` for the process, then ``PXLITE_*`` environment variables, then
``$PXLITE_HOME/config.toml``, then built-in defaults. Every resolved value remembers its source so
``pxlite config`` can say where it came from. This module only reads settings; validating
destination URIs needs the storage registry and happens one layer up.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .redact import public_url, redact

#: Top-level ([pxlite]) keys: name -> (parser, default).
PROVIDERS = ("s3", "r2", "b2", "tigris", "gcs", "azure")

#: Keys a provider section may hold; anything else is a typo we report.
PROVIDER_KEYS: dict[str, frozenset[str]] = {
    **{
        p: frozenset(
            {"endpoint_url", "region", "profile", "aws_access_key_id", "aws_secret_access_key",
             "aws_session_token", "account_id", "addressing_style"}
        )
        for p in ("s3", "r2", "b2", "tigris")
    },
    "gcs": frozenset({"project", "credentials_file", "endpoint"}),
    "azure": frozenset({"connection_string", "account_url", "credential", "account_name"}),
}

#: Values never printed in full (``pxlite config``, reprs, error messages).
SECRET_KEYS = frozenset(
    {"aws_secret_access_key", "aws_session_token", "connection_string", "credential"}
)


def _parse_dest(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise ConfigError(f"a media destination must be a string URI or path, got {value!r}")
    return os.fspath(value)


def _parse_positive_float(value: Any) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"expected a number, got {value!r}") from None
    if not f > 0:
        raise ConfigError(f"expected a positive number, got {value!r}")
    return f


def _parse_days(value: Any) -> float:
    """A number of days, 0 or more (0: keep no history beyond the current version)."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"expected a number of days, got {value!r}") from None
    if not f >= 0 or f == float("inf"):
        raise ConfigError(f"expected a number of days >= 0, got {value!r}")
    return f


def _whole_number(minimum: int) -> Callable[[Any], int]:
    """A parser of whole numbers >= ``minimum`` (1 for a limit where 0 would refuse
    everything)."""
    def parse(value: Any) -> int:
        try:
            i = int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"expected a whole number, got {value!r}") from None
        if i < minimum:
            raise ConfigError(f"expected a whole number >= {minimum}, got {value!r}")
        return i

    return parse


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"expected true or false, got {value!r}")


def _parse_module_list(value: Any) -> list[str]:
    """Module names or package prefixes: a list, or one comma-separated string (env, TOML)."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(m, str) for m in items):
        raise ConfigError(f"expected module names (a list, or a comma-separated string), "
                          f"got {value!r}")
    names = [m.strip() for m in items if m.strip()]
    bad = [m for m in names if not all(p.isidentifier() for p in m.split("."))]
    if bad:
        raise ConfigError(f"not module names: {bad!r}; write dotted names like 'mypkg.udfs'")
    return names


#: Executors named by a word, and the scheduler address schemes of Dask (see pxlite.executors).
EXECUTOR_NAMES = ("threads", "processes")
DASK_ADDRESS_SCHEMES = ("tcp://", "tls://", "ucx://", "ws://", "wss://", "inproc://")


def executor_address_problem(value: str) -> str | None:
    """Why a Dask scheduler address cannot be used (None when it can). An address is a scheme,
    a host and a port: Dask takes no user, password or token in it (its credentials are TLS
    certificates, in Dask's own security settings), so one given there would only be echoed
    by errors and listings. The message never repeats the secret."""
    rest = value.split("://", 1)[1] if "://" in value else value
    authority = rest.split("/", 1)[0]
    if "@" in authority or "?" in rest or "#" in rest:
        return (f"the Dask scheduler address {public_url(value)!r} carries credentials (a "
                "user:password@ part or a query string, not shown here): a scheduler address "
                "is scheme://host:port only; Dask's credentials are TLS certificates in its own "
                "security settings (distributed.security), or pass a distributed.Client")
    return None


def _parse_executor(value: Any) -> str:
    if isinstance(value, str) and value in EXECUTOR_NAMES:
        return value
    if isinstance(value, str) and value.startswith(DASK_ADDRESS_SCHEMES):
        return value  # one carrying credentials is refused where it is used (and shown masked)
    raise ConfigError(f"expected 'threads', 'processes' or a Dask scheduler address such as "
                      f"'tcp://127.0.0.1:8786', got {redact(repr(value))}")


#: [pxlite] keys: name -> (parser, default, help).
KEYS: dict[str, tuple[Any, Any, str]] = {
    "input_media_dest": (_parse_dest, None, "where inserted media files are persisted"),
    "output_media_dest": (_parse_dest, None, "where computed media files are written"),
    "file_cache_size_g": (_parse_positive_float, 10.0, "download cache bound in GB"),
    "max_image_pixels": (_whole_number(0), 178_956_970, "refuse images with more pixels"),
    "storage_timeout_s": (_parse_positive_float, 60.0, "network timeout per storage call"),
    "download_timeout_s": (_parse_positive_float, 600.0,
                           "deadline for one whole web download, all tries together"),
    "max_download_bytes": (_whole_number(1), 4_000_000_000,
                           "refuse web downloads larger than this"),
    "decode_memory_mb": (_whole_number(1), 1024,
                         "memory for decoded images held by worker threads at once"),
    "storage_retries": (_whole_number(0), 4, "retries of retryable storage errors"),
    "storage_retry_delay_s": (_parse_positive_float, 0.5,
                              "longest wait before the first retry (doubles per retry, random)"),
    "progress": (_parse_bool, True, "show progress bars on a terminal or notebook"),
    "executor": (_parse_executor, "threads",
                 "where computed columns run: threads, processes, or a Dask scheduler address"),
    "shared_filesystem": (_parse_bool, False,
                          "Dask workers on other machines see this machine's files at the same "
                          "paths (allows local inputs and destinations with a remote cluster)"),
    "udf_modules": (_parse_module_list, [],
                    "modules pxlite may import to find a database's UDFs (trusted code only)"),
    "version_retention_days": (_parse_days, 30.0,
                               "keep the versions of each table (revert, time travel) for this "
                               "many days; 0: only the current one"),
    "version_retention_count": (_whole_number(1), None,
                                "keep at most this many versions of each table (unset: no "
                                "limit beyond version_retention_days)"),
}


def pxlite_home() -> Path:
    """The pxlite home folder: ``$PXLITE_HOME`` or ``~/.pxlite`` (not created here)."""
    env = os.environ.get("PXLITE_HOME")
    return Path(env).expanduser() if env else Path.home() / ".pxlite"


def private_home(home: Path) -> None:
    """Create ``$PXLITE_HOME`` as a private folder (0o700) if it does not exist yet: it holds
    the default database, its media, the download cache and maybe credentials in config.toml."""
    home = Path(home).expanduser()
    if not home.exists():
        home.mkdir(mode=0o700, parents=True, exist_ok=True)


@dataclass(frozen=True, repr=False)
class Settings:
    """Resolved settings, with the source of each value.

    ``values`` holds the [pxlite] keys, ``providers`` the provider sections (``'s3'``,
    ``'gcs'``...), ``sources`` maps ``key`` or ``provider.key`` to where it came from.
    """

    values: Mapping[str, Any]
    providers: Mapping[str, Mapping[str, Any]]
    sources: Mapping[str, str]
    home: Path = field(default_factory=pxlite_home)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def provider(self, name: str) -> dict[str, Any]:
        """The settings section of one storage provider (a copy; empty when unset)."""
        return dict(self.providers.get(name, {}))

    @property
    def cache_dir(self) -> Path:
        return self.home / "file_cache"

    def describe(self) -> list[tuple[str, str, str]]:
        """Rows ``(key, value, source)`` with secrets masked, for ``pxlite config``."""
        rows = [(k, _show(k, self.values.get(k)), self.sources.get(k, "default")) for k in KEYS]
        rows.insert(0, ("home", str(self.home), self.sources.get("home", "default")))
        for p in PROVIDERS:
            for k, v in sorted(self.providers.get(p, {}).items()):
                rows.append((f"{p}.{k}", _show(k, v), self.sources.get(f"{p}.{k}", "?")))
        return rows

    def lines(self) -> list[str]:
        """One line per setting, ``key  value  [source]``, aligned, secrets masked (what
        ``pxlite config`` prints)."""
        rows = self.describe()
        w = max(len(k) for k, _, _ in rows)
        return [f"{k.ljust(w)}  {v}  [{source}]" for k, v, source in rows]

    def __repr__(self) -> str:
        # One setting a line (a notebook showed one long line); masked: a Settings object
        # shows up in tracebacks with locals and in debug logs.
        return "\n".join(["Settings (value, then where it came from):",
                          *(f"  {line}" for line in self.lines())])

    def fingerprint(self, provider: str) -> tuple[tuple[str, str], ...]:
        """A hashable identity of a provider section (clients are cached per fingerprint)."""
        return tuple(sorted((k, str(v)) for k, v in self.providers.get(provider, {}).items()))


def mask(value: Any) -> str:
    """A secret shown as its length and last two characters, never in full."""
    s = str(value)
    return "****" if len(s) < 8 else f"****{s[-2:]} ({len(s)} chars)"


#: Settings that are URLs: shown without a query string (a SAS token) or user:password part.
URL_KEYS = frozenset({"account_url", "endpoint_url", "endpoint"})


def _show(key: str, value: Any) -> str:
    if value is None:
        return "(not set)"
    if key in SECRET_KEYS:
        return mask(value)
    text = str(value)
    if key == "executor":
        return redact(text)
    if key in URL_KEYS and ("?" in text or "@" in text):
        import urllib.parse

        p = urllib.parse.urlsplit(text)
        host = (p.hostname or "") + (f":{p.port}" if p.port else "")
        return urllib.parse.urlunsplit((p.scheme, host, p.path, "****" if p.query else "", ""))
    return text


def _check_layer(layer: Mapping[str, Any], where: str) -> tuple[dict[str, Any], dict[str, dict]]:
    """Split one settings layer into parsed [pxlite] values and provider sections; reject typos."""
    top: dict[str, Any] = {}
    prov: dict[str, dict] = {}
    for key, value in layer.items():
        if key == "pxlite" and isinstance(value, Mapping):
            t, p = _check_layer(value, where)
            top.update(t)
            prov.update(p)
        elif key in PROVIDERS:
            if not isinstance(value, Mapping):
                # never echo the value: it may be a connection string with an account key
                raise ConfigError(f"{where}: [{key}] must be a table of settings (a dict), got "
                                  f"a {type(value).__name__}")
            unknown = set(value) - PROVIDER_KEYS[key]
            if unknown:
                raise ConfigError(
                    f"{where}: unknown setting(s) {sorted(unknown)} in [{key}]; "
                    f"known: {sorted(PROVIDER_KEYS[key])}"
                )
            prov[key] = dict(value)
        elif key in KEYS:
            try:
                top[key] = KEYS[key][0](value)
            except ConfigError as e:
                raise ConfigError(f"{where}: {key}: {e}") from None
        else:
            raise ConfigError(
                f"{where}: unknown setting {key!r}; known settings: {sorted(KEYS)} "
                f"and provider sections {list(PROVIDERS)}"
            )
    return top, prov


def _load_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    import tomllib

    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}; fix or remove the file") from e
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e}") from e


def _env_layer() -> dict[str, Any]:
    layer: dict[str, Any] = {}
    for key in KEYS:
        v = os.environ.get(f"PXLITE_{key.upper()}")
        if v is not None:
            layer[key] = v
    for p in PROVIDERS:
        for k in PROVIDER_KEYS[p]:
            v = os.environ.get(f"PXLITE_{p.upper()}_{k.upper()}")
            if v is not None:
                layer.setdefault(p, {})[k] = v
    return layer


_process_overrides: dict[str, Any] = {}
_lock = threading.Lock()


def configure(**settings: Any) -> None:
    """Set process-wide settings (same shape as config.toml); ``None`` unsets a key.

    Keys are checked here so a typo fails at once. Destination URIs are checked by the public
    ``pxlite.configure`` wrapper, which also consults the storage registry.
    """
    unset = [k for k, v in settings.items() if v is None]
    _check_layer({k: v for k, v in settings.items() if v is not None}, "configure()")
    with _lock:
        for k in unset:
            _process_overrides.pop(k, None)
        for k, v in settings.items():
            if v is None:
                continue
            if k in PROVIDERS:
                _process_overrides.setdefault(k, {}).update(v)
            else:
                _process_overrides[k] = v


def reset() -> None:
    """Forget every ``configure()`` override (tests use this)."""
    with _lock:
        _process_overrides.clear()


def resolve(db_config: Mapping[str, Any] | None = None) -> Settings:
    """Resolve the effective settings now, optionally with one database's own config on top."""
    home = pxlite_home()
    layers: list[tuple[str, Mapping[str, Any]]] = [
        ("default", {k: d for k, (_, d, _) in KEYS.items()}),
        (str(home / "config.toml"), _load_toml(home / "config.toml")),
        ("environment", _env_layer()),
    ]
    with _lock:
        layers.append(("configure()", {k: (dict(v) if isinstance(v, dict) else v)
                                       for k, v in _process_overrides.items()}))
    if db_config:
        layers.append(("connect(config=)", db_config))
    values: dict[str, Any] = {}
    providers: dict[str, dict[str, Any]] = {}
    sources: dict[str, str] = {
        "home": "environment" if os.environ.get("PXLITE_HOME") else "default"}
    for where, layer in layers:
        top: dict[str, Any]
        prov: dict[str, dict]
        if where == "default":
            top, prov = dict(layer), {}
        else:
            top, prov = _check_layer(layer, where)
        for k, v in top.items():
            values[k] = v
            sources[k] = "environment" if where == "environment" else where
        for p, section in prov.items():
            for k, v in section.items():
                providers.setdefault(p, {})[k] = v
                sources[f"{p}.{k}"] = where
    return Settings(values=values, providers=providers, sources=sources, home=home)
