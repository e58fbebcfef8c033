"""Storage registry and URI parsing: which backend serves a URI, and what a destination means.

Every stored file is named by a *canonical URI*. Local files are ``file:///abs/path`` (percent-
encoded, like ``Path.as_uri()``); cloud objects keep their raw key after the bucket
(``s3://bucket/ключ.jpg``, never percent-encoded, never parsed for ``?`` or ``#``):

=========  =====================================================================================
scheme     canonical forms
=========  =====================================================================================
file       ``file:///abs/dir/``
s3         ``s3://bucket/p/``
r2         ``r2://bucket/p/``, ``https://<acct>.r2.cloudflarestorage.com/bucket/p/``
b2         ``b2://bucket/p/``, ``https://s3.<region>.backblazeb2.com/bucket/p/``
tigris     ``tigris://bucket/p/``, ``https://t3.storage.dev/bucket/p/`` (or fly.storage.tigris.dev)
gs         ``gs://bucket/p/``
azure      ``az://container/p/`` (account from ``[azure]``),
           ``https://<acct>.blob.core.windows.net/container/p/`` (``wasbs://``/``abfs(s)://``
           inputs are rewritten to this form)
http       any other ``http(s)://`` URL, and any URL with a query string (read-only)
=========  =====================================================================================

This module is the registry: it maps a scheme to a backend class and dispatches. Each backend class
owns its URI grammar as classmethods (see :class:`~pxlite.storage.base.StorageBackend`): the input
schemes it reads as its own (``input_schemes``: Azure's ``az``, ``wasbs``...), the https hosts it
claims (``claims_https``), its destination forms for help texts (``uri_forms``) and the check and
canonical form of a destination (``canonical_prefix``). A backend registered for a new scheme is
therefore recognised everywhere with no edit here. The one form without a scheme, a local path,
is the ``file`` backend's.

Backends are imported lazily by name (``"module:Class"``) so ``import pxlite.storage`` loads no
cloud SDK and no backend module; the first URI that needs the grammar of every backend (an https
URL, an alias such as ``az://``, an unknown scheme) imports the backend modules, which import
their SDKs only when a client is created. A missing SDK becomes a :class:`ConfigError` with the
``pip install`` hint.
"""

from __future__ import annotations

import importlib
import os
import re
import threading
import urllib.parse
from collections.abc import Hashable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, cast

from ..config import Settings
from ..errors import ConfigError
from .base import StorageBackend, check_segments

if TYPE_CHECKING:
    from .azure import AzureBackend
    from .local import LocalBackend

__all__ = [
    "S3_FAMILY",
    "AzureURI",
    "BucketURI",
    "canonical_prefix",
    "clear_backends",
    "destination_forms",
    "file_path",
    "get_backend",
    "is_local",
    "join",
    "parse_azure_uri",
    "parse_bucket_uri",
    "register_backend",
    "scheme_of",
    "to_uri",
    "url_scheme",
    "validate_destination",
]

#: Schemes served by the S3 backend (``S3Backend`` and its subclasses in ``storage/s3.py``),
#: each with its own settings section.
S3_FAMILY = ("s3", "r2", "b2", "tigris")

_S3_HINT = "pip install 'pxlite[s3]'"
_registry: dict[str, tuple[str, str]] = {}
_backends: dict[Hashable, StorageBackend] = {}
_lock = threading.Lock()
_generation = 0  # counts registrations: the grammar built from the registry is then stale


