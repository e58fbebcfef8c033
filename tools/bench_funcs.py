"""Benchmark of the built-in functions and JSON paths: pxlite's SQL against hand-written SQLite.

    python tools/bench_funcs.py              # 100,000 rows, 5 interleaved repetitions
    python tools/bench_funcs.py --quick      # smoke run: 5,000 rows, 1 repetition
    python tools/bench_funcs.py --jsonb      # also: Json stored as text vs SQLite's JSONB

(a) 30 string and timestamp functions applied in one select over N rows (a String, a fifth of
    its values beyond ASCII; a Timestamp), three ways, interleaved, medians:
    - "pxlite SQL": one statement of the expressions' own SQL (``Expr.sql_value()``), each value
      decoded to Python (``Expr.decode``): what a query runs once its select outputs go to SQL;
    - "pxlite select": ``t.select(...).collect()`` as the query engine on this branch runs it;
    - "hand-written": the same 30 functions as a person would write them in SQLite (``lower(s)``,
      ``strftime('%Y', ts)``...), through a plain apsw connection on the same file.
    Target: pxlite SQL within 1.5x of hand-written. Then, per function, where it ran: in SQLite,
    in SQLite with Python for some values (how many calls), or in Python (called from SQLite).
(b) --jsonb: a Json column stored as JSON text (pxlite's choice) and as JSONB, N rows each:
    a JSON path filter, three paths selected, whole values read back, and the insert.

:func:`function_figures` returns (a)'s figures, for tools/bench_query.py to call. Prints figures;
asserts nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import apsw

import pxlite as pxl
from pxlite import sqlcall
from pxlite.exprs import Expr
from pxlite.queryrun import row_decoder
from tools import benchlib as bl

#: (name, pxlite expression over table t, hand-written SQLite with {s} and {ts} for the columns)
FUNCTIONS: list[tuple[str, Callable[[Any], Expr], str]] = [
    ("lower", lambda t: t.s.lower(), "lower({s})"),
    ("upper", lambda t: t.s.upper(), "upper({s})"),
    ("capitalize", lambda t: t.s.capitalize(), "upper(substr({s}, 1, 1)) || lower(substr({s}, 2))"),
    ("len", lambda t: t.s.len(), "length({s})"),
    ("contains", lambda t: t.s.contains("photo"), "instr({s}, 'photo') > 0"),
    ("contains case=False", lambda t: t.s.contains("PHOTO", case=False),
     "instr(lower({s}), 'photo') > 0"),
    ("startswith", lambda t: t.s.startswith("a "), "{s} LIKE 'a %'"),
    ("endswith", lambda t: t.s.endswith("7"), "{s} LIKE '%7'"),
    ("replace", lambda t: t.s.replace("photo", "image"), "replace({s}, 'photo', 'image')"),
    ("strip", lambda t: t.s.strip(), "trim({s})"),
    ("lstrip", lambda t: t.s.lstrip(), "ltrim({s})"),
    ("rstrip", lambda t: t.s.rstrip(), "rtrim({s})"),
    ("slice(2, 8)", lambda t: t.s.slice(2, 8), "substr({s}, 3, 6)"),
    ("find", lambda t: t.s.find("o"), "instr({s}, 'o') - 1"),
    ("count", lambda t: t.s.count("o"), "length({s}) - length(replace({s}, 'o', ''))"),
    ("+", lambda t: t.s + "!", "{s} || '!'"),
    ("removeprefix", lambda t: t.s.removeprefix("a "),
     "CASE WHEN {s} LIKE 'a %' THEN substr({s}, 3) ELSE {s} END"),
    ("year", lambda t: t.ts.year, "CAST(strftime('%Y', {ts}) AS INTEGER)"),
    ("month", lambda t: t.ts.month, "CAST(strftime('%m', {ts}) AS INTEGER)"),
    ("day", lambda t: t.ts.day, "CAST(strftime('%d', {ts}) AS INTEGER)"),
    ("hour", lambda t: t.ts.hour, "CAST(strftime('%H', {ts}) AS INTEGER)"),
    ("minute", lambda t: t.ts.minute, "CAST(strftime('%M', {ts}) AS INTEGER)"),
    ("second", lambda t: t.ts.second, "CAST(strftime('%S', {ts}) AS INTEGER)"),
    ("microsecond", lambda t: t.ts.microsecond, "CAST(substr({ts}, 21, 6) AS INTEGER)"),
    ("weekday", lambda t: t.ts.weekday(), "(CAST(strftime('%w', {ts}) AS INTEGER) + 6) % 7"),
    ("isoweekday", lambda t: t.ts.isoweekday(),
     "(CAST(strftime('%w', {ts}) AS INTEGER) + 6) % 7 + 1"),
    ("toordinal", lambda t: t.ts.toordinal(),
     "CAST(julianday(date({ts})) - 1721424.5 AS INTEGER)"),
    ("isoformat", lambda t: t.ts.isoformat(), "{ts}"),
    ("strftime", lambda t: t.ts.strftime("%Y-%m-%d %H:%M"), "strftime('%Y-%m-%d %H:%M', {ts})"),
    ("date", lambda t: t.ts.date(), "date({ts})"),
]

ASCII_WORDS = ["a photo of", "A dog", "sunset", "  spaced  ", "Photo", "red car", "x"]
OTHER_WORDS = ["Straße", "café", "ǆ", "日本", "naïve"]
#: The share of the text values that are not plain ASCII (captions, names, places).
NON_ASCII = 0.2


def make_table(path: Path, n: int, seed: int = 7) -> Any:
    """A table of n rows: s (text, NON_ASCII of it beyond ASCII) and ts (a Timestamp)."""
    rng = random.Random(seed)
    db = pxl.connect(path)
    t = db.create_table("bench", {"s": pxl.String, "ts": pxl.Timestamp}, if_exists="replace")
    start = dt.datetime(2000, 1, 1)
    rows = [{"s": f"{rng.choice(ASCII_WORDS)} "
                  f"{rng.choice(OTHER_WORDS if rng.random() < NON_ASCII else ASCII_WORDS)} {i}",
             "ts": start + dt.timedelta(seconds=rng.randrange(10**9),
                                        microseconds=rng.randrange(10**6) * (i % 2))}
            for i in range(n)]
    t.insert(rows)
    return t


def _timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def function_figures(n: int = 100_000, reps: int = 5, *, with_select: bool = True
                     ) -> dict[str, Any]:
    """Time (a): medians in seconds for pxlite's SQL, pxlite's select (if ``with_select``) and
    the hand-written statement, and where each function ran."""
    with tempfile.TemporaryDirectory(prefix="pxl-bench-funcs-") as tmp:
        t = make_table(Path(tmp) / "f.pxl", n)
        meta = t._meta()
        cols = {c.name: c.sql for c in meta.columns}
        exprs = [build(t) for _, build, _ in FUNCTIONS]
        parts = [e.sql_value() for e in exprs]
        assert all(p is not None for p in parts)
        sql = f"SELECT {', '.join(p[0] for p in parts)} FROM {meta.sql}"  # type: ignore[index]
        params = [v for p in parts for v in p[1]]  # type: ignore[index]
        hand = "SELECT " + ", ".join(h.format(s=cols["s"], ts=cols["ts"])
                                     for _, _, h in FUNCTIONS) + f" FROM {meta.sql}"
        plain = apsw.Connection(str(t._conn.db.path))

        # Bool and Date results become bool and date, as the query engine turns a row into
        # its values (one function compiled for the query; see queryrun.row_decoder)
        decoded = row_decoder([(i, e.decoder()) for i, e in enumerate(exprs)])

        def pxlite_sql() -> list:
            return [decoded(row) for row in t._conn.db.execute(sql, params)]

        def handwritten() -> list:
            return plain.execute(hand).fetchall()

        def pxlite_select() -> Any:
            return t.select(*exprs).collect()

        # the same values, before timing anything
        first = pxlite_sql()
        selected = pxlite_select() if with_select else None
        if selected is not None:
            assert [tuple(r.values()) for r in selected.to_dicts()] == first
        runs: dict[str, list[float]] = {"pxlite SQL": [], "hand-written": [],
                                        "pxlite select": []}
        for _ in range(reps):
            runs["hand-written"].append(_timed(handwritten))
            runs["pxlite SQL"].append(_timed(pxlite_sql))
            if with_select:
                runs["pxlite select"].append(_timed(pxlite_select))
        where = {name: _where(t, e) for (name, _, _), e in zip(FUNCTIONS, exprs, strict=True)}
        plain.close()
        t._conn.close()
    return {"rows": n, "reps": reps,
            "median_s": {k: statistics.median(v) for k, v in runs.items() if v},
            "where": where}


def _where(t: Any, e: Expr) -> str:
    """Where SQLite computed ``e`` over the table: natively, with some values in Python, or
    all in Python (counting pxl_call on a separate connection)."""
    s = e.sql_value()
    assert s is not None
    if sqlcall.SQL_NAME not in s[0]:
        return "SQLite"
    calls = 0

    def counting(key: str, *args: Any) -> Any:
        nonlocal calls
        calls += 1
        return sqlcall.dispatch(key, *args)

    conn = apsw.Connection(str(t._conn.db.path), flags=apsw.SQLITE_OPEN_READONLY)
    conn.create_scalar_function(sqlcall.SQL_NAME, counting, -1)
    n = conn.execute(f"SELECT count(*) FROM {t._meta().sql}").fetchall()[0][0]
    conn.execute(f"SELECT {s[0]} FROM {t._meta().sql}", s[1]).fetchall()
    conn.close()
    if calls == 0:
        return "SQLite (Python fallback never needed)"
    if calls >= n:
        return "Python, called from SQLite"
    return f"SQLite; Python for {calls:,} of {n:,} values"


def jsonb_figures(n: int, reps: int) -> dict[str, float]:
    """(b): the same documents as JSON text and as JSONB; medians in seconds."""
    rng = random.Random(3)
    docs = [json.dumps({"camera": {"model": rng.choice("ABCDEFGHX"), "make": "Canon",
                                   "iso": rng.randint(100, 3200)},
                        "tags": [rng.choice(["cat", "dog", "car"]) for _ in range(3)],
                        "w": rng.random(), "caption": f"a photo of something number {i}"},
                       separators=(",", ":")) for i in range(n)]
    out: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="pxl-bench-jsonb-") as tmp:
        conn = apsw.Connection(str(Path(tmp) / "j.db"))
        conn.execute("PRAGMA journal_mode=wal")
        conn.execute("CREATE TABLE text_t(m TEXT); CREATE TABLE jsonb_t(m BLOB)")
        for _ in range(reps):
            for table, value in (("text_t", "?"), ("jsonb_t", "jsonb(?)")):
                conn.execute(f"DELETE FROM {table}")
                t0 = time.perf_counter()
                with conn:
                    conn.executemany(f"INSERT INTO {table} VALUES ({value})",
                                     [(d,) for d in docs])
                out.setdefault(f"insert {table}", []).append(time.perf_counter() - t0)
        cases = {
            "filter m->>'$.camera.model' = 'X' (count)":
                "SELECT count(*) FROM {t} WHERE m ->> '$.camera.model' = 'X'",
            "select 3 paths": "SELECT m ->> '$.camera.model', m ->> '$.camera.iso', "
                              "m ->> '$.tags[0]' FROM {t}",
            "read whole values": "SELECT {whole} FROM {t}",
        }
        for _ in range(reps):
            for label, q in cases.items():
                for table, whole in (("text_t", "m"), ("jsonb_t", "json(m)")):
                    sql = q.format(t=table, whole=whole)
                    out.setdefault(f"{label} [{table}]", []).append(
                        _timed(lambda s=sql: conn.execute(s).fetchall()))
        conn.close()
    return {k: statistics.median(v) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="5,000 rows, one repetition")
    ap.add_argument("--rows", type=int, default=None)
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--jsonb", action="store_true", help="also compare JSON text and JSONB")
    ap.add_argument("--no-select", action="store_true",
                    help="skip t.select(...).collect() (slow while it evaluates in Python)")
    args = ap.parse_args()
    n = args.rows or (5_000 if args.quick else 100_000)
    reps = args.reps or (1 if args.quick else 5)

    bl.header(f"(a) {len(FUNCTIONS)} string/timestamp functions in one select, {n:,} rows, "
              f"{reps} interleaved repetitions (medians)")
    fig = function_figures(n, reps, with_select=not args.no_select)
    med = fig["median_s"]
    hand = med["hand-written"]
    rows = [[k, f"{v * 1000:.0f} ms", f"{v / hand:.2f}x"] for k, v in med.items()]
    bl.say(bl.table(["statement", "median", "vs hand-written"], rows))
    bl.say(f"pxlite SQL vs hand-written: {med['pxlite SQL'] / hand:.2f}x "
           f"{bl.verdict(med['pxlite SQL'] / hand, 1.5)}")
    bl.say()
    bl.say(bl.table(["function", "computed"], [[k, v] for k, v in fig["where"].items()]))
    if args.jsonb:
        bl.header(f"(b) Json as text vs JSONB, {n:,} rows, {reps} repetitions (medians)")
        jb = jsonb_figures(n, reps)
        labels = sorted({k.rsplit(" [", 1)[0] if "[" in k else k.rsplit(" ", 1)[0]
                         for k in jb})
        rows = []
        for label in labels:
            if label == "insert":
                a, b = jb["insert text_t"], jb["insert jsonb_t"]
            else:
                a, b = jb[f"{label} [text_t]"], jb[f"{label} [jsonb_t]"]
            rows.append([label, f"{a * 1000:.0f} ms", f"{b * 1000:.0f} ms", f"{b / a:.2f}x"])
        bl.say(bl.table(["operation", "text", "JSONB", "JSONB / text"], rows))


if __name__ == "__main__":
    main()
