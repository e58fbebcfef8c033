"""Hostile input: arbitrary names, values, destinations and files.

The promise under test: whatever a caller passes, pxlite either does the documented thing or
raises a :class:`PxliteError` subclass naming the problem, and a refused call changes nothing
(no catalog row, no data row, no file). Never a bare Python exception, never a partial write.

* names: arbitrary text (and non-text) as table, directory and column names;
* values: arbitrary Python values into every column type, checked against an oracle of what
  each type accepts and what it must read back as;
* destinations: arbitrary strings to ``canonical_prefix`` / ``pxl.configure``, ``..`` and
  symlinks that would leave a base folder;
* files: truncated, corrupt, empty, mislabelled, and decompression bombs (refused from the
  header: peak RSS is measured in a subprocess);
* SQL-injection-shaped names and values, which must be data;
* a malformed config.toml, through the CLI.

Defects found are pinned by ``xfail(strict=True)`` tests at the end (see SECURITY.md).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import numbers
import os
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from PIL import Image

import pxlite as pxl
from pxlite import config, storage
from pxlite.errors import (
    ComputeError,
    ConfigError,
    NotFoundError,
    PxliteError,
    SchemaError,
)

ROOT = Path(__file__).parents[1]

#: Modest example counts: both security files together stay well under a minute on 2 cores.
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
    """A loopback port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _valid_part(s: object) -> bool:
    """The oracle for an identifier (SPEC: ``[A-Za-z_][A-Za-z0-9_]*``, rowid aliases reserved)."""
    return (isinstance(s, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", s, re.ASCII) is not None
            and s.lower() not in {"_rowid", "rowid", "oid", "_rowid_"})


def _valid_column(s: object) -> bool:
    """A column name: an identifier that is not a Table attribute (t.<name> reaches it)."""
    from pxlite.table import TABLE_ATTRIBUTES

    return _valid_part(s) and s not in TABLE_ATTRIBUTES


def _valid_path(s: object) -> bool:
    return isinstance(s, str) and bool(s) and all(_valid_part(p) for p in s.split("."))


def _snapshot(db: pxl.Connection) -> tuple:
    """Everything the catalog holds, to compare before/after a refused call."""
    q = db.db.query
    return (q("SELECT * FROM px_dirs ORDER BY id"), q("SELECT * FROM px_tables ORDER BY id"),
            q("SELECT * FROM px_columns ORDER BY table_id, col_id"),
            q("SELECT * FROM px_media_locations ORDER BY 1, 2"),
            q("SELECT * FROM px_pending_deletes ORDER BY 1"),
            q("SELECT type, name, sql FROM sqlite_schema ORDER BY name"))


NAMES = st.one_of(
    st.text(max_size=24),
    st.text(alphabet=st.characters(codec="ascii"), max_size=12),
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}(\.[A-Za-z_][A-Za-z0-9_]{0,6})?", fullmatch=True),
    st.sampled_from(INJECTIONS + ["", " ", ".", "a.", ".a", "a..b", "é", "a\x00b", "a\n", "1a",
                                  "a-b", "a b", "ａ", "K", "ǅ", "ı", "name", "select", "path"]),
    st.integers(), st.none(), st.binary(max_size=6), st.floats(),
)


# ---------------------------------------------------------------------------------------------
# Names


def test_hostile_table_and_dir_names(db):
    db.create_dir("known")
    base = _snapshot(db)
    seen = {"accepted": 0, "refused": 0}

    @HYP
    @given(name=NAMES, as_dir=st.booleans())
    @example(name="known.x'); DROP TABLE px_tables;--", as_dir=False)
    @example(name="known.sub", as_dir=True)
    def check(name, as_dir):
        before = _snapshot(db)
        try:
            if as_dir:
                db.create_dir(name)
            else:
                t = db.create_table(name, {"x": pxl.Int})
        except SchemaError as e:
            assert not _valid_path(name), f"{name!r} is a valid path but was refused: {e}"
            assert _snapshot(db) == before
            seen["refused"] += 1
            return
        except NotFoundError:  # a valid dotted path whose parent directory does not exist
            assert _valid_path(name) and "." in name
            assert _snapshot(db) == before
            seen["refused"] += 1
            return
        assert _valid_path(name), f"{name!r} was accepted"
        seen["accepted"] += 1
        if as_dir:
            assert name in db.list_dirs()
            db.drop_dir(name)
        else:
            assert name in db.list_tables()
            again = db.get_table(name)
            assert again.path == name and f"Table '{name}'" in repr(again)
            t.insert(x=7)
            assert again.collect()["x"] == [7]
            db.drop_table(name)
        assert _snapshot(db) == before

    check()
    assert _snapshot(db) == base
    # get/drop of arbitrary names never fail with anything but SchemaError/NotFoundError
    for name in INJECTIONS + ["", "a..b", 5, None]:
        with pytest.raises((SchemaError, NotFoundError)):
            db.get_table(name)
        with pytest.raises((SchemaError, NotFoundError)):
            db.drop_table(name)
    print(f"table/dir names: {seen}")