def register_backend(scheme: str, target: str, install_hint: str = "", *,
                     clobber: bool = False) -> None:
    """Register the backend class serving ``scheme`` (``clobber=True`` to replace one).

    ``target`` is ``"package.module:ClassName"``, imported on first use; ``install_hint`` is what a
    user must run when that import fails for lack of an SDK (e.g. ``"pip install 'pxlite[s3]'"``).
    A new scheme is then a usable destination and input everywhere: its URIs (and the class's
    ``input_schemes`` and claimed https hosts) are recognised by :func:`scheme_of`, the class's
    ``canonical_prefix`` checks its destinations and its ``uri_forms`` join the help texts.
    Registration order is the order of the help texts; the first class claiming a host wins.
    """
    if ":" not in target:
        raise ConfigError(f"backend target {target!r} must look like 'package.module:ClassName'")
    if not re.fullmatch(r"[a-z][a-z0-9+.-]*", scheme or ""):
        raise ConfigError(f"{scheme!r} is not a URI scheme (lowercase letters, digits, '+', '.', "
                          "'-', starting with a letter)")
    global _generation
    with _lock:
        if scheme in _registry and not clobber and _registry[scheme][0] != target:
            raise ConfigError(f"a storage backend is already registered for {scheme!r} URIs "
                              f"({_registry[scheme][0]}); pass clobber=True to replace it")
        _registry[scheme] = (target, install_hint)
        _generation += 1
        for key in [k for k in _backends if k[0] == scheme]:  # type: ignore[index]
            del _backends[key]


# In the order of the help texts ("use one of: a local path, file:///path, s3://...").
register_backend("file", "pxlite.storage.local:LocalBackend", "")
register_backend("s3", "pxlite.storage.s3:S3Backend", _S3_HINT)
register_backend("gs", "pxlite.storage.gcs:GCSBackend", "pip install 'pxlite[gcs]'")
register_backend("azure", "pxlite.storage.azure:AzureBackend", "pip install 'pxlite[azure]'")
register_backend("r2", "pxlite.storage.s3:R2Backend", _S3_HINT)
register_backend("b2", "pxlite.storage.s3:B2Backend", _S3_HINT)
register_backend("tigris", "pxlite.storage.s3:TigrisBackend", _S3_HINT)
register_backend("http", "pxlite.storage.http:HttpBackend", "")


# ---------------------------------------------------------------------------------------------
# Recognising URIs

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")


def url_scheme(text: str) -> str | None:
    """The lower-cased scheme of ``text`` if it is a ``scheme:`` URI (not a Windows drive)."""
    m = _SCHEME_RE.match(text)
    return m.group(1).lower() if m else None


class _Grammar(NamedTuple):
    """What the registered classes say about URIs, built from one state of the registry."""

    registry: dict[str, tuple[str, str]]
    generation: int
    aliases: dict[str, str]  # input scheme -> registered scheme
    claimers: tuple[tuple[str, type[StorageBackend]], ...]  # asked in turn about https hosts
    forms: str


_grammar_cache: _Grammar | None = None


def _grammar() -> _Grammar:
    """The grammar of every registered backend class (imported now, without their SDKs),
    rebuilt when a backend is registered or the registry is swapped (as tests do)."""
    global _grammar_cache
    g = _grammar_cache
    if g is not None and g.registry is _registry and g.generation == _generation:
        return g
    registry, generation = _registry, _generation
    aliases: dict[str, str] = {}
    claimers: list[tuple[str, type[StorageBackend]]] = []
    forms: dict[str, None] = {}
    for scheme in list(registry):
        try:
            cls = _load_class(scheme)
        except (ImportError, AttributeError):
            continue  # a plug-in that cannot load claims nothing (using its scheme says why)
        for alias in cls.input_schemes:
            aliases.setdefault(alias, scheme)
        claimers.append((scheme, cls))
        forms.update(dict.fromkeys(cls.uri_forms(scheme)))
    g = _Grammar(registry, generation, aliases, tuple(claimers), ", ".join(forms))
    _grammar_cache = g
    return g


def destination_forms() -> str:
    """The destination spellings of every registered backend, for help texts: "a local path,
    file:///path, s3://bucket/prefix/, ..." (each backend's ``uri_forms``, in registration
    order)."""
    return _grammar().forms


def scheme_of(uri: str | os.PathLike) -> str:
    """The backend scheme of a URI or path: file, s3, r2, b2, tigris, gs, azure, http, or a
    scheme added with :func:`register_backend`.

    Paths and ``file:`` URIs are ``'file'``; an input scheme a backend reads as its own maps to
    that backend's scheme (``az://``, ``wasbs://`` -> ``'azure'``); https URLs of a host a backend
    claims (R2, B2, Tigris and Azure Blob hosts) map to it unless they carry a query string such
    as a SAS token, which makes them plain ``'http'``, like every other web URL. Raises
    :class:`ConfigError` for an unsupported scheme such as ``ftp://``.
    """
    text = os.fspath(uri)
    scheme = url_scheme(text)
    if scheme is None:
        return "file"
    if scheme == "https" and "?" not in text:
        host = text.split("://", 1)[1].partition("/")[0].lower() if "://" in text else ""
        for name, cls in _grammar().claimers:
            if cls.claims_https(host):
                return name
    if scheme in _registry:
        return scheme
    grammar = _grammar()
    if scheme in grammar.aliases:
        return grammar.aliases[scheme]
    raise ConfigError(f"{text!r}: unsupported URI scheme {scheme!r}; use one of: "
                      f"{grammar.forms}, or http(s):// to read")


