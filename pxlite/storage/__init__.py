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

Backends are imported lazily by name (``"module:Class"``) so ``import pxlite.storage`` loads no
cloud SDK; a missing SDK becomes a :class:`ConfigError` with the ``pip install`` hint.
"""

from __future__ import annotations

import importlib
import os
import re
import threading
import urllib.parse
from collections.abc import Hashable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from ..config import Settings
from ..errors import ConfigError

if TYPE_CHECKING:
    from .base import StorageBackend

__all__ = [
    "PROVIDER_OF_SCHEME",
    "S3_FAMILY",
    "AzureURI",
    "BucketURI",
    "canonical_prefix",
    "clear_backends",
    "file_path",
    "get_backend",
    "is_local",
    "join",
    "parse_azure_uri",
    "parse_bucket_uri",
    "register_backend",
    "scheme_of",
    "to_uri",
    "validate_destination",
]

#: Schemes served by the S3 backend, each with its own settings section.
S3_FAMILY = ("s3", "r2", "b2", "tigris")

#: The settings section (``settings.provider(...)``) each scheme reads.
PROVIDER_OF_SCHEME: dict[str, str | None] = {
    "file": None, "http": None, "s3": "s3", "r2": "r2", "b2": "b2", "tigris": "tigris",
    "gs": "gcs", "azure": "azure",
}

_S3_HINT = "pip install 'pxlite[s3]'"
_registry: dict[str, tuple[str, str]] = {}
_backends: dict[Hashable, StorageBackend] = {}
_lock = threading.Lock()


def register_backend(scheme: str, target: str, install_hint: str = "", *,
                     clobber: bool = False) -> None:
    """Register the backend class serving ``scheme`` (``clobber=True`` to replace one).

    ``target`` is ``"package.module:ClassName"``, imported on first use; ``install_hint`` is what a
    user must run when that import fails for lack of an SDK (e.g. ``"pip install 'pxlite[s3]'"``).
    A new scheme is then a usable destination and input everywhere: its URIs are recognised by
    :func:`scheme_of`, and the class's ``canonical_prefix`` checks its destinations.
    """
    if ":" not in target:
        raise ConfigError(f"backend target {target!r} must look like 'package.module:ClassName'")
    if not re.fullmatch(r"[a-z][a-z0-9+.-]*", scheme or ""):
        raise ConfigError(f"{scheme!r} is not a URI scheme (lowercase letters, digits, '+', '.', "
                          "'-', starting with a letter)")
    with _lock:
        if scheme in _registry and not clobber and _registry[scheme][0] != target:
            raise ConfigError(f"a storage backend is already registered for {scheme!r} URIs "
                              f"({_registry[scheme][0]}); pass clobber=True to replace it")
        _registry[scheme] = (target, install_hint)
        for key in [k for k in _backends if k[0] == scheme]:  # type: ignore[index]
            del _backends[key]


for _s in S3_FAMILY:
    register_backend(_s, "pxlite.storage.s3:S3Backend", _S3_HINT)
register_backend("file", "pxlite.storage.local:LocalBackend", "")
register_backend("gs", "pxlite.storage.gcs:GCSBackend", "pip install 'pxlite[gcs]'")
register_backend("azure", "pxlite.storage.azure:AzureBackend", "pip install 'pxlite[azure]'")
register_backend("http", "pxlite.storage.http:HttpBackend", "")


# ---------------------------------------------------------------------------------------------
# Recognising URIs

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")
_R2_HOST = re.compile(r"^[a-z0-9-]+(\.[a-z]+)?\.r2\.cloudflarestorage\.com$")
_B2_HOST = re.compile(r"^s3\.([a-z0-9-]+)\.backblazeb2\.com$")
_TIGRIS_HOSTS = ("t3.storage.dev", "fly.storage.tigris.dev")
_AZURE_HOST = re.compile(r"^([a-z0-9]{3,24})\.(blob|dfs)\.core\.windows\.net$")
_AZURE_INPUT_SCHEMES = ("az", "wasb", "wasbs", "abfs", "abfss")
_FORMS = (
    "a local path, file:///path, s3://bucket/prefix/, gs://bucket/prefix/, az://container/prefix/, "
    "wasbs://container@account.blob.core.windows.net/prefix/, "
    "https://account.blob.core.windows.net/container/prefix/, r2://bucket/prefix/, "
    "https://<account>.r2.cloudflarestorage.com/bucket/prefix/, b2://bucket/prefix/, "
    "https://s3.<region>.backblazeb2.com/bucket/prefix/, tigris://bucket/prefix/, "
    "https://t3.storage.dev/bucket/prefix/"
)


def _url_scheme(text: str) -> str | None:
    """The lower-cased scheme of ``text`` if it is a ``scheme:`` URI (not a Windows drive)."""
    m = _SCHEME_RE.match(text)
    return m.group(1).lower() if m else None


def _https_host_and_path(uri: str) -> tuple[str, str] | None:
    """``(host, rest)`` of an http(s) URI without a query string, else None."""
    scheme = _url_scheme(uri)
    if scheme not in ("http", "https") or "?" in uri:
        return None
    rest = uri.split("://", 1)[1] if "://" in uri else ""
    host, _, path = rest.partition("/")
    return host.lower(), path


def scheme_of(uri: str | os.PathLike) -> str:
    """The backend scheme of a URI or path: file, s3, r2, b2, tigris, gs, azure or http.

    Paths and ``file:`` URIs are ``'file'``; https URLs of R2, B2, Tigris and Azure Blob hosts map
    to their provider (unless they carry a query string such as a SAS token, which makes them plain
    ``'http'``). Raises :class:`ConfigError` for an unsupported scheme such as ``ftp://``.
    """
    text = os.fspath(uri)
    scheme = _url_scheme(text)
    if scheme is None:
        return "file"
    if scheme in ("file", "s3", "r2", "b2", "tigris", "gs"):
        return scheme
    if scheme in _AZURE_INPUT_SCHEMES:
        return "azure"
    if scheme in ("http", "https"):
        hp = _https_host_and_path(text)
        if hp is not None and scheme == "https":
            host = hp[0]
            if _R2_HOST.match(host):
                return "r2"
            if _B2_HOST.match(host):
                return "b2"
            if host in _TIGRIS_HOSTS:
                return "tigris"
            if _AZURE_HOST.match(host):
                return "azure"
        return "http"
    if scheme in _registry:  # a scheme added with register_backend()
        return scheme
    raise ConfigError(
        f"{text!r}: unsupported URI scheme {scheme!r}; use one of: {_FORMS}, or http(s):// to read"
    )


def is_local(uri: str | os.PathLike) -> bool:
    """True when ``uri`` is a local path or a ``file:`` URI."""
    return scheme_of(uri) == "file"


def to_uri(path_or_uri: str | os.PathLike) -> str:
    """A local path as an absolute ``file:///`` URI (no existence check); URIs come back
    unchanged."""
    if not isinstance(path_or_uri, os.PathLike):
        text = str(path_or_uri)
        if _url_scheme(text) is not None:
            return text
    path = os.path.abspath(os.path.expanduser(os.fspath(path_or_uri)))
    # What Path(path).as_uri() returns on POSIX, without building a Path: this runs per row.
    return "file://" + urllib.parse.quote_from_bytes(os.fsencode(path))


def file_path(uri: str | os.PathLike) -> Path:
    """The local path a ``file:`` URI (or a plain path) names; ConfigError for other URIs."""
    text = os.fspath(uri)
    scheme = _url_scheme(text)
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
    return Path(urllib.parse.unquote(path))


def join(prefix_uri: str, key: str) -> str:
    """The URI of ``key`` (relative, posix, no ``..``) under ``prefix_uri`` (which ends in "/")."""
    if not prefix_uri.endswith("/"):
        raise ConfigError(f"prefix {prefix_uri!r} must end with '/' (use canonical_prefix())")
    _check_segments(key, prefix_uri + key, what="key", allow_empty=False)
    if _url_scheme(prefix_uri) == "file":
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
    if _url_scheme(uri) in ("http", "https"):
        host, _, rest = rest.partition("/")
        base = f"{head.lower()}://{host.lower()}/"
    else:
        base = f"{scheme}://"
    bucket, _, key = rest.partition("/")
    return BucketURI(scheme, base, bucket, key)


def parse_azure_uri(uri: str) -> AzureURI:
    """Split an Azure URI (az://, https blob, wasbs/abfs) into account, base, container, blob."""
    scheme = _url_scheme(uri)
    rest = uri.split("://", 1)[1] if "://" in uri else ""
    if scheme == "az":
        container, _, blob = rest.partition("/")
        return AzureURI(None, "az://", container, blob)
    if scheme in ("http", "https"):
        host, _, path = rest.partition("/")
        m = _AZURE_HOST.match(host.lower())
        if not m:
            raise ConfigError(f"{uri!r} is not an Azure Blob URL (https://<account>.blob.core."
                              "windows.net/container/path)")
        container, _, blob = path.partition("/")
        return AzureURI(m.group(1), f"https://{m.group(1)}.blob.core.windows.net/", container,
                        blob)
    if scheme in ("wasb", "wasbs", "abfs", "abfss"):
        authority, _, blob = rest.partition("/")
        container, at, host = authority.partition("@")
        m = _AZURE_HOST.match(host.lower()) if at else None
        if not m:
            raise ConfigError(f"{uri!r}: expected {scheme}://container@<account>.blob.core."
                              "windows.net/path")
        return AzureURI(m.group(1), f"https://{m.group(1)}.blob.core.windows.net/", container,
                        blob)
    raise ConfigError(f"{uri!r} is not an Azure Blob URI")


# ---------------------------------------------------------------------------------------------
# Destinations

_S3_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_GCS_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
_AZ_CONTAINER = re.compile(r"^(\$root|[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9])$")


def _check_segments(path: str, uri: str, *, what: str, allow_empty: bool) -> None:
    """Reject ``.``/``..``/empty segments, a leading ``/``, and characters that break URLs."""
    if not path:
        if allow_empty:
            return
        raise ConfigError(f"{uri!r}: the {what} is empty")
    if path.startswith("/"):
        raise ConfigError(f"{uri!r}: the {what} {path!r} must not start with '/'")
    for seg in path.rstrip("/").split("/"):
        if seg in ("", ".", ".."):
            raise ConfigError(f"{uri!r}: the {what} {path!r} has an empty, '.' or '..' segment; "
                              "write the path without '//', './' or '../'")
    bad = sorted({c for c in path if ord(c) < 32 or c in "\\\x7f"})
    if bad:
        raise ConfigError(f"{uri!r}: the {what} contains the forbidden character(s) {bad!r}")


def _bucket_rules(scheme: str) -> tuple[re.Pattern[str], str]:
    if scheme == "gs":
        return _GCS_BUCKET, ("3-63 characters (up to 222 with dots): lowercase letters, digits, "
                             "'-', '_' and '.', starting and ending with a letter or digit")
    return _S3_BUCKET, ("3-63 characters: lowercase letters, digits, '-' and '.', starting and "
                        "ending with a letter or digit")


def _canonical_bucket(text: str, settings: Settings) -> str:
    loc = parse_bucket_uri(text)
    scheme = loc.scheme
    if not loc.bucket:
        raise ConfigError(f"{text!r}: the bucket name is missing; write "
                          f"{loc.base}<bucket>/<prefix>/")
    pattern, rules = _bucket_rules(scheme)
    if not pattern.match(loc.bucket) or ".." in loc.bucket:
        raise ConfigError(f"{text!r}: {loc.bucket!r} is not a valid bucket name; a bucket name "
                          f"has {rules}")
    if "?" in loc.key or "#" in loc.key:
        raise ConfigError(f"{text!r}: a destination prefix may not contain '?' or '#'")
    _check_segments(loc.key, text, what="prefix", allow_empty=True)
    if loc.base == f"{scheme}://":
        section = settings.provider(scheme)
        if scheme == "r2" and not (section.get("endpoint_url") or section.get("account_id")):
            raise ConfigError(f"{text!r}: r2:// needs your Cloudflare account; set [r2] account_id "
                              "(or endpoint_url), or use https://<account>.r2.cloudflarestorage."
                              "com/bucket/prefix/")
        if scheme == "b2" and not (section.get("endpoint_url") or section.get("region")):
            raise ConfigError(f"{text!r}: b2:// needs the bucket's region; set [b2] region "
                              "(e.g. 'us-west-004') or endpoint_url, or use https://s3.<region>."
                              "backblazeb2.com/bucket/prefix/")
    key = loc.key if not loc.key or loc.key.endswith("/") else loc.key + "/"
    return loc.with_key(key)


def _canonical_azure(text: str, settings: Settings) -> str:
    loc = parse_azure_uri(text)
    if not loc.container:
        raise ConfigError(f"{text!r}: the container name is missing; write "
                          "az://<container>/<prefix>/")
    if not _AZ_CONTAINER.match(loc.container):
        raise ConfigError(f"{text!r}: {loc.container!r} is not a valid container name; it has "
                          "3-63 characters: lowercase letters, digits and single '-', starting and "
                          "ending with a letter or digit")
    if "?" in loc.blob or "#" in loc.blob:
        raise ConfigError(f"{text!r}: a destination prefix may not contain '?' or '#' (a SAS "
                          "token belongs in [azure] credential)")
    _check_segments(loc.blob, text, what="prefix", allow_empty=True)
    if loc.account is None:
        az = settings.provider("azure")
        if not (az.get("connection_string") or az.get("account_url") or az.get("account_name")):
            raise ConfigError(f"{text!r}: az:// uses the account in the [azure] settings, which "
                              "has none; set [azure] connection_string, or account_url (+ "
                              "credential), or write https://<account>.blob.core.windows.net/"
                              f"{loc.container}/...")
    key = loc.blob if not loc.blob or loc.blob.endswith("/") else loc.blob + "/"
    return loc.with_key(key)


def _canonical_local(text: str | os.PathLike, base: Path | None) -> str:
    if "\x00" in os.fspath(text):
        raise ConfigError(f"{os.fspath(text)!r} is not a usable destination: it contains a NUL "
                          "character")
    try:
        return _canonical_local_path(text, base)
    except (RuntimeError, OSError, ValueError) as e:  # a symlink loop, an unreadable folder
        raise ConfigError(f"{os.fspath(text)!r}: cannot resolve this destination ({e})") from e


def _canonical_local_path(text: str | os.PathLike, base: Path | None) -> str:
    if isinstance(text, str) and _url_scheme(text) == "file":
        path = file_path(text)
    else:
        raw = os.path.expanduser(os.fspath(text))
        if not raw:
            raise ConfigError("an empty string is not a destination; give a folder path or URI")
        path = Path(raw)
        if not path.is_absolute():
            anchor = Path(base) if base is not None else Path.cwd()
            path = anchor / path
            if base is not None:
                resolved, root = path.resolve(), anchor.resolve()
                if not resolved.is_relative_to(root):
                    raise ConfigError(
                        f"{os.fspath(text)!r}: the relative destination resolves to {resolved}, "
                        f"outside {root} (through '..' or a symlink); give a folder inside it "
                        "or an absolute path")
    uri = Path(os.path.abspath(path)).as_uri()
    return uri if uri.endswith("/") else uri + "/"


def canonical_prefix(dest: str | os.PathLike, settings: Settings, *,
                     base: Path | None = None) -> str:
    """Check the form of a destination and return its canonical prefix URI (ends with "/").

    Local paths and ``file:`` URIs become ``file:///abs/dir/``; a relative path resolves against
    ``base`` (or the current folder) and, when ``base`` is given, may not leave it through ``..``
    or a symlink. Cloud URIs are checked for a valid bucket/container name, a clean prefix and the
    settings they need (``az://`` needs an [azure] account, ``r2://`` an account id, ``b2://`` a
    region). No network access; raises :class:`ConfigError` naming the URI, the problem and the fix.
    """
    if isinstance(dest, os.PathLike):
        return _canonical_local(dest, base)
    if not isinstance(dest, str):
        raise ConfigError(f"a destination must be a path or URI string, got {dest!r}")
    text = dest.strip()
    scheme = scheme_of(text)
    if scheme == "file":
        return _canonical_local(text, base)
    if scheme in (*S3_FAMILY, "gs"):
        return _canonical_bucket(text, settings)
    if scheme == "azure":
        return _canonical_azure(text, settings)
    if scheme == "http":
        raise ConfigError(f"{text!r} is a plain web URL, which pxlite can read but not write to; "
                          f"use one of: {_FORMS}")
    return _load_class(scheme).canonical_prefix(text, settings)  # a registered backend's own


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
    provider = PROVIDER_OF_SCHEME.get(scheme)
    key = (scheme, settings.fingerprint(provider) if provider else (),
           settings["storage_timeout_s"], settings["storage_retries"],
           settings.get("storage_retry_delay_s"), cls.location_key(uri))
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
