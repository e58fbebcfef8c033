"""Network functions: ``presigned_url`` turns a stored file's location into a URL anyone can GET.

    from pxlite.functions import net
    t.add_computed_column(share=net.presigned_url(t.rotated.fileurl, 3600))
    t.select(net.presigned_url(t.rotated.fileurl, 60)).collect()

Registered as the plain (non-method) function ``pxlite.functions.net.presigned_url`` so a computed
column using it is found again when the database reopens. The executor passes the database's
effective settings (credentials, endpoints) as the keyword ``settings``; that keyword is not part
of an expression.

What each location gives:

* ``s3://``, ``r2://``, ``b2://``, ``tigris://`` (and their https forms): a SigV4 presigned GET;
  ``gs://``: a V4 signed URL; both at most 7 days.
* Azure (``az://``, ``https://<acct>.blob.core.windows.net/...``, and a URL under the configured
  ``[azure]`` account's blob endpoint, such as Azurite's ``http://127.0.0.1:PORT/devstoreaccount1/
  container/blob`` that ``.fileurl`` shows): a read-only blob SAS.
* any other ``http(s)`` URL (or one that already carries a query string, e.g. an earlier presigned
  URL): returned unchanged, it is already fetchable by whoever holds it.
* a local file: :class:`~pxlite.errors.ConfigError` "presigned URLs need cloud storage; configure
  a cloud destination".
"""

from __future__ import annotations

import threading
import urllib.parse
from typing import Any

from .. import storage
from ..config import Settings, resolve  # Settings at runtime: hints are resolved at registration
from ..errors import ConfigError, SchemaError
from ..redact import public_url
from ..storage.azure import AzureBackend  # the module only: the SDK loads on first use
from ..udf import Function, register

__all__ = ["presigned_url"]

_LOCAL_ERROR = "presigned URLs need cloud storage; configure a cloud destination"