def test_hostile_column_names(db):
    base = _snapshot(db)
    seen = {"accepted": 0, "refused": 0}

    @HYP
    @given(name=NAMES, other=NAMES)
    def check(name, other):
        assume(name != "k")  # {"k": ..., "k": ...} is one dict key
        before = _snapshot(db)
        try:
            t = db.create_table("t", {name: pxl.String, "k": pxl.Int})
        except SchemaError as e:
            assert not _valid_column(name) or name == "k", f"{name!r} refused: {e}"
            assert _snapshot(db) == before
            seen["refused"] += 1
            return
        except pxl.AlreadyExistsError:
            pytest.fail("leftover table")
        assert _valid_column(name)
        seen["accepted"] += 1
        try:
            t.insert([{name: name, "k": 1}])
            assert t.collect().to_dicts() == [{name: name, "k": 1}]
            assert t[name].col.name == name and name in repr(t)
            assert t.select(**{"o" + name: t[name]}).collect()["o" + name] == [name]
            mid = _snapshot(db)
            try:
                t.add_column(**{other: pxl.Int}) if isinstance(other, str) else \
                    t.rename_column(name, other)
            except (SchemaError, pxl.AlreadyExistsError):
                assert not _valid_column(other) or other in (name, "k")
                assert _snapshot(db) == mid
            else:
                assert _valid_column(other)
        finally:
            db.drop_table("t")
        assert _snapshot(db) == before

    check()
    assert _snapshot(db) == base
    print(f"column names: {seen}")


# ---------------------------------------------------------------------------------------------
# Values

REFUSE = object()
def _json_norm(v, seen=()):
    """What a Json cell must read back as, or REFUSE."""
    if isinstance(v, str):
        if any(0xD800 <= ord(c) <= 0xDFFF for c in v):
            return REFUSE  # a lone surrogate cannot be stored as UTF-8 text
        return v
    if v is None or isinstance(v, bool):
        return v
    if type(v) is int:
        return v if len(str(abs(v))) < 4300 else REFUSE
    if type(v) is float:
        return v if math.isfinite(v) else REFUSE
    if isinstance(v, (list, tuple)):
        out = [_json_norm(x) for x in v]
    elif isinstance(v, dict):
        if not all(isinstance(k, str) for k in v):
            return REFUSE  # JSON would turn them into strings: a different value
        keys = [_json_norm(k) for k in v]
        out = [_json_norm(x) for x in v.values()]
        out += keys
    else:
        return REFUSE
    if any(x is REFUSE for x in out):
        return REFUSE
    if isinstance(v, dict):
        return {k: _json_norm(x) for k, x in v.items()}
    return [_json_norm(x) for x in v]


def _oracle(tname: str, v):
    """What a column of type ``tname`` must do with ``v``: the value read back, or REFUSE."""
    if v is None:
        return None
    if tname == "Int":
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            return REFUSE
        return int(v) if -(2**63) <= v < 2**63 else REFUSE
    if tname == "Float":
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            return REFUSE
        try:
            f = float(v)
        except OverflowError:
            return REFUSE  # does not fit in 64 bits
        return REFUSE if math.isnan(f) else f
    if tname == "String":
        if not isinstance(v, str):
            return REFUSE
        return REFUSE if any(0xD800 <= ord(c) <= 0xDFFF for c in v) else v
    if tname == "Bool":
        return v if isinstance(v, bool) else REFUSE
    if tname == "Timestamp":
        if isinstance(v, str):
            try:
                v = dt.datetime.fromisoformat(v)
            except ValueError:
                return REFUSE
        if isinstance(v, dt.date) and not isinstance(v, dt.datetime):
            v = dt.datetime(v.year, v.month, v.day)
        if not isinstance(v, dt.datetime):
            return REFUSE
        if v.tzinfo is not None:
            try:
                v = v.astimezone(dt.timezone.utc)
            except OverflowError:
                return REFUSE  # outside years 1..9999 in UTC
        return v
    if tname == "Json":
        return _json_norm(v)
    raise AssertionError(tname)


