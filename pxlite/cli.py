"""The ``pxlite`` command: a thin layer over the library.

Every error pxlite raises on purpose is printed as one readable line with a non-zero exit
status; a traceback only appears for a bug (or with ``PXLITE_DEBUG=1``).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import pxlite as pxl

from . import config
from .catalog import did_you_mean
from .demo import run_demo
from .errors import NotFoundError, PxliteError


def _open(args: argparse.Namespace) -> pxl.Connection:
    """The database the command reads: ``--db`` must name an existing file (reading never
    creates one); without it, the home database (created with its folder on first use)."""
    if not args.db:
        return pxl.default()
    try:
        return pxl.connect(args.db, create=False)
    except NotFoundError as e:
        path = Path(args.db).expanduser().absolute()
        raise NotFoundError(
            f"no database file at {path}; pass an existing one (`pxlite ls --db FILE`), or "
            f"create it in Python with pxl.connect({str(path)!r})") from e


def _ls_command(args: argparse.Namespace) -> str:
    return "pxlite ls" + (f" --db {shlex.quote(args.db)}" if args.db else "")


def _get_table(args: argparse.Namespace) -> pxl.Table:
    """The table the command names; a missing one is reported with the CLI's own remedy."""
    db = _open(args)
    try:
        return db.get_table(args.table)
    except NotFoundError as e:
        tables = db.list_tables()
        if args.table in tables:
            raise  # it exists: something else is missing, and the message says what
        if args.table in db.list_dirs():
            raise NotFoundError(f"{args.table!r} is a directory, not a table; "
                                f"`{_ls_command(args)}` shows the tables there are") from e
        raise NotFoundError(
            f"table {args.table!r} does not exist in {db.path}; "
            f"{did_you_mean(args.table, tables)}`{_ls_command(args)}` shows the tables there are"
        ) from e


def cmd_ls(args: argparse.Namespace) -> None:
    db = _open(args)
    dirs, tables = db.list_dirs(), db.list_tables()
    if not dirs and not tables:
        print(f"(no tables in {db.path})")
    for d in dirs:
        print(f"{d}/")
    for t in tables:
        print(f"{t}  ({db.get_table(t).count():,} rows)")


def cmd_describe(args: argparse.Namespace) -> None:
    print(repr(_get_table(args)))


def cmd_show(args: argparse.Namespace) -> None:
    # fit the terminal (COLUMNS when set, 80 when not a terminal): wide columns are cut, and a
    # row is never wrapped onto the next line where it would no longer line up with its header
    width = shutil.get_terminal_size().columns
    print(_get_table(args).head(args.n).to_text(width=width))


def cmd_config(args: argparse.Namespace) -> None:
    print("\n".join(config.resolve().lines()))


def human_size(n: float) -> str:
    """Bytes for people: ``0 B``, ``512 B``, ``3.4 MB``, ``10.0 GB`` (powers of 1000, as the
    ``file_cache_size_g`` setting is)."""
    if n < 1000:
        return f"{int(n)} B"
    for unit in ("kB", "MB", "GB", "TB"):
        n /= 1000
        if n < 1000 or unit == "TB":
            break
    return f"{n:.1f} {unit}"


def cmd_cache(args: argparse.Namespace) -> None:
    if args.action == "clear":
        print(f"removed {pxl.clear_cache():,} cached files")
        return
    info = pxl.cache_info()
    used = info.size_bytes / info.limit_bytes if info.limit_bytes else 0.0
    lookups = info.hits + info.misses
    rate = f" (hit rate {info.hits / lookups:.0%})" if lookups else ""
    print(f"folder:  {info.directory}\n"
          f"files:   {info.count:,}\n"
          f"size:    {human_size(info.size_bytes)} of {human_size(info.limit_bytes)} "
          f"({'<1%' if 0 < used < 0.01 else f'{used:.0%}'} used; "
          "file_cache_size_g sets the bound)\n"
          f"hits:    {info.hits:,}\n"
          f"misses:  {info.misses:,}{rate}")


def cmd_check(args: argparse.Namespace) -> None:
    # without --db: the home database if there is one (a check never creates a database)
    report = _open(args).check(fix=args.fix) if args.db else pxl.check(fix=args.fix)
    print(report)
    if not report.ok:  # also after --fix: it removes orphans, missing files remain
        raise SystemExit(1)


def cmd_claim(args: argparse.Namespace) -> None:
    with warnings.catch_warnings():  # the open would say "claim them": that is what this does
        warnings.simplefilter("ignore", pxl.OwnershipWarning)
        db = _open(args)
    claimed = db.claim_locations()
    if not claimed:
        print(f"{db.path} owns every location it recorded; nothing to claim")
        return
    print(f"{db.path} now owns {len(claimed):,} location(s) it read but did not clean:")
    for where in claimed:
        print(f"  {where}")
    print("files there that no row of this database names are orphans now: "
          f"`pxlite check --fix --db {shlex.quote(str(db.path))}` removes them")


def cmd_demo(args: argparse.Namespace) -> None:
    run_demo(Path(args.dir) if args.dir else None, n=args.n)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pxlite", description="pxlite: tables of media in one file")
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command")

    def with_db(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("--db", help="database file (default: $PXLITE_HOME/pxlite.db)")
        return sp

    s = sub.add_parser("demo", help="run the walkthrough on generated images (no network)")
    s.add_argument("--dir", help="folder for the demo database (default: a new temp folder)")
    s.add_argument("-n", type=int, default=6, help="number of images to generate")
    s.set_defaults(fn=cmd_demo)
    with_db(sub.add_parser("ls", help="list directories and tables")).set_defaults(fn=cmd_ls)
    s = with_db(sub.add_parser("describe", help="show a table's schema"))
    s.add_argument("table")
    s.set_defaults(fn=cmd_describe)
    s = with_db(sub.add_parser("show", help="show a table's first rows"))
    s.add_argument("table")
    s.add_argument("-n", type=int, default=10)
    s.set_defaults(fn=cmd_show)
    sub.add_parser("config", help="effective settings and where each came from").set_defaults(
        fn=cmd_config)
    s = sub.add_parser("cache", help="download cache: info or clear")
    s.add_argument("action", choices=["info", "clear"], nargs="?", default="info")
    s.set_defaults(fn=cmd_cache)
    s = with_db(sub.add_parser("check", help="compare catalog and files, both ways"))
    s.add_argument("--fix", action="store_true", help="remove orphan files pxlite wrote")
    s.set_defaults(fn=cmd_check)
    s = with_db(sub.add_parser(
        "claim", help="take back the locations of a database that was moved, not copied"))
    s.set_defaults(fn=cmd_claim)
    return p


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str,
                      lineno: int, file: object = None, line: str | None = None) -> None:
    """Warnings on the command line: one readable line, without pxlite's source lines."""
    text = str(message)
    print(text if text.startswith("pxlite:") else f"pxlite: warning: {text}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pxlite`` console script; returns the exit status."""
    warnings.showwarning = _one_line_warning
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        print(f"pxlite {pxl.__version__}")
        return 0
    if not getattr(args, "fn", None):
        parser.print_help()
        return 2
    try:
        args.fn(args)
    except PxliteError as e:
        if os.environ.get("PXLITE_DEBUG"):
            raise
        print(f"pxlite: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("pxlite: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