def _check_seconds(value: Any, error: type[Exception]) -> int:
    """``value`` as a positive whole number of seconds, else ``error`` naming it."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"presigned_url(): expiration_seconds must be a whole number of seconds "
                    f"(an int such as 3600), got {type(value).__name__} {value!r}")
    if value <= 0:
        raise error(f"presigned_url(): expiration_seconds must be positive, got {value!r}")
    return int(value)


# ---- Azure: a blob URL under the configured account's endpoint -----------------------------------

_endpoints: dict[Any, str | None] = {}
_endpoints_lock = threading.Lock()


def _azure_account_endpoint(settings: Settings) -> str | None:
    """The configured [azure] account's blob endpoint (``scheme://host[:port]/path/``), or None.

    Taken from the SDK client the Azure backend builds, so connection strings (BlobEndpoint,
    UseDevelopmentStorage, EndpointSuffix) and account URLs are read exactly as the SDK reads
    them; a SAS query and a ``user:password@`` of the endpoint are dropped, as in the file URLs
    ``AzureBackend.fileurl`` returns. Cached per [azure] settings.
    """
    section = settings.provider("azure")
    if not (section.get("connection_string") or section.get("account_url")
            or section.get("account_name")):
        return None
    key = settings.fingerprint("azure")
    with _endpoints_lock:
        if key in _endpoints:
            return _endpoints[key]
    backend = storage.get_backend("az://pxlite-probe/", settings)  # no network
    if not isinstance(backend, AzureBackend):
        return None  # az:// registered to another class: no SDK client to read the endpoint from
    endpoint = public_url(str(backend.client.primary_endpoint))  # as AzureBackend.fileurl
    endpoint = endpoint if endpoint.endswith("/") else endpoint + "/"
    with _endpoints_lock:
        _endpoints[key] = endpoint
    return endpoint


def _normalise_origin(url: str) -> tuple[str, str]:
    """``(scheme://host[:port] lower-cased, rest)`` of an http(s) URL."""
    scheme, _, rest = url.partition("://")
    host, slash, path = rest.partition("/")
    return f"{scheme.lower()}://{host.lower()}", slash + path


def _azure_uri_of(url: str, settings: Settings) -> str | None:
    """``az://container/blob`` when ``url`` is a blob URL under the configured Azure account's
    endpoint (without a query string), else None."""
    if "?" in url or "#" in url:
        return None
    endpoint = _azure_account_endpoint(settings)
    if endpoint is None:
        return None
    origin, path = _normalise_origin(url)
    e_origin, e_path = _normalise_origin(endpoint)
    if origin != e_origin or not path.startswith(e_path):
        return None
    container, _, blob = path[len(e_path):].partition("/")
    container, blob = urllib.parse.unquote(container), urllib.parse.unquote(blob)
    if not container or not blob or blob.endswith("/"):
        raise ConfigError(f"cannot presign {url}: it names an Azure container or folder, not a "
                          "blob; give the URL of one file")
    return f"az://{container}/{blob}"


# ---- the function --------------------------------------------------------------------------------

def presigned_url(url: str, expiration_seconds: int, settings: Settings | None = None) -> str:
    """A URL anyone can GET for ``expiration_seconds`` seconds, for a file in cloud storage.

    ``url`` is a stored file's location: ``t.col.fileurl`` or a canonical URI (``s3://b/k``,
    ``gs://b/k``, ``az://c/k``, an R2/B2/Tigris https form, an Azure blob URL). S3-family objects
    get a SigV4 presigned GET and GCS objects a V4 signed URL (both at most 7 days); Azure blobs
    a read-only SAS. Other http(s) URLs come back unchanged. A local file raises
    :class:`ConfigError` ("presigned URLs need cloud storage; configure a cloud destination"), as
    does an expiry that is not a positive int or exceeds the provider's limit. In expressions the
    database's settings are passed automatically; a direct call uses ``settings`` or else the
    process-wide settings (``pxl.configure`` > environment > config.toml).
    """
    seconds = _check_seconds(expiration_seconds, ConfigError)
    if not isinstance(url, str):
        raise ConfigError(f"presigned_url(): url must be a string (a file URL or URI), got "
                          f"{type(url).__name__} {str(url)[:80]!r}")
    text = url.strip()
    if not text:
        raise ConfigError("presigned_url(): url is empty")
    if settings is None:
        settings = resolve()
    scheme = storage.scheme_of(text)  # an unsupported scheme (ftp://...) is a ConfigError
    if scheme == "file":
        raise ConfigError(f"cannot presign {text}: it is a local file; {_LOCAL_ERROR} (a "
                          "destination= or output_media_dest such as s3://bucket/prefix/)")
    if scheme == "http":
        canonical = _azure_uri_of(text, settings)
        if canonical is None:
            return url  # a plain web URL: already fetchable by whoever holds it
        text = canonical
    elif scheme == "azure":
        loc = storage.parse_azure_uri(text)
        if not loc.container or not loc.blob or loc.blob.endswith("/"):
            raise ConfigError(f"cannot presign {text}: it names an Azure container or folder, "
                              "not a blob; give the URI of one file")
    else:
        loc_b = storage.parse_bucket_uri(text)
        if not loc_b.bucket or not loc_b.key or loc_b.key.endswith("/"):
            raise ConfigError(f"cannot presign {text}: it names a bucket or folder, not an "
                              "object; give the URI of one file")
    return storage.get_backend(text, settings).presign(text, seconds)


class _PresignedUrlFunction(Function):
    """Checks the arguments when an expression is built, so mistakes fail at the call site."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from ..exprs import ColumnRef, Expr, MediaAttr

        if not any(isinstance(a, Expr) for a in (*args, *kwargs.values())):
            return self.fn(*args, **kwargs)  # plain values: just run it
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as e:
            raise SchemaError(f"presigned_url(): {e}") from None
        if "settings" in bound.arguments:
            raise SchemaError("presigned_url(): settings= is supplied by pxlite from the "
                              "database's settings; leave it out of an expression")
        url = bound.arguments["url"]
        if isinstance(url, ColumnRef) and url.type.is_media:
            url = MediaAttr(url, "fileurl")  # t.rot means its file: t.rot.fileurl
        elif isinstance(url, Expr):
            if url.type.name != "String":
                raise SchemaError(f"presigned_url(): url must be a string expression such as "
                                  f"t.col.fileurl, got {url!r} of type {url.type.name}")
        elif not isinstance(url, str):
            raise SchemaError(f"presigned_url(): url must be a string or a string expression "
                              f"(t.col.fileurl), got {type(url).__name__} {str(url)[:80]!r}")
        expiry = bound.arguments["expiration_seconds"]
        if isinstance(expiry, Expr):
            if expiry.type.name != "Int":
                raise SchemaError(f"presigned_url(): expiration_seconds must be an Int "
                                  f"expression or an int, got {expiry!r} of type "
                                  f"{expiry.type.name}")
        else:
            expiry = _check_seconds(expiry, SchemaError)
        return super().__call__(url, expiry)


presigned_url = _PresignedUrlFunction(
    presigned_url, name="pxlite.functions.net.presigned_url", wants_settings=True)
register(presigned_url)