offsets = st.builds(dt.timezone, st.timedeltas(min_value=-dt.timedelta(hours=23, minutes=59),
                                               max_value=dt.timedelta(hours=23, minutes=59)))
ANY_VALUE = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.integers(-(2**70), 2**70),
        st.floats(), st.text(max_size=12), st.binary(max_size=8),
        st.datetimes(timezones=st.none() | offsets), st.dates(),
        st.fractions(max_denominator=50), st.decimals(), st.complex_numbers(),
        st.sampled_from(INJECTIONS + ["2024-05-01T12:00:00+02:00", "2024-05-01", "nan", "1",
                                      "true", "\x00", "NULL", "s3://bucket/x.jpg"]),
        st.just(object()), st.just(Ellipsis), st.just(float("nan")), st.just(10**400),
    ),
    lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=4) | st.integers(0, 3), inner, max_size=3)
    | st.frozensets(st.integers(), max_size=2),
    max_leaves=6,
)


def _same(tname: str, got, want) -> bool:
    if tname == "Float":
        return got == want and isinstance(got, float)
    if tname == "Timestamp":
        return got == want and (got.tzinfo is None) == (want.tzinfo is None)
    if tname == "Bool":
        return got is want
    return got == want and type(got) is type(want)


#: Per type, values near its domain (edges, look-alikes) so each property sees many accepted ones.
NEAR = {
    "Int": st.integers(-(2**63), 2**63 - 1) | st.sampled_from([2**63, -(2**63) - 1, True, 1.0]),
    "Float": st.floats() | st.fractions() | st.integers(-(2**64), 2**64),
    "String": st.text(),
    "Bool": st.booleans() | st.sampled_from([0, 1, "True", None]),
    "Timestamp": st.datetimes(timezones=st.none() | offsets) | st.dates()
    | st.datetimes().map(dt.datetime.isoformat) | st.text(max_size=12),
    "Json": ANY_VALUE,
}


@pytest.mark.parametrize("tname", ["Int", "Float", "String", "Bool", "Timestamp", "Json"])
def test_hostile_values(db, tname):
    t = db.create_table("t", {"a": getattr(pxl, tname), "k": pxl.Int})
    good = {"Int": 1, "Float": 1.5, "String": "s", "Bool": True,
            "Timestamp": dt.datetime(2020, 1, 1), "Json": {"g": 1}}[tname]
    counter = iter(range(1, 10**9))
    seen = {"stored": 0, "refused": 0}

    @settings(HYP, max_examples=80)
    @given(v=ANY_VALUE | NEAR[tname])
    def check(v):
        want = _oracle(tname, v)
        k = next(counter)
        n = t.count()
        try:
            t.insert([{"a": good, "k": k}, {"a": v, "k": k}])  # abort: all or nothing
        except ComputeError as e:
            assert want is REFUSE, f"{v!r} refused: {e}"
            assert e.column == "a" and e.row == 1 and "column 'a'" in str(e)
            assert isinstance(e.__cause__, PxliteError)
            assert t.count() == n, "partial write"
            # on_error='ignore': the cell is NULL and keeps its error
            st_ = t.insert([{"a": v, "k": k}], on_error="ignore")
            assert st_.num_errors == 1
            row = t.where(t.k == k).select(t.a, t.a.errortype, t.a.errormsg).collect()[0]
            assert row["a"] is None and row["a_errortype"] and row["a_errormsg"]
            seen["refused"] += 1
            return
        assert want is not REFUSE, f"{v!r} was stored as {t.where(t.k == k).collect()['a']!r}"
        got = t.where(t.k == k).collect()["a"]
        assert _same(tname, got[0], _oracle(tname, good))
        assert _same(tname, got[1], want) if want is not None else got[1] is None, (v, got[1])
        seen["stored"] += 1

    check()
    print(f"{tname} values: {seen}")