def is_local(uri: str | os.PathLike) -> bool:
    """True when ``uri`` is a local path or a ``file:`` URI."""
    return scheme_of(uri) == "file"


def to_uri(path_or_uri: str | os.PathLike) -> str:
    """A local path as an absolute ``file:///`` URI (no existence check); URIs come back
    unchanged."""
    if not isinstance(path_or_uri, os.PathLike):
        text = str(path_or_uri)
        if url_scheme(text) is not None:
            return text
    path = os.path.abspath(os.path.expanduser(os.fspath(path_or_uri)))
    # What Path(path).as_uri() returns on POSIX, without building a Path: this runs per row.
    return "file://" + urllib.parse.quote_from_bytes(os.fsencode(path))


def file_path(uri: str | os.PathLike) -> Path:
    """The local path a ``file:`` URI (or a plain path) names; ConfigError for other URIs."""
    text = os.fspath(uri)
    scheme = url_scheme(text)
    if scheme is None:
        return Path(os.path.abspath(os.path.expanduser(text)))
    if scheme != "file":
        raise ConfigError(f"{text!r} is not a local file URI (file:///...)")
    rest = text[len("file:"):]
    if rest.startswith("//"):
        host, _, path = rest[2:].partition("/")
        if host not in ("", "localhost"):
            raise ConfigError(f"{text!r}: file URIs on another host ({host!r}) are not supported; "
                              "mount the share and use its local path")
        path = "/" + path
    else:
        path = rest
    if not path.startswith("/"):
        raise ConfigError(f"{text!r}: a file URI must hold an absolute path (file:///abs/path)")
    decoded = urllib.parse.unquote(path)
    if "\x00" in decoded:
        raise ConfigError(f"{text!r} is not a usable file URI: it names a path with a NUL "
                          "character")
    return Path(decoded)


def join(prefix_uri: str, key: str) -> str:
    """The URI of ``key`` (relative, posix, no ``..``) under ``prefix_uri`` (which ends in "/")."""
    if not prefix_uri.endswith("/"):
        raise ConfigError(f"prefix {prefix_uri!r} must end with '/' (use canonical_prefix())")
    check_segments(key, prefix_uri + key, what="key", allow_empty=False)
    if url_scheme(prefix_uri) == "file":
        return prefix_uri + urllib.parse.quote(key, safe="/")
    return prefix_uri + key


# ---------------------------------------------------------------------------------------------
# Bucket and container URIs


class BucketURI(NamedTuple):
    """A parsed bucket URI: ``base`` (``"s3://"`` or ``"https://host/"``), bucket, key."""

    scheme: str
    base: str
    bucket: str
    key: str

    def with_key(self, key: str) -> str:
        """The URI of another key in the same bucket, in the same form."""
        return f"{self.base}{self.bucket}/{key}"


class AzureURI(NamedTuple):
    """A parsed Azure Blob URI: ``account`` (None for ``az://``: the [azure] account)."""

    account: str | None
    base: str
    container: str
    blob: str

    def with_key(self, blob: str) -> str:
        """The URI of another blob in the same container, in the same form."""
        return f"{self.base}{self.container}/{blob}"


