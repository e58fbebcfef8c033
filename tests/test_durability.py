"""Durable before referenced: every local media file is synced before the commit that names it.

* :func:`test_syscall_order`: a child process inserts images and adds a computed column under
  ``strace``; the log proves, for every file a committed row names, that its bytes were synced
  (``fdatasync``/``fsync`` of the file, or of the temp file later linked/renamed to its name) and
  that its folder and every folder up to its destination root (and the root's parent) were
  fsynced after the file got its name and before the WAL fsync that committed the row.
* :func:`test_destination_removed_mid_run`: another program ``rm -rf``'s the destination while
  the operation runs; the operation fails naming a missing file and commits nothing.
* ``test_make_durable_*``: the durability pass itself (one fsync per folder however many files
  share it, missing files named, non-local URIs ignored, unsynced files synced).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from PIL import Image

import pxlite as pxl
from pxlite import catalog, config, faults, storage
from pxlite.errors import PxliteError, StorageError
from pxlite.maintenance import check
from pxlite.storage import base, local

ROOT = Path(__file__).resolve().parent.parent
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
DIGEST = re.compile(r"[0-9a-f]{64}")


# ---- strace log parsing --------------------------------------------------------------------------
@dataclass
class Call:
    """One system call: name, raw argument text, result text, and the log line indexes where it
    started and where it returned (equal unless strace split it into unfinished/resumed)."""

    name: str
    args: str
    result: str
    start: int
    end: int
    paths: list[str] = field(default_factory=list)  # resolved path arguments (see parse_strace)


_LINE = re.compile(r"^(?:\[pid\s+)?(\d+)\]?\s+(.*)$")
_CALL = re.compile(r"^([a-z_0-9]+)\((.*)\)\s+=\s+(.*)$", re.DOTALL)
_UNFINISHED = re.compile(r"^([a-z_0-9]+)\((.*?)\s*<unfinished \.\.\.>$", re.DOTALL)
_RESUMED = re.compile(r"^<\.\.\. ([a-z_0-9]+) resumed>\s?(.*)$", re.DOTALL)
_FD = re.compile(r"^\s*(-?\d+|AT_FDCWD)(?:<((?:[^>\\]|\\.)*)>)?")
_STR = re.compile(r'"((?:[^"\\]|\\.)*)"')


def _unescape(s: str) -> str:
    return re.sub(r"\\(.)", r"\1", s)


def _split_args(args: str) -> list[str]:
    """Top-level comma-separated arguments (commas inside quotes or brackets do not split)."""
    out, depth, cur, quoted, esc = [], 0, [], False, False
    for ch in args:
        if quoted:
            cur.append(ch)
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                quoted = False
            continue
        if ch == '"':
            quoted = True
        elif ch in "[{<(":
            depth += 1
        elif ch in "]}>)":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    if cur:
        out.append("".join(cur).strip())
    return out


_PROC_FD = re.compile(r"/proc/(?:self|\d+)/fd/(\d+)")


def parse_strace(text: str) -> list[Call]:
    """Calls of an ``strace -f -y`` log in the order they returned, with paths resolved.

    Lines of ``-f`` carry the thread id first; a call another thread interrupts is logged as
    ``name(args <unfinished ...>`` and later ``<... name resumed>rest``. File descriptors are
    resolved from strace's ``-y`` annotation (``3</path>``), else from a table kept through
    ``openat``/``open`` results and ``close``. Relative path arguments are joined to their dirfd.
    """
    pending: dict[tuple[str, str], tuple[str, int]] = {}
    raw: list[tuple[str, str, str, int, int]] = []
    for i, line in enumerate(text.splitlines()):
        m = _LINE.match(line)
        if not m:
            continue
        pid, body = m.groups()
        if body.startswith(("+++", "---")):
            continue
        u = _UNFINISHED.match(body)
        if u:
            pending[(pid, u.group(1))] = (u.group(2), i)
            continue
        r = _RESUMED.match(body)
        if r:
            name, rest = r.groups()
            head, start = pending.pop((pid, name), ("", i))
            m2 = _CALL.match(f"{name}({head}{rest}")
            if m2:
                raw.append((name, m2.group(2), m2.group(3), start, i))
            continue
        c = _CALL.match(body)
        if c:
            raw.append((c.group(1), c.group(2), c.group(3), i, i))
    raw.sort(key=lambda r: r[4])
    fds: dict[str, str] = {}
    calls: list[Call] = []
    for name, args, result, start, end in raw:
        call = Call(name, args, result, start, end)
        parts = _split_args(args)
        ok = not result.startswith("-1")

        def fd_path(arg: str) -> str | None:
            m = _FD.match(arg)
            if not m:
                return None
            if m.group(2) is not None:
                return _unescape(m.group(2))
            return fds.get(m.group(1)) if m.group(1) != "AT_FDCWD" else None

        def path_arg(dirfd: str | None, arg: str) -> str:
            s = _STR.match(arg.strip())
            p = _unescape(s.group(1)) if s else arg
            if not p.startswith("/") and dirfd is not None:
                base_dir = fd_path(dirfd)
                if base_dir:
                    p = os.path.join(base_dir, p)
            return os.path.normpath(p)

        if name in ("openat", "open"):
            p = path_arg(parts[0], parts[1]) if name == "openat" else path_arg(None, parts[0])
            call.paths = [p]
            if ok:
                m = _FD.match(result)
                if m:
                    fds[m.group(1)] = _unescape(m.group(2)) if m.group(2) else p
        elif name == "close":
            call.paths = [fd_path(parts[0]) or ""]
            m = _FD.match(parts[0])
            if m:
                fds.pop(m.group(1), None)
        elif name in ("fsync", "fdatasync", "write", "pwrite64"):
            call.paths = [fd_path(parts[0]) or ""]
        elif name in ("link", "rename"):
            call.paths = [path_arg(None, parts[0]), path_arg(None, parts[1])]
        elif name in ("linkat", "renameat", "renameat2"):
            call.paths = [path_arg(parts[0], parts[1]), path_arg(parts[2], parts[3])]
            proc = _PROC_FD.fullmatch(call.paths[0])
            if proc and proc.group(1) in fds:  # an unnamed O_TMPFILE linked by its fd
                call.paths[0] = fds[proc.group(1)]
        elif name == "mkdir":
            call.paths = [path_arg(None, parts[0])]
        elif name == "mkdirat":
            call.paths = [path_arg(parts[0], parts[1])]
        if ok:
            calls.append(call)
    return calls


def _strace_or_skip() -> str:
    exe = shutil.which("strace")
    if exe is None:
        if CI:
            pytest.fail("strace is not installed: tools/test.sh installs it (apt-get install "
                        "strace); in CI the syscall-order test must run, never skip")
        pytest.skip("strace is not installed (tools/test.sh installs it)")
    probe = subprocess.run([exe, "-f", "-o", os.devnull, "true"], capture_output=True, text=True,
                           check=False)
    if probe.returncode != 0:
        msg = f"strace cannot trace here: {probe.stderr.strip()}"
        if CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return exe


CHILD = textwrap.dedent("""
    import sys
    from PIL import Image
    import pxlite as pxl

    db = pxl.connect(sys.argv[1])
    t = db.create_table("t", {"image": pxl.Image, "k": pxl.Int})
    colors = ["red", "blue", "green", "red", "yellow"]  # "red" twice: found present, not written
    t.insert([{"image": Image.new("RGB", (8, 8), c), "k": k} for k, c in enumerate(colors)])
    t.add_computed_column(rot=t.image.rotate(90), destination=sys.argv[2])
    t.insert([{"image": Image.new("RGB", (8, 8), "purple"), "k": 9}])
    db.close()
""")


def _named_files(db_path: Path) -> list[Path]:
    """Every media file a committed row of ``t`` names, as a local path."""
    media = Path(str(db_path) + ".media")
    db = pxl.connect(db_path)
    try:
        meta = catalog.load_table(db.db, "t")
        cols = [c for c in meta.columns if c.type.is_media]
        out = []
        for c in cols:
            for (v,) in db.db.query(f"SELECT {c.sql} FROM {meta.sql} WHERE {c.sql} IS NOT NULL"):
                if v.startswith("media:"):
                    out.append(media / v[len("media:"):])
                else:
                    out.append(storage.file_path(v))
        return out
    finally:
        db.close()


def test_syscall_order(tmp_path):
    """Bytes synced, then the name, then every folder entry up to the root, then the commit."""
    exe = _strace_or_skip()
    db_path, dest, log = tmp_path / "db.pxl", tmp_path / "rot", tmp_path / "strace.log"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    trace = ("openat,open,fsync,fdatasync,link,linkat,rename,renameat,renameat2,pwrite64,write,"
             "close,mkdir,mkdirat")
    proc = subprocess.run([exe, "-f", "-y", "-s", "8192", "-e", f"trace={trace}", "-o", str(log),
                           sys.executable, str(script), str(db_path), str(dest)],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    calls = parse_strace(log.read_text(errors="replace"))
    wal = str(db_path) + "-wal"
    roots = [Path(str(db_path) + ".media"), dest]

    files = _named_files(db_path)
    # 6 rows x 2 columns; "red" twice; rotate(90) of a one-colour square is the same image (same
    # name), but in the rot folder
    assert len(files) == 12 and len(set(files)) == 10, files
    problems: list[str] = []
    for f in sorted(set(files)):
        digest = DIGEST.search(f.name)
        assert digest, f
        root = next(r for r in roots if r in f.parents)
        # When the file got its final name: linked or renamed there (the last time, for safety).
        landed = [c for c in calls if c.name in ("link", "linkat", "rename", "renameat",
                                                 "renameat2") and c.paths[1] == str(f)]
        if not landed:
            problems.append(f"{f}: never linked/renamed into place")
            continue
        named_at = landed[0].end
        # The commit that names it: the first WAL fsync after a WAL frame holding its digest
        # (written after the file landed).
        frame = next((c for c in calls if c.name in ("pwrite64", "write") and c.paths[0] == wal
                      and c.start > named_at and digest.group(0) in c.args), None)
        if frame is None:
            problems.append(f"{f}: no WAL frame after it landed names it")
            continue
        commit = next((c for c in calls if c.name in ("fsync", "fdatasync")
                       and c.paths[0] == wal and c.start > frame.end), None)
        if commit is None:
            problems.append(f"{f}: no WAL fsync commits the row naming it (synchronous=FULL?)")
            continue
        # Its bytes: a sync of the file itself, or of a temp file before it was linked/renamed
        # to this name, returned before the commit started.
        sources = {str(f)} | {c.paths[0] for c in landed}
        synced = [c for c in calls if c.name in ("fsync", "fdatasync") and c.paths[0] in sources
                  and c.end < commit.start and (c.paths[0] == str(f) or any(
                      c.paths[0] == ln.paths[0] and c.end < ln.start for ln in landed))]
        if not synced:
            problems.append(f"{f}: bytes not synced before the commit (log line {commit.start})")
        # Its folder entries: every folder from its parent up to the root's parent holds an
        # entry on the path to the file (the file's own name in its parent, the next folder's
        # name in the others), made by a link or a mkdir; each folder must be fsynced after
        # that entry was made and before the commit. (An entry made before the traced run
        # needs no sync here; a background thread may sync a folder before the file's batch
        # commits, and later changes to the folder do not matter to this file.)
        below, folder = f, f.parent
        while True:
            made = [c.end for c in calls if c.end < commit.start and (
                (c.name in ("link", "linkat", "rename", "renameat", "renameat2")
                 and c.paths[1] == str(below))
                or (c.name in ("mkdir", "mkdirat") and c.paths[0] == str(below)))]
            if below == f:
                assert made, f"{f}: never named before the commit?"
            last = max(made, default=None)
            ok = last is None or any(c.name == "fsync" and c.paths[0] == str(folder)
                                     and last < c.start and c.end < commit.start
                                     for c in calls)
            if not ok:
                problems.append(f"{f}: folder {folder} not fsynced between the entry for "
                                f"{below.name} (log line {last}) and the commit (line "
                                f"{commit.start})")
            if folder == root.parent:
                break
            below, folder = folder, folder.parent
    assert not problems, "\n".join(problems)


# ---- point 7: a destination removed while the operation runs -------------------------------------
def _rm_after(monkeypatch, nth: int, folder: Path) -> list[int]:
    hits = [0]

    def point(name: str) -> None:
        if name == "file_written":
            hits[0] += 1
            if hits[0] == nth:
                # Like `rm -rf` racing the operation's other writer threads (which may recreate
                # a folder meanwhile): best effort, a few passes.
                for _ in range(5):
                    shutil.rmtree(folder, ignore_errors=True)
                    if not folder.exists():
                        break
    monkeypatch.setattr(faults, "point", point)
    return hits


def _assert_names_missing_file(err: BaseException, folder: Path, at_commit: bool) -> None:
    """The error (or one it wraps) names ``folder`` and a file of it that is missing; from the
    pre-commit check (``at_commit``) it also says nothing was committed."""
    msg = str(err)
    chain: BaseException | None = err
    while chain is not None and str(folder) not in str(chain):
        chain = chain.__cause__
    if chain is not None:
        msg = str(chain)
    assert str(folder) in msg and "removed or changed" in msg, msg
    if at_commit:
        assert "nothing was committed" in msg, msg
    named = re.findall(r"(/\S+?\.(?:jpg|jpeg|png|webp))\b", msg)
    assert named and any(not Path(p).exists() for p in named), msg


def _assert_sound(db_path: Path) -> None:
    """Reopened: no row names a missing file, SQLite is sound, and check(fix=True) cleans up."""
    conn = pxl.connect(db_path)
    try:
        report = check(conn.places)
        assert report.missing == [] and report.integrity == [] and report.errors == [], report
        assert check(conn.places, fix=True).ok and check(conn.places).ok
    finally:
        conn.close()


def _rows(db_path: Path) -> tuple[list[str], list[tuple]]:
    """Column names of ``t`` and its rows (raw stored values, by rowid)."""
    conn = pxl.connect(db_path)
    try:
        meta = catalog.load_table(conn.db, "t")
        cols = ", ".join(c.sql for c in meta.columns)
        rows = conn.db.query(f"SELECT {cols} FROM {meta.sql} ORDER BY _rowid")
        return [c.name for c in meta.columns], [tuple(r) for r in rows]
    finally:
        conn.close()


@pytest.mark.parametrize("nth", [1, 5])
def test_destination_removed_during_computed_column(tmp_path, monkeypatch, nth):
    """rm -rf of a computed column's local destination mid-run: no commit, a clear error.

    After the 5th (last) file the pre-commit check finds the files gone; after the 1st, the
    writer threads still at work usually find their folder gone first (either way: no commit).
    """
    db_path, dest = tmp_path / "db.pxl", tmp_path / "rot"
    conn = pxl.connect(db_path)
    t = conn.create_table("t", {"image": pxl.Image, "k": pxl.Int})
    t.insert([{"image": Image.new("RGB", (8, 8), c), "k": k}
              for k, c in enumerate(["red", "blue", "green", "yellow", "purple"])])
    conn.close()
    before = _rows(db_path)

    conn = pxl.connect(db_path)
    t = conn.get_table("t")
    _rm_after(monkeypatch, nth, dest)
    with pytest.raises(PxliteError) as info:
        t.add_computed_column(rot=t.image.rotate(90), destination=str(dest))
    monkeypatch.undo()
    conn.close()
    _assert_names_missing_file(info.value, dest, at_commit=nth == 5)
    # The batch never committed: the column is pending (resumable) with no cell written, and
    # what readers see is unchanged.
    names, rows = _rows(db_path)
    assert names[:2] == before[0] and [r[:2] for r in rows] == before[1]
    assert names[2:] in ([], ["rot"]) and all(r[2:] in ((), (None,)) for r in rows)
    assert pxl.connect(db_path).get_table("t").columns() == before[0]
    _assert_sound(db_path)

    conn = pxl.connect(db_path)  # the folder is back: the same call now succeeds (resumes)
    t = conn.get_table("t")
    t.add_computed_column(rot=t.image.rotate(90), destination=str(dest))
    conn.close()
    _assert_sound(db_path)


@pytest.mark.parametrize("nth", [1, 3])
def test_destination_removed_during_insert(tmp_path, monkeypatch, nth):
    """rm -rf of the database's media folder while PIL images are inserted: nothing commits."""
    db_path = tmp_path / "db.pxl"
    media = Path(str(db_path) + ".media")
    conn = pxl.connect(db_path)
    conn.create_table("t", {"image": pxl.Image, "k": pxl.Int})
    conn.close()
    before = _rows(db_path)
    rows = [{"image": Image.new("RGB", (8, 8), c), "k": k}
            for k, c in enumerate(["red", "blue", "green", "yellow", "purple"])]

    conn = pxl.connect(db_path)
    t = conn.get_table("t")
    _rm_after(monkeypatch, nth, media)
    with pytest.raises(PxliteError) as info:
        t.insert(rows)
    monkeypatch.undo()
    conn.close()
    _assert_names_missing_file(info.value, media, at_commit=True)
    assert _rows(db_path) == before
    _assert_sound(db_path)

    conn = pxl.connect(db_path)
    conn.get_table("t").insert(rows)
    conn.close()
    _assert_sound(db_path)
    assert len(_rows(db_path)[1]) == len(rows)


# ---- make_durable itself -------------------------------------------------------------------------
def _backend() -> local.LocalBackend:
    backend = storage.get_backend("file:///", config.resolve({}))
    assert isinstance(backend, local.LocalBackend)
    return backend


def _write(uri: str, data: bytes) -> None:
    assert _backend().put_bytes_new(data, uri)


@pytest.fixture
def fsyncs(monkeypatch) -> list[str]:
    """Paths passed to os.fsync / os.fdatasync (by fd, resolved through /proc/self/fd)."""
    seen: list[str] = []

    def wrap(real):
        def sync(fd: int) -> None:
            seen.append(os.readlink(f"/proc/self/fd/{fd}"))
            real(fd)
        return sync
    monkeypatch.setattr(os, "fsync", wrap(os.fsync))
    monkeypatch.setattr(os, "fdatasync", wrap(os.fdatasync))
    monkeypatch.setattr(base, "_fdatasync", wrap(base._fdatasync))
    return seen


needs_proc = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")


@needs_proc
def test_make_durable_dedups_folders(tmp_path, fsyncs, monkeypatch):
    """20 files in 2 leaf folders: each folder up to the root's parent is fsynced once, and
    files synced when written are not synced again (no background folder syncs here)."""
    monkeypatch.setattr(base.FOLDERS, "changed", lambda folder: None)
    root = (tmp_path / "dest").as_uri() + "/"
    uris = [f"{root}tbl/1/{'ab' if i % 2 else 'cd'}/{i:064x}.jpg" for i in range(20)]
    for u in uris:
        _write(u, b"x" * 100)
    assert len(fsyncs) == 20  # one fdatasync per file, at write time
    del fsyncs[:]
    local.make_durable(uris + uris[:5], [root, "s3://bucket/x/"])
    d = tmp_path / "dest"
    expected = [d / "tbl/1/cd", d / "tbl/1", d / "tbl", d, tmp_path, d / "tbl/1/ab"]
    assert sorted(fsyncs) == sorted(str(p) for p in expected), fsyncs
    assert len(fsyncs) == len(set(fsyncs))


@needs_proc
def test_folders_synced_in_the_background_are_not_synced_again(tmp_path, fsyncs):
    """The files' own folders, synced in the background after the last file this process
    linked there, are not synced again at the commit; the folders above them are."""
    root = (tmp_path / "dest").as_uri() + "/"
    uris = [f"{root}tbl/1/{'ab' if i % 2 else 'cd'}/{i:064x}.jpg" for i in range(20)]
    for u in uris:
        _write(u, b"x" * 100)
    assert base.FOLDERS.wait_idle()
    d = tmp_path / "dest"
    assert {str(d / "tbl/1/ab"), str(d / "tbl/1/cd")} <= set(fsyncs)  # in the background
    del fsyncs[:]
    local.make_durable(uris, [root])
    assert sorted(fsyncs) == sorted(str(p) for p in (d / "tbl/1", d / "tbl", d, tmp_path))


@needs_proc
def test_a_folder_with_a_file_found_in_place_is_synced_again(tmp_path, fsyncs):
    """A file this process did not write (found already there: another program may have linked
    it after the background sync) makes its folder synced at the commit."""
    root = (tmp_path / "dest").as_uri() + "/"
    mine = f"{root}tbl/1/ab/{1:064x}.jpg"
    _write(mine, b"x" * 100)
    theirs = tmp_path / "dest" / "tbl/1/ab" / f"{2:064x}.jpg"
    assert base.FOLDERS.wait_idle()
    theirs.write_bytes(b"y" * 100)
    del fsyncs[:]
    local.make_durable([mine, theirs.as_uri()], [root])
    assert str(theirs.parent) in fsyncs and str(theirs) in fsyncs


@needs_proc
def test_make_durable_syncs_files_it_did_not_write(tmp_path, fsyncs):
    """A file found in place (not synced by this process) gets its bytes synced."""
    f = tmp_path / "dest" / "a.jpg"
    f.parent.mkdir()
    f.write_bytes(b"data")
    local.make_durable([f.as_uri()], [f.parent.as_uri() + "/"])
    assert str(f) in fsyncs and str(f.parent) in fsyncs and str(tmp_path) in fsyncs


def test_make_durable_missing_file(tmp_path):
    root = tmp_path / "dest"
    uri = f"{root.as_uri()}/t/1/ab/{'ab' * 32}.jpg"
    _write(uri, b"data")
    os.unlink(storage.file_path(uri))
    with pytest.raises(StorageError) as info:
        local.make_durable([uri], [root.as_uri() + "/"])
    assert not info.value.retryable and info.value.uri == uri
    msg = str(info.value)
    assert str(storage.file_path(uri)) in msg and str(root) in msg, msg
    assert "removed or changed" in msg and "nothing was committed" in msg, msg

    shutil.rmtree(root)  # the whole folder gone: the first missing folder names the file
    with pytest.raises(StorageError, match="removed or changed") as info:
        local.make_durable([uri], [root.as_uri() + "/"])
    assert str(storage.file_path(uri)) in str(info.value)


@needs_proc
def test_make_durable_ignores_non_local(tmp_path, fsyncs):
    local.make_durable(["s3://b/k.jpg", "https://example.com/a.jpg", "media:x/y.jpg"],
                       ["s3://b/", (tmp_path / "none").as_uri() + "/"])
    assert fsyncs == []


@pytest.fixture(params=["O_TMPFILE", "temp file"])
def new_files(request, monkeypatch) -> str:
    """Both ways put_bytes_new makes a file: an unnamed O_TMPFILE (Linux) or a named temp file
    (other platforms and filesystems)."""
    if request.param == "temp file":
        monkeypatch.setattr(local, "_tmpfile_works", False)
    elif not local._tmpfile_works:
        pytest.skip("no O_TMPFILE here")
    return request.param


def test_put_bytes_new_leaves_no_temp_file(tmp_path, new_files):
    """A new file, the same content again, and a repaired one: only the content-addressed
    names remain in the folder, with the bytes written and the umask's mode."""
    folder = tmp_path / "dest" / "ab"
    uris = [f"{folder.as_uri()}/{c * 32}.jpg" for c in ("ab", "ef")]
    assert _backend().put_bytes_new(b"one", uris[0]) is True
    assert _backend().put_bytes_new(b"one", uris[0]) is False   # already there
    storage.file_path(uris[1]).write_bytes(b"")                  # truncated by a power cut
    assert _backend().put_bytes_new(b"two", uris[1]) is False   # repaired, not "created"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        storage.file_path(u).name for u in uris)
    assert [storage.file_path(u).read_bytes() for u in uris] == [b"one", b"two"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(storage.file_path(uris[0]).stat().st_mode) == 0o666 & ~umask


def test_put_bytes_new_repairs_truncated_file(tmp_path, new_files):
    """A content-addressed name holding 0 bytes (a power cut before writes were synced) is
    replaced by the full bytes; the name counts as already there (never undone)."""
    uri = f"{tmp_path.as_uri()}/dest/{'cd' * 32}.jpg"
    path = storage.file_path(uri)
    path.parent.mkdir()
    path.write_bytes(b"")
    assert _backend().put_bytes_new(b"full", uri) is False
    assert path.read_bytes() == b"full"
    assert _backend().put_bytes_new(b"full", uri) is False


def test_parse_strace_without_fd_paths():
    """The log parser: thread-id prefixes, a call split by another thread, fds resolved through
    open/close when strace printed no ``<path>``, relative paths joined to their dirfd."""
    log = textwrap.dedent("""\
        101 openat(AT_FDCWD, "/d/.pxlite-tmp-1", O_WRONLY|O_CREAT|O_EXCL, 0666) = 5
        101 write(5, "\\377\\330"..., 100) = 100
        101 fdatasync(5 <unfinished ...>
        102 openat(AT_FDCWD, "/db.pxl-wal", O_RDWR) = 6
        [pid   101] <... fdatasync resumed>) = 0
        101 close(5) = 0
        101 linkat(AT_FDCWD, "/d/.pxlite-tmp-1", AT_FDCWD, "/d/f.jpg", 0) = 0
        102 openat(AT_FDCWD, "/d", O_RDONLY|O_DIRECTORY) = 5
        102 fsync(5) = 0
        102 close(5) = 0
        102 openat(5, "rel", O_RDONLY) = -1 ENOENT (No such file or directory)
        102 pwrite64(6, "x, y", 4, 0) = 4
        102 fsync(6) = 0
        101 +++ exited with 0 +++
        """)
    calls = parse_strace(log)
    got = [(c.name, c.paths) for c in calls]
    assert got == [
        ("openat", ["/d/.pxlite-tmp-1"]), ("write", ["/d/.pxlite-tmp-1"]),
        ("openat", ["/db.pxl-wal"]), ("fdatasync", ["/d/.pxlite-tmp-1"]),
        ("close", ["/d/.pxlite-tmp-1"]), ("linkat", ["/d/.pxlite-tmp-1", "/d/f.jpg"]),
        ("openat", ["/d"]), ("fsync", ["/d"]), ("close", ["/d"]),
        ("pwrite64", ["/db.pxl-wal"]), ("fsync", ["/db.pxl-wal"])], got
    split = calls[3]
    assert (split.start, split.end) == (2, 4)