def test_hostile_media_values(db, tmp_path, monkeypatch):
    """Arbitrary values into an Image column: a reference stored as given, a file written, or a
    PxliteError; a refused call leaves no row and no file."""
    monkeypatch.chdir(tmp_path)
    t = db.create_table("t", {"image": pxl.Image, "k": pxl.Int})
    media = Path(str(db.path) + ".media")
    counter = iter(range(1, 10**9))

    def files() -> set:
        return {p for p in media.rglob("*") if p.is_file()} if media.exists() else set()

    @HYP
    @given(v=ANY_VALUE | st.binary(max_size=40).map(lambda b: b"\x89PNG\r\n\x1a\n" + b)
           | st.text(max_size=20).map(lambda s: "https://example.com/" + s))
    def check(v):
        k = next(counter)
        n, before = t.count(), files()
        try:
            t.insert([{"image": v, "k": k}])
        except ComputeError as e:
            assert isinstance(e.__cause__, PxliteError) and e.column == "image"
            assert t.count() == n and files() == before
            return
        got = t.where(t.k == k).select(t.image.fileurl).collect()[0]["image_fileurl"]
        if v is None:
            assert got is None
        elif isinstance(v, str):
            assert got == v  # a URL is stored exactly as given, never fetched now
        else:
            assert isinstance(v, (bytes, bytearray)) and got.startswith(media.as_uri())

    check()


# ---------------------------------------------------------------------------------------------
# Destinations


def test_hostile_destinations_canonical_prefix(tmp_path):
    base = tmp_path / "base"
    (base / "inner").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (base / "escape").symlink_to(outside, target_is_directory=True)
    (base / "loop").symlink_to(base / "loop")
    s = config.resolve({"azure": {"account_name": "acct"}, "r2": {"account_id": "abc"},
                        "b2": {"region": "us-west-004"}})
    counts = {"ok": 0, "refused": 0}

    SCHEMES = st.sampled_from(["", "file://", "file:///", "s3://", "gs://", "az://", "r2://",
                               "b2://", "tigris://", "https://", "http://", "ftp://", "wasbs://",
                               "../", "./", "~/", "/", "escape/", "inner/../../"])

    @HYP
    @given(head=SCHEMES, body=st.text(max_size=30)
           | st.lists(st.sampled_from(["a", "..", ".", "", "b-c", "x.y", "escape", "loop",
                                       "%2e%2e", "?", "#", "\\", "\x00", "ü"]), max_size=5)
           .map("/".join))
    @example(head="", body="escape/sub")
    @example(head="", body="inner/../../outside")
    @example(head="s3://", body="bucket/../../x/")
    def check(head, body):
        text = head + body
        # pinned by test_defect_canonical_prefix_loop_and_nul
        assume("\x00" not in text and "loop" not in text)
        try:
            p = storage.canonical_prefix(text, s, base=base)
        except ConfigError:
            counts["refused"] += 1
            return
        counts["ok"] += 1
        assert p.endswith("/"), p
        scheme = storage.scheme_of(p)
        assert scheme in ("file", "s3", "gs", "azure", "r2", "b2", "tigris"), p
        assert storage.canonical_prefix(p, s) == p, "canonical form is a fixed point"
        rest = p.split("://", 1)[1]
        segs = rest.rstrip("/").split("/")[1:]
        assert ".." not in segs and "." not in segs, p
        # (a POSIX '//a' stays 'file:////a/': same folder, second spelling; see SECURITY.md)
        assert scheme == "file" or "" not in segs[:-1], p
        if scheme == "file":
            path = storage.local_path(p)
            assert path.is_absolute()
            raw = os.path.expanduser(text.strip()) if not text.lower().startswith("file:") else ""
            if raw and not os.path.isabs(raw) and "\x00" not in raw:
                # a relative destination never leaves its base, even through a symlink
                assert path.resolve().is_relative_to(base.resolve()), (text, p)

    check()
    print(f"canonical_prefix: {counts}")


