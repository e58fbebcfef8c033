"""Destinations: where media may be written, and the spellings that are refused.

Arbitrary strings to ``storage.canonical_prefix`` and ``pxl.configure(output_media_dest=)``: a
ConfigError, or a canonical prefix that is a fixed point, has no ``.``/``..`` segments and, for
a relative local path, never leaves its base folder (not through ``..``, nor a symlink, nor a
symlink loop, nor a NUL). The URI grammar of each backend is in test_storage_uris.py.
"""

from __future__ import annotations

import os
import re

import pytest
from hostile_inputs import HYP, closed_port
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

import pxlite as pxl
from pxlite import config, storage
from pxlite.errors import ConfigError, PxliteError


def test_any_destination_is_canonical_or_refused(tmp_path):
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
        # pinned by test_symlink_loop_and_nul_destinations_are_refused
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
            path = storage.file_path(p)
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


def test_configure_keeps_only_valid_destinations(tmp_path, monkeypatch):
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
        assert storage.file_path(prefix).resolve().is_relative_to(tmp_path.resolve())
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


@pytest.mark.parametrize("dest", ["loop/x", "a\x00b"])
def test_symlink_loop_and_nul_destinations_are_refused(tmp_path, dest):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(ConfigError):
        storage.canonical_prefix(dest, config.resolve(), base=tmp_path)
