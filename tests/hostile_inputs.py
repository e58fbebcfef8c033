"""Hostile inputs shared by the test files that check how pxlite refuses them.

``INJECTIONS`` (SQL-shaped strings and pxlite's own SQL names), the oracle for a valid name,
hypothesis settings sized so the property tests stay fast, a closed loopback port, and PNG
decompression bombs. Tests import it by name (tests/ is on ``sys.path``), and so does the bomb
subprocess in test_media_files.py.
"""

from __future__ import annotations

import re
import socket
import struct
import zlib

from hypothesis import HealthCheck, settings

#: Modest example counts: the hostile-input properties together stay well under a minute on 2
#: cores.
HYP = settings(max_examples=60, deadline=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture,
                                      HealthCheck.too_slow])

INJECTIONS = [
    "x'); DROP TABLE px_tables;--",
    '"; DROP TABLE px_columns; --',
    "t_1; DELETE FROM px_tables",
    "c1 = c1 OR 1=1 --",
    "' OR '1'='1",
    "a`b",
    "a]b[",
    "1; ATTACH DATABASE '/tmp/pwn.db' AS pwn; --",
    "px_tables",
    "sqlite_master",
    "t_1",
    "c1_et",
    "_rowid",
    "ROWID",
    "oid",
    "select",
    "__class__",
    "a" * 1000,
]


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released): connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def valid_part(s: object) -> bool:
    """The oracle for an identifier (SPEC: ``[A-Za-z_][A-Za-z0-9_]*``, at most 63 characters,
    rowid aliases reserved)."""
    return (isinstance(s, str) and len(s) <= 63
            and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", s, re.ASCII) is not None
            and s.lower() not in {"_rowid", "rowid", "oid", "_rowid_"})


def valid_column(s: object) -> bool:
    """A column name: an identifier that is not a Table attribute (t.<name> reaches it)."""
    from pxlite.table import TABLE_ATTRIBUTES

    return valid_part(s) and s not in TABLE_ATTRIBUTES


def valid_path(s: object) -> bool:
    return isinstance(s, str) and bool(s) and all(valid_part(p) for p in s.split("."))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def png_header_bomb(w: int, h: int) -> bytes:
    """A tiny PNG whose header declares ``w`` x ``h`` 8-bit grey pixels (payload: a few rows)."""
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + _chunk(b"IEND", b""))


def png_real_bomb(w: int, h: int) -> bytes:
    """A valid RGB PNG of zeros: a few hundred KB that decode to ``w*h*3`` bytes."""
    z = zlib.compressobj(9)
    row = b"\x00" * (1 + 3 * w)
    body = b"".join(z.compress(row) for _ in range(h)) + z.flush()
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + _chunk(b"IDAT", body) + _chunk(b"IEND", b""))