def test_dotdot_and_symlink_escapes_refused(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    (tmp_path / "outside").mkdir()
    (base / "link").symlink_to(tmp_path / "outside", target_is_directory=True)
    s = config.resolve()
    for bad in ["../outside", "a/../../outside", "link", "link/sub", "./link/../link/x"]:
        with pytest.raises(ConfigError, match="outside"):
            storage.canonical_prefix(bad, s, base=base)
    assert storage.canonical_prefix("a/b/../c", s, base=base) == (base / "a" / "c").as_uri() + "/"
    for bad in ["s3://bkt/a/../b/", "gs://bkt/./x/", "az://cont/x/../../", "s3://bkt//x/",
                "s3://bkt/x\\..\\y/", "file://otherhost/x/", "s3://../x/", "gs://bkt/x?y=1/"]:
        s2 = config.resolve({"azure": {"account_name": "acct"}})
        with pytest.raises(ConfigError):
            storage.canonical_prefix(bad, s2)
    # object keys (content-addressed) are checked when joined: no '..' can be smuggled in
    with pytest.raises(ConfigError):
        storage.join("file:///tmp/base/", "../etc/passwd")
    with pytest.raises(ConfigError):
        storage.join("s3://bkt/p/", "a/../../x")


def test_hostile_configure_destinations(tmp_path, monkeypatch):
    """``pxl.configure(output_media_dest=...)``: a ConfigError, or a destination that is kept and
    resolves to a canonical prefix; a refused one is never kept."""
    monkeypatch.chdir(tmp_path)
    counts = {"ok": 0, "refused": 0}
    closed = f"http://127.0.0.1:{closed_port()}"
    # No destination may reach the internet: every provider points at a closed local port.
    pxl.configure(storage_retries=0, storage_timeout_s=2,
                  **{p: {"endpoint_url": closed} for p in ("s3", "r2", "b2", "tigris")},
                  gcs={"endpoint": closed})

    @settings(HYP, max_examples=40)
    @given(st.text(max_size=20) | st.sampled_from(["s3://", "ftp://h/x", "gs://Bad/x", "az://c/x",
                                                   "https://example.com/x/", "s3://b/../x/"]))
    def check(dest):
        # Absolute and home paths would create folders outside the test's folder: the form of
        # those is covered by the canonical_prefix property above.
        assume(not dest.strip().startswith(("/", "~", "file:", "\\")))
        assume("\x00" not in dest)
        try:
            pxl.configure(output_media_dest=dest)
        except ConfigError:
            assert config.resolve()["output_media_dest"] is None
            counts["refused"] += 1
            return
        except PxliteError as e:  # StorageError: the bucket's service could not be reached
            assert config.resolve()["output_media_dest"] is None, e
            counts["refused"] += 1
            return
        counts["ok"] += 1
        kept = config.resolve()["output_media_dest"]
        if dest == "":
            assert kept is None  # an empty destination means "unset"
            return
        assert kept == dest
        prefix = storage.canonical_prefix(kept, config.resolve())
        assert storage.local_path(prefix).resolve().is_relative_to(tmp_path.resolve())
        pxl.configure(output_media_dest=None)

    check()
    print(f"configure(output_media_dest=): {counts}")


def test_symlinked_destination_writes_where_it_points(db, tmp_path, jpegs):
    """An absolute destination through a symlink is the user's explicit choice: files land in the
    link's target, with pxlite's own content-addressed names only (no path from the data)."""
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "via").symlink_to(real, target_is_directory=True)
    t = db.create_table("t", {"image": pxl.Image})
    t.insert(image=jpegs[0])
    t.add_computed_column(r=t.image.rotate(90), destination=str(tmp_path / "via" / "out"))
    written = [p for p in real.rglob("*") if p.is_file()]
    assert len(written) == 1
    assert re.fullmatch(r"[0-9a-f]{2}/[0-9a-f]{64}\.jpg",
                        "/".join(written[0].relative_to(real / "out").parts[2:]))


