"""Keep credentials out of every text pxlite stores, returns, raises or logs.

:func:`redact` masks, anywhere inside a string:

* the user-info part of a URL (``http://user:pw@host`` -> ``http://****@host``), except in the
  Hadoop-style Azure schemes (``wasbs://container@account...``) where it names a container;
* the value of credential-like query parameters (an Azure SAS' ``sig``, ``se``, ``sp``, ``sv``...;
  ``X-Amz-Signature``, ``X-Amz-Security-Token``, ``X-Goog-Signature``, ``token``, ``key``,
  ``password``...): ``sig=****``, also in a bare ``/path?query`` as HTTP client logs print it;
* ``AccountKey=``, ``SharedAccessSignature=`` and ``SharedAccessKey=`` in connection strings;
* every secret value :func:`remember` was told about (the storage backends remember the secrets
  of the settings they are built from, so a key or token is masked wherever it turns up).

:func:`scrub_exception` rewrites the message of an exception and of every exception in its
chain (an SDK error's text is printed in tracebacks), and :func:`install_log_filter` puts a
:class:`RedactingFilter` on the loggers of the SDKs pxlite drives (urllib3, botocore, azure,
google...) so their DEBUG lines are masked too.

Layer 0: standard library only (``errors.cell_error`` uses it), and no SDK is ever imported.
"""

from __future__ import annotations

import re
import threading
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

__all__ = ["MASK", "SDK_LOGGERS", "RedactingFilter", "install_log_filter", "public_url",
           "redact", "remember", "scrub_exception", "secrets_of", "strip_query",
           "strip_userinfo"]

#: What a masked credential is replaced with.
MASK = "****"

#: Query parameters that only say what a signature grants (its expiry, rights, version, the key
#: id): masked in text, but not remembered as secrets (a date would then be masked everywhere).
_DESCRIPTIVE_PARAMS = frozenset({
    # Azure SAS (service, account and user delegation): all but the signature itself
    "se", "st", "sp", "sv", "sr", "srt", "ss", "spr", "sip", "si", "ses", "sdd", "skoid",
    "sktid", "skt", "ske", "sks", "skv", "saoid", "suoid", "scid", "sduoid",
    # who signed an AWS or Google query signature
    "x-amz-credential", "x-goog-credential", "awsaccesskeyid", "googleaccessid",
})
#: Query parameters that carry or make up a credential (compared lower-cased): the signatures,
#: tokens, keys and passwords, and the fields that describe them (all Azure SAS fields are masked:
#: ``sig`` is the secret, the others tell what it grants).
CREDENTIAL_PARAMS = _DESCRIPTIVE_PARAMS | {
    "sig", "signature", "x-amz-signature", "x-amz-security-token", "x-goog-signature",
    "token", "access_token", "refresh_token", "id_token", "auth", "authorization", "code",
    "key", "api_key", "apikey", "api-key", "secret", "client_secret", "password", "passwd", "pwd",
}
#: Parameter-name endings that make any parameter a credential (``x-api-token``, ``mykey``).
_CREDENTIAL_SUFFIXES = ("signature", "token", "secret", "password", "passwd", "_key", "-key",
                        "apikey", "accesskey")