def parse_bucket_uri(uri: str) -> BucketURI:
    """Split an S3-family or ``gs://`` URI into scheme, base, bucket and key (no validation)."""
    scheme = scheme_of(uri)
    if scheme not in (*S3_FAMILY, "gs"):
        raise ConfigError(f"{uri!r} is not a bucket URI (s3://, gs://, r2://, b2://, tigris://)")
    head, sep, rest = uri.partition("://")
    if not sep:
        raise ConfigError(f"{uri!r}: expected {scheme}://bucket/key")
    if url_scheme(uri) in ("http", "https"):
        host, _, rest = rest.partition("/")
        base = f"{head.lower()}://{host.lower()}/"
    else:
        base = f"{scheme}://"
    bucket, _, key = rest.partition("/")
    return BucketURI(scheme, base, bucket, key)


def parse_azure_uri(uri: str) -> AzureURI:
    """Split an Azure URI (az://, https blob, wasbs/abfs) into account, base, container, blob."""
    return cast("type[AzureBackend]", _load_class("azure")).parse_uri(uri)


# ---------------------------------------------------------------------------------------------
# Destinations

def canonical_prefix(dest: str | os.PathLike, settings: Settings, *,
                     base: Path | None = None) -> str:
    """Check the form of a destination and return its canonical prefix URI (ends with "/").

    Local paths and ``file:`` URIs become ``file:///abs/dir/``; a relative path resolves against
    ``base`` (or the current folder) and, when ``base`` is given, may not leave it through ``..``
    or a symlink. Cloud URIs are checked for a valid bucket/container name, a clean prefix and the
    settings they need (``az://`` needs an [azure] account, ``r2://`` an account id, ``b2://`` a
    region). No network access; raises :class:`ConfigError` naming the URI, the problem and the fix.
    The check is the serving backend class's own ``canonical_prefix``.
    """
    if isinstance(dest, os.PathLike):
        return cast("type[LocalBackend]", _load_class("file")).canonical_prefix(
            dest, settings, base=base)
    if not isinstance(dest, str):
        raise ConfigError(f"a destination must be a path or URI string, got {dest!r}")
    text = dest.strip()
    return _load_class(scheme_of(text)).canonical_prefix(text, settings, base=base)


def validate_destination(dest: str | os.PathLike, settings: Settings, *,
                         base: Path | None = None) -> str:
    """Check that a destination exists and is writable now; return its canonical prefix URI.

    Runs :func:`canonical_prefix`, then the backend's ``check_writable``: a local folder is created
    and a probe file written; a cloud bucket/container must exist and accept a tiny probe object
    (written and deleted again). Raises :class:`ConfigError` (missing bucket, no permission, bad
    settings) or :class:`StorageError` (the service could not be reached), naming the URI and fix.
    """
    prefix = canonical_prefix(dest, settings, base=base)
    get_backend(prefix, settings).check_writable(prefix)
    return prefix


# ---------------------------------------------------------------------------------------------
# Backends


def _load_class(scheme: str) -> type[StorageBackend]:
    try:
        target, _hint = _registry[scheme]
    except KeyError:
        raise ConfigError(f"no storage backend is registered for {scheme!r} URIs") from None
    module_name, _, class_name = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, class_name)


def get_backend(uri: str, settings: Settings) -> StorageBackend:
    """The backend serving ``uri``, created on first use and cached.

    Cached per (scheme, provider settings fingerprint, timeout/retries/backoff, endpoint or
    account), so one client (and its connection pool) serves every call. A missing SDK raises
    :class:`ConfigError` with the ``pip install`` hint.
    """
    scheme = scheme_of(uri)
    cls = _load_class(scheme)
    provider = cls.settings_section
    key = (scheme, settings.fingerprint(provider) if provider else (),
           settings["storage_timeout_s"], settings["storage_retries"],
           settings.get("storage_retry_delay_s"), settings.get("download_timeout_s"),
           settings.get("max_download_bytes"), settings.get("max_image_pixels"),
           cls.location_key(uri))
    backend = _backends.get(key)
    if backend is not None:
        return backend
    with _lock:
        backend = _backends.get(key)
        if backend is None:
            try:
                backend = cls(settings, uri)
            except ImportError as e:
                hint = _registry[scheme][1]
                raise ConfigError(
                    f"{scheme} storage needs the {e.name or 'SDK'} package, which is not "
                    f"installed; install it with: {hint}"
                ) from e
            _backends[key] = backend
    return backend


def clear_backends() -> None:
    """Forget every cached backend (tests use this after changing settings or servers)."""
    with _lock:
        _backends.clear()