# ---------------------------------------------------------------------------------------------
# Files


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


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), "red").save(buf, "PNG")
    png = buf.getvalue()
    buf = io.BytesIO()
    Image.effect_noise((64, 48), 40).convert("RGB").save(buf, "JPEG")
    jpg = buf.getvalue()
    rnd = bytes((i * 7919 + 13) % 251 for i in range(4000))
    files = {
        "trunc.png": png[: len(png) // 2],
        "trunc.jpg": jpg[: len(jpg) // 3],
        "corrupt.png": png[:33] + rnd,        # valid signature + IHDR, then garbage
        "corrupt.jpg": jpg[:20] + rnd,
        "zero.png": b"",
        "text.jpg": b"just some text, not a picture\n",
        "html.png": b"<!doctype html><html>404</html>",
        "pdf.jpg": b"%PDF-1.4\n%...",
        "bomb.png": png_header_bomb(100_000, 100_000),
    }
    out = {}
    for name, data in files.items():
        (d / name).write_bytes(data)
        out[name] = d / name
    return out


# Files whose header is not an image are refused at insert (header check, no decode); files
# with an image header but bad contents are accepted as references and fail when computed.
REFUSED_AT_INSERT = {"zero.png": "empty", "text.jpg": "not a valid image",
                     "html.png": "HTML", "pdf.jpg": "looks like document"}
FAIL_AT_COMPUTE = ["trunc.png", "trunc.jpg", "corrupt.png", "corrupt.jpg", "bomb.png"]


@pytest.mark.parametrize("name", sorted(REFUSED_AT_INSERT))
def test_bad_files_refused_at_insert(db, bad_files, name):
    t = db.create_table("t", {"image": pxl.Image})
    with pytest.raises(ComputeError, match=REFUSED_AT_INSERT[name]):
        t.insert(image=bad_files[name])
    assert t.count() == 0
    # as bytes too (written to the media folder only if they look like an image)
    with pytest.raises(ComputeError):
        t.insert(image=bad_files[name].read_bytes())
    assert not Path(str(db.path) + ".media").exists() or not any(
        p.is_file() for p in Path(str(db.path) + ".media").rglob("*"))


def test_bad_files_fail_per_cell_when_computed(db, bad_files, jpegs):
    t = db.create_table("t", {"image": pxl.Image, "label": pxl.String})
    t.insert([{"image": jpegs[0], "label": "good"}]
             + [{"image": bad_files[n], "label": n} for n in FAIL_AT_COMPUTE])
    st_ = t.add_computed_column(r=t.image.rotate(90), on_error="ignore")
    assert st_.num_errors == len(FAIL_AT_COMPUTE)
    t.add_computed_column(w=t.image.width, on_error="ignore")
    rows = {r["label"]: r for r in t.select(t.label, t.r, t.r.errortype, t.r.errormsg, t.w,
                                           t.w.errortype).collect()}
    assert rows["good"]["r"].size == (64, 48) and rows["good"]["r_errortype"] is None
    assert rows["good"]["w"] == 64
    for n in FAIL_AT_COMPUTE:
        assert rows[n]["r"] is None and rows[n]["r_errortype"], n
        assert rows[n]["r_errormsg"], n
    assert "too large" in rows["bomb.png"]["r_errormsg"]
    # the bomb's *declared* width is harmless header data: only decoding is refused
    assert rows["bomb.png"]["w"] is None or rows["bomb.png"]["w"] == 100_000
    # abort: a ComputeError naming the row and column, and no column is left behind
    for n in FAIL_AT_COMPUTE:
        t2 = db.create_table("t2", {"image": pxl.Image}, if_exists="replace")
        t2.insert(image=bad_files[n])
        with pytest.raises(ComputeError) as ei:
            t2.add_computed_column(r=t2.image.rotate(90))
        assert ei.value.column == "r" and ei.value.row == 1 and n in str(ei.value)
        assert t2.columns() == ["image"]
    # recompute keeps the errors per cell; nothing crashes on read
    assert t.recompute_columns("r", errors_only=True).num_errors == len(FAIL_AT_COMPUTE)
    imgs = t.select(t.image).collect()
    for i in range(len(imgs)):
        try:
            imgs[i]["image"].load()
        except PxliteError:
            pass
        except OSError:  # a truncated file: Pillow's own error when the user loads it
            pass


BOMB_SCRIPT = r"""
import json, os, resource, sys, gc
sys.path[:0] = [{root!r}, {tests!r}]
import pxlite as pxl
from PIL import Image
from test_hostile import png_header_bomb, png_real_bomb

d = sys.argv[1]
def peak():
    # VmHWM is this process's own high-water mark. ru_maxrss (getrusage) is reported too, but
    # on Linux it keeps the *parent's* peak across fork/exec (a pytest worker with every cloud
    # SDK loaded is ~170 MB), which would hide a smaller allocation here.
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return rusage()
def rusage():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
open(f"{{d}}/header.png", "wb").write(png_header_bomb(100_000, 100_000))
open(f"{{d}}/real.png", "wb").write(png_real_bomb(10_000, 10_000))   # 300 MB decoded
open(f"{{d}}/control.png", "wb").write(png_real_bomb(4_000, 4_000))  # 48 MB decoded
db = pxl.connect(f"{{d}}/b.pxl", config={{"max_image_pixels": 1_000_000}})
t = db.create_table("t", {{"image": pxl.Image}})
t.insert([{{"image": f"{{d}}/header.png"}}, {{"image": f"{{d}}/real.png"}}])
# warm up the compute path on a harmless image so imports are in the baseline
w = db.create_table("w", {{"image": pxl.Image}})
w.insert(image=Image.new("RGB", (16, 16)))
w.add_computed_column(r=w.image.rotate(90))
gc.collect()
base, base_ru = peak(), rusage()
s = t.add_computed_column(r=t.image.rotate(90), on_error="ignore")
errs = t.select(t.r.errormsg).collect()["r_errormsg"]
refused = peak()
try:
    t.add_computed_column(r2=t.image.rotate(90))
    aborted = None
except pxl.ComputeError as e:
    aborted = str(e)
refused2, refused2_ru = peak(), rusage()
c = pxl.connect(f"{{d}}/c.pxl", config={{"max_image_pixels": 10**9}})
ct = c.create_table("t", {{"image": pxl.Image}})
ct.insert(image=f"{{d}}/control.png")
ct.add_computed_column(r=ct.image.rotate(90))
control = peak()
print(json.dumps({{"base": base, "refused": refused, "refused_abort": refused2,
                   "ru_base": base_ru, "ru_refused": refused2_ru,
                   "control": control, "errors": s.num_errors, "msgs": errs,
                   "abort": aborted, "sizes": [os.path.getsize(f"{{d}}/{{n}}.png")
                                              for n in ("header", "real", "control")]}}))
"""


def test_bomb_refused_without_allocating(tmp_path):
    """A decompression bomb is refused from its header: peak RSS stays near the baseline, while
    a (much smaller) image that is actually decoded moves it: the measurement is sensitive."""
    script = BOMB_SCRIPT.format(root=str(ROOT), tests=str(ROOT / "tests"))
    env = {**os.environ, "PXLITE_HOME": str(tmp_path / "home")}
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True,
                         text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout.strip().splitlines()[-1])
    mb = 1024 * 1024
    grew = (r["refused_abort"] - r["base"]) / mb
    control = (r["control"] - r["refused_abort"]) / mb
    grew_ru = (r["ru_refused"] - r["ru_base"]) / mb
    assert grew_ru < 200, f"getrusage peak grew by {grew_ru:.1f} MiB"
    print(f"bomb peak RSS (VmHWM): baseline {r['base'] / mb:.1f} MiB, +{grew:.1f} MiB "
          f"(getrusage ru_maxrss: +{grew_ru:.1f} MiB) while refusing a "
          f"100000x100000 header bomb and a 10000x10000 RGB bomb ({r['sizes'][1] / 1024:.0f} KiB "
          f"file, 300 MB decoded); control 4000x4000 decode+rotate: +{control:.1f} MiB")
    assert r["errors"] == 2
    assert all("too large" in m or "over the limit" in m for m in r["msgs"]), r["msgs"]
    assert any("over the limit of 1,000,000 (max_image_pixels)" in m for m in r["msgs"])
    assert r["abort"] and "max_image_pixels" in r["abort"] or "too large" in r["abort"]
    assert grew < 200, f"refusing the bombs grew peak RSS by {grew:.1f} MiB"
    assert grew < 30, f"refusing the bombs grew peak RSS by {grew:.1f} MiB (expected ~0)"
    assert control > 40, f"the control decode moved peak RSS by only {control:.1f} MiB: {r}"
    assert r["sizes"][1] < 1_000_000  # the real bomb is small on disk


def test_bomb_in_bytes_and_pil_inputs(db):
    """Bytes with a bomb header are stored (header check only) and refused when decoded."""
    c = pxl.connect(Path(str(db.path) + "2"), config={"max_image_pixels": 1_000_000})
    t = c.create_table("t", {"image": pxl.Image})
    t.insert(image=png_header_bomb(5_000, 5_000))
    with pytest.raises(ComputeError, match="max_image_pixels"):
        t.add_computed_column(g=t.image.convert("L"))
    with pytest.raises(SchemaError, match="max_image_pixels"):
        t.collect()[0]["image"]  # reading the result refuses it the same way


# ---------------------------------------------------------------------------------------------
# SQL-injection-shaped names and values are data


def test_injection_shaped_names_and_values_round_trip(db, jpegs, tmp_path):
    """Names are refused unless they are identifiers (so none of these get in); values, paths,
    URLs, JSON and literals in expressions are bound as data and come back byte for byte."""
    for bad in INJECTIONS:
        if _valid_path(bad):
            continue
        with pytest.raises(SchemaError):
            db.create_table(bad, {"a": pxl.Int})
        with pytest.raises(SchemaError):
            db.create_table("ok", {bad: pxl.Int})
        with pytest.raises(SchemaError):
            db.create_dir(bad)
    assert db.list_tables() == [] and db.list_dirs() == []
    # identifiers that look like pxlite's own SQL names are just names
    t = db.create_table("px_tables", {"t_1": pxl.String, "c1": pxl.Json, "sqlite_master": pxl.Int,
                                      "image": pxl.Image})
    weird = tmp_path / "x'); DROP TABLE px_tables;--"
    weird.mkdir()
    img = weird / "a\"b'c;--.jpg"
    img.write_bytes(jpegs[0].read_bytes())
    rows = [{"t_1": s, "c1": {s: [s]}, "sqlite_master": i, "image": str(img)}
            for i, s in enumerate(INJECTIONS)]
    t.insert(rows)
    got = t.order_by(t.sqlite_master).collect()
    assert got["t_1"] == INJECTIONS
    assert got["c1"] == [{s: [s]} for s in INJECTIONS]
    assert t.select(t.image.localpath).collect()["image_localpath"] == [str(img)] * len(INJECTIONS)
    for s in INJECTIONS:
        assert t.where(t.t_1 == s).count() == 1
        assert t.where(t.t_1.isin([s, "' OR 1=1 --"])).count() == 1
    t.update({"t_1": "'); DELETE FROM px_columns; --"}, where=t.t_1 == INJECTIONS[0])
    t.delete(where=t.t_1 == INJECTIONS[1])
    assert t.count() == len(INJECTIONS) - 1
    assert db.get_table("px_tables").columns()[:4] == ["t_1", "c1", "sqlite_master", "image"]
    assert db.db.integrity_check() == []
    assert {r[0] for r in db.db.query("SELECT name FROM sqlite_schema WHERE type='table'")} >= {
        "px_tables", "px_columns", "px_dirs"}


# ---------------------------------------------------------------------------------------------
# A malformed config.toml through the CLI


@pytest.mark.parametrize("text,line", [
    ("[pxlite]\nfile_cache_size_g = 3\ninput_media_dest = \n", 3),
    ("[s3]\naws_secret_access_key = \"PXSECRET-toml-0001\"\nthis is not toml\n", 3),
    ("[pxlite]\n[pxlite]\n", 2),
    ("x = \"unterminated\n", 1),
])
def test_cli_config_malformed_toml(pxlite_home, text, line):
    pxlite_home.mkdir(parents=True, exist_ok=True)
    (pxlite_home / "config.toml").write_text(text)
    env = {**os.environ, "PXLITE_HOME": str(pxlite_home),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("PXLITE_DEBUG", None)
    out = subprocess.run([sys.executable, "-m", "pxlite.cli", "config"], capture_output=True,
                         text=True, env=env, timeout=60)
    assert out.returncode == 1
    assert out.stdout == ""
    err = out.stderr
    assert err.count("\n") == 1 and err.startswith("pxlite: error: "), err
    assert str(pxlite_home / "config.toml") in err and f"line {line}" in err, err
    assert "Traceback" not in err and "PXSECRET" not in err


# ---------------------------------------------------------------------------------------------
# Defects found (xfail until fixed; the proposed diffs are in SECURITY.md)


def test_defect_float_overflow_is_schema_error(db):
    t = db.create_table("t", {"a": pxl.Float})
    with pytest.raises(ComputeError):
        t.insert(a=10**400)


@pytest.mark.parametrize("v", [dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=5))),
                               "0001-01-01T00:00:00+05:00",
                               dt.datetime.max.replace(tzinfo=dt.timezone(-dt.timedelta(hours=5)))])