#: Connection-string fields whose value is a secret (up to the next ``;``).
_CONN_FIELD_NAMES = ("AccountKey", "SharedAccessSignature", "SharedAccessKey")
_CONN_FIELDS = re.compile(r"(?i)\b(" + "|".join(_CONN_FIELD_NAMES) + r")=([^;\s'\"]*)")
_CONN_FIELDS_LOWER = frozenset(f.lower() for f in _CONN_FIELD_NAMES)
#: A URL's ``scheme://userinfo@``; the user-info may not contain '/', '?', '#' or blanks.
_USERINFO = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)([^/?#@\s'\"<>`]+)@")
#: Schemes whose user-info is a container name, not a credential.
_CONTAINER_SCHEMES = frozenset({"wasb://", "wasbs://", "abfs://", "abfss://"})
#: ``name=value`` right after ``?`` or ``&`` (also ``&amp;``), or at the very start of the text
#: (a SAS on its own: ``se=...&sig=...``).
_PARAM = re.compile(r"(?:(?<=[?&])|(?<=&amp;)|^)([A-Za-z0-9_.~-]+)=([^&#\s'\"<>`]*)")
#: Characters kept when they end a masked value: sentence punctuation after a URL.
_TRAILING = ").,;:]}"

#: Secrets shorter than this are not remembered: replacing them everywhere would mangle text.
MIN_SECRET_LEN = 8
#: At most this many remembered secrets (oldest forgotten first).
MAX_SECRETS = 512

_lock = threading.Lock()
_install_lock = threading.Lock()
_secrets: dict[str, None] = {}  # insertion-ordered set
_ordered: tuple[str, ...] = ()  # longest first: a secret containing another is masked whole


def is_credential_param(name: str) -> bool:
    """True when a query parameter named ``name`` carries (part of) a credential."""
    n = name.lower()
    return n in CREDENTIAL_PARAMS or n.endswith(_CREDENTIAL_SUFFIXES)


def _mask_param(m: re.Match[str]) -> str:
    name, value = m.group(1), m.group(2)
    if not value or not is_credential_param(name):
        return m.group(0)
    tail = len(value) - len(value.rstrip(_TRAILING))
    return f"{name}={MASK}{value[len(value) - tail:] if tail else ''}"


def _mask_userinfo(m: re.Match[str]) -> str:
    if m.group(1).lower() in _CONTAINER_SCHEMES:
        return m.group(0)
    return f"{m.group(1)}{MASK}@"


def redact(text: str) -> str:
    """``text`` with every credential masked (see the module docstring); anything else intact.

    Cheap when there is nothing to mask: the patterns only run when the text contains one of
    the characters they need (``@``, ``=``), and each remembered secret is one substring test.
    """
    if not isinstance(text, str) or not text:
        return text
    out = text
    for secret in _ordered:
        if secret in out:
            out = out.replace(secret, MASK)
    if "=" in out:
        out = _CONN_FIELDS.sub(lambda m: f"{m.group(1)}={MASK}", out)
        out = _PARAM.sub(_mask_param, out)
    if "@" in out:
        out = _USERINFO.sub(_mask_userinfo, out)
    return out


def strip_query(url: str) -> str:
    """``url`` without its query string and fragment (where a SAS or token travels)."""
    return url.split("#", 1)[0].split("?", 1)[0]


def strip_userinfo(url: str) -> str:
    """``url`` without a ``user:password@`` part (the query string is kept)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority = rest[:end]
    return f"{scheme}://{authority.rpartition('@')[2]}{rest[end:]}"


def public_url(url: str) -> str:
    """``url`` as it may be shown or handed out: no user-info, no query string, no fragment."""
    return strip_userinfo(strip_query(url))


# ---- remembered secrets --------------------------------------------------------------------------

def _variants(value: str) -> list[str]:
    """A secret as it may appear: as given, percent-decoded and percent-encoded."""
    out = [value, urllib.parse.unquote(value), urllib.parse.quote(value, safe=""),
           urllib.parse.quote_plus(value, safe="")]
    return [v for v in dict.fromkeys(out) if len(v) >= MIN_SECRET_LEN]


def remember(values: Iterable[Any]) -> None:
    """Mask these secret values (and their percent-encoded forms) wherever :func:`redact` sees
    them from now on. Values shorter than :data:`MIN_SECRET_LEN` characters are ignored."""
    global _ordered
    new = [v for value in values if isinstance(value, str) for v in _variants(value.strip())]
    if not new or all(v in _secrets for v in new):
        return
    with _lock:
        for v in new:
            _secrets.pop(v, None)
            _secrets[v] = None
        while len(_secrets) > MAX_SECRETS:
            del _secrets[next(iter(_secrets))]
        _ordered = tuple(sorted(_secrets, key=len, reverse=True))


def forget() -> None:
    """Forget every remembered secret (tests use this)."""
    global _ordered
    with _lock:
        _secrets.clear()
        _ordered = ()


def _query_secrets(query: str) -> list[str]:
    """The values of the secret parameters of a query string (decoded and as written)."""
    def secret(name: str) -> bool:
        return is_credential_param(name) and name.lower() not in _DESCRIPTIVE_PARAMS

    return [v for k, v in urllib.parse.parse_qsl(query) if secret(k)] + [
        v for k, _, v in (p.partition("=") for p in query.split("&")) if secret(k)]


def secrets_of(providers: Mapping[str, Mapping[str, Any]], secret_keys: Iterable[str],
               url_keys: Iterable[str]) -> list[str]:
    """The secret values in storage settings: every ``secret_keys`` value, the keys and SAS
    inside a connection string or SAS credential, and the user-info and credential query
    parameters of every ``url_keys`` value (an endpoint such as ``http://u:pw@host/?token=x``)."""
    secret_keys, url_keys = frozenset(secret_keys), frozenset(url_keys)
    out: list[str] = []
    for section in providers.values():
        for key, value in section.items():
            if not isinstance(value, str) or not value:
                continue
            if key in secret_keys:
                out.append(value)
                for part in value.split(";"):  # a connection string's fields
                    name, _, v = part.partition("=")
                    v = v.strip()
                    if name.strip().lower() in _CONN_FIELDS_LOWER:
                        out.append(v)
                        out += _query_secrets(v.lstrip("?"))
                    elif "://" in v:  # BlobEndpoint=http://user:pw@host/...
                        out += _url_secrets(v)
                out += _query_secrets(value.lstrip("?"))  # a SAS credential
            elif key in url_keys:
                out += _url_secrets(value.strip())
    return [s for s in dict.fromkeys(out) if s]


def _url_secrets(url: str) -> list[str]:
    """The password (or a lone user name: a token) and secret query values of a URL."""
    try:
        p = urllib.parse.urlsplit(url)
        user, password = p.username, p.password
    except ValueError:  # e.g. a bad port or IPv6 literal: still look at the raw parts
        p, user, password = None, None, None
    out = [password] if password else [user] if user else []
    return [s for s in out if s] + _query_secrets(p.query if p else url.partition("?")[2])


# ---- exceptions ------------------------------------------------------------------------------

#: Exception attributes some SDKs build their message from (besides ``args``).
_TEXT_ATTRIBUTES = ("message", "msg", "reason", "strerror", "filename", "filename2", "url",
                    "endpoint_url")


def _scrub_value(value: Any, pending: list[BaseException]) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, BaseException):
        pending.append(value)
    elif isinstance(value, tuple):
        return tuple(_scrub_value(v, pending) for v in value)
    return value


def scrub_exception(error: BaseException) -> bool:
    """Mask credentials in ``error``'s message and in every exception of its chain (causes,
    contexts and exceptions held in ``args``), in place. True when every exception's ``str``
    is then free of credentials; False when one builds its text in a way this cannot reach
    (the caller should then not chain it)."""
    pending: list[BaseException] = [error]
    seen: set[int] = set()
    done: list[BaseException] = []
    clean = True
    while pending:
        e = pending.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        args = e.args
        new_args = tuple(_scrub_value(a, pending) for a in args)
        if new_args != args:
            try:
                e.args = new_args
            except (AttributeError, TypeError):
                clean = False
        for attr in _TEXT_ATTRIBUTES:
            value = getattr(e, attr, None)
            if isinstance(value, str) and redact(value) != value:
                try:
                    setattr(e, attr, redact(value))
                except (AttributeError, TypeError):
                    clean = False
        for nested in (e.__cause__, e.__context__):
            if nested is not None:
                pending.append(nested)
        done.append(e)
    for e in done:  # once all are scrubbed: a message may quote another exception of the chain
        try:
            text = str(e)
        except Exception:
            text = ""
        if redact(text) != text:
            clean = False
    return clean


# ---- logging ---------------------------------------------------------------------------------

if TYPE_CHECKING:
    import logging

#: Top-level loggers of the libraries pxlite drives; their records pass the filter.
SDK_LOGGERS = ("urllib3", "botocore", "boto3", "s3transfer", "azure", "google", "requests")


class RedactingFilter:
    """Masks credentials in a log record's message (and its exception text); never drops one.

    A logger's filters see only the records logged on that logger (not its children's), so
    :func:`install_log_filter` puts one instance on every logger under :data:`SDK_LOGGERS`.
    (A plain object with ``filter(record)``, which logging accepts: importing the logging
    package costs milliseconds that ``import pxlite`` need not pay before any SDK logs.)
    """

    def filter(self, record: logging.LogRecord) -> bool:
        import logging

        install_log_filter()  # loggers an SDK created since (cheap when there are none)
        try:
            message = record.getMessage()
        except Exception:
            return True  # a broken record: logging reports it as it would have
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and record.exc_info[1] is not None:
            scrub_exception(record.exc_info[1])
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FILTER = RedactingFilter()
_seen_loggers = -1  # size of the logger registry when the filter was last installed


def install_log_filter() -> None:
    """Put the redacting filter on every logger of :data:`SDK_LOGGERS` (and their children).

    Idempotent and cheap: it only walks the logger registry when loggers were added since the
    last call. Imports no SDK (creating a logger for a library that is not installed is
    harmless).
    """
    import logging

    global _seen_loggers
    manager = logging.Logger.manager
    if len(manager.loggerDict) == _seen_loggers:
        return
    with _install_lock:
        for name in SDK_LOGGERS:
            logging.getLogger(name)
        for name, logger in list(manager.loggerDict.items()):
            if (isinstance(logger, logging.Logger) and name.split(".", 1)[0] in SDK_LOGGERS
                    and _FILTER not in logger.filters):
                logger.addFilter(_FILTER)
        _seen_loggers = len(manager.loggerDict)