def test_defect_timestamp_overflow_is_schema_error(db, v):
    t = db.create_table("t", {"a": pxl.Timestamp})
    with pytest.raises(ComputeError):
        t.insert(a=v)


def test_defect_json_non_string_keys(db):
    t = db.create_table("t", {"a": pxl.Json})
    try:
        t.insert(a={1: "int key", "1": "str key"})
    except ComputeError:
        return  # refused: fine
    assert t.collect()["a"] == [{1: "int key", "1": "str key"}]


@pytest.mark.parametrize("kind", ["surrogate", "key-surrogate", "deep"])
def test_defect_json_unencodable_or_deep(db, kind):
    deep: list = []
    cur = deep
    for _ in range(50_000):
        cur.append([])
        cur = cur[0]
    v = {"surrogate": "a\ud800", "key-surrogate": {"\udfff": 1}, "deep": deep}[kind]
    t = db.create_table("t", {"a": pxl.Json})
    with pytest.raises(ComputeError):
        t.insert(a=v)
    assert t.count() == 0


@pytest.mark.parametrize("dest", ["loop/x", "a\x00b"])
def test_defect_canonical_prefix_loop_and_nul(tmp_path, dest):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(ConfigError):
        storage.canonical_prefix(dest, config.resolve(), base=tmp_path)


@pytest.mark.parametrize("v", ["a\x00b.jpg", "file:///tmp/a%00b.jpg"])
def test_defect_nul_in_path_is_schema_error(db, v):
    t = db.create_table("t", {"image": pxl.Image})
    with pytest.raises(ComputeError, match="NUL|null"):
        t.insert(image=v)
    s = t.insert([{"image": v}], on_error="ignore")
    assert s.num_errors == 1
