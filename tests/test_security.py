"""Security properties (see SECURITY.md for the reasoning behind each).

* Credentials never reach the catalog file (incl. -wal/-shm), the media and cache folders, log
  records (every logger, DEBUG), exception messages/reprs/tracebacks, or ``pxlite config``, even
  when storage calls fail in every way we can provoke (closed port, missing bucket, wrong key).
* SQL is parameterized: every f-string that builds SQL interpolates only allow-listed, id-derived
  fragments (AST check), hostile strings never appear in executed SQL text (apsw exec trace), and
  SQL-injection-shaped names are refused while such values come back as data.
* A database file from someone else: what opening and using it can do.

Presigned URLs being GET-only and bounded are checked in test_presign.py; file permissions in
test_file_permissions.py; hostile names, values, destinations and files in test_names.py,
test_types.py, test_destinations.py and test_media_files.py.
"""

from __future__ import annotations

import ast
import base64
import datetime as dt
import json
import logging
import re
import traceback
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import apsw
import pytest
from fixtures_storage import azurite_account_sas, create_azure_container, fake_gcs_key
from hostile_inputs import INJECTIONS, closed_port, valid_path

import pxlite as pxl
from pxlite import config
from pxlite.cli import main
from pxlite.errors import ConfigError, PxliteError, SchemaError
from pxlite.functions import net

ROOT = Path(__file__).parents[1]
PXLITE = ROOT / "pxlite"


pytestmark = pytest.mark.usefixtures("fresh_backends")


# ---------------------------------------------------------------------------------------------
# Credentials never leak


class Leaks:
    """Collects every text and file an operation could leak a secret into."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []
        self.errors: list[BaseException] = []

    def run(self, what: str, fn, *args, **kw):
        try:
            out = fn(*args, **kw)
        except PxliteError as e:
            self.errors.append(e)
            self.texts.append((what, str(e)))
            self.texts.append((what + " repr", repr(e)))
            self.texts.append((what + " traceback", "".join(traceback.format_exception(e))))
            return None
        self.texts.append((what, repr(out)))
        return out

    def check(self, secrets: list[str], files: list[Path], caplog) -> None:
        texts = list(self.texts)
        texts.append(("logs", caplog.text))
        texts += [("log args", repr(r.args)) for r in caplog.records]
        found = []
        for s in secrets:
            for where, text in texts:
                if s in text:
                    found.append(f"{s[:12]}... in {where}")
            for f in files:
                for p in ([f] if f.is_file() else [q for q in f.rglob("*") if q.is_file()]
                          if f.is_dir() else []):
                    if s.encode() in p.read_bytes():
                        found.append(f"{s[:12]}... in file {p}")
        assert not found, found


def _exercise(leaks: Leaks, tmp_path: Path, cfg: dict, dest: str, obj: str, tag: str):
    """Every operation that talks to storage, each expected to fail (or to presign offline);
    with working credentials (the SAS cases) they succeed and their results are searched."""
    dbpath = tmp_path / f"{tag}.pxl"
    leaks.run(f"{tag} connect with dest", pxl.connect, tmp_path / f"{tag}-d.pxl",
              config={**cfg, "output_media_dest": dest})
    db = pxl.connect(dbpath, config=cfg)
    t = db.create_table("t", {"img": pxl.Image, "n": pxl.Int})
    t.insert(img=obj, n=1)  # a URL is stored as given; nothing is fetched yet
    leaks.run(f"{tag} computed ignore", t.add_computed_column, r=t.img.rotate(90),
              on_error="ignore")
    leaks.run(f"{tag} computed abort", t.add_computed_column, r2=t.img.rotate(90))
    leaks.run(f"{tag} destination=", t.add_computed_column, r3=t.img.rotate(90),
              destination=dest)
    leaks.run(f"{tag} presign", t.add_computed_column, share=net.presigned_url(t.img, 3600),
              on_error="ignore")
    # file URLs, returned and stored (an Azure SAS credential used to ride along)
    leaks.run(f"{tag} fileurl", t.add_computed_column, url=t.img.fileurl, on_error="ignore")
    def fileurls():
        cols = [t.img.fileurl, t.r.fileurl, *([t.r3.fileurl] if "r3" in t.columns() else [])]
        return t.select(*cols).collect().to_dicts()

    leaks.run(f"{tag} fileurls", fileurls)
    leaks.run(f"{tag} read", lambda: t.select(t.img.localpath).collect().to_dicts())
    leaks.run(f"{tag} read image", lambda: t.collect()[0]["img"])
    leaks.run(f"{tag} prefetch", t.prefetch)
    leaks.run(f"{tag} check", lambda: str(pxl.check(db=db)))
    leaks.run(f"{tag} describe", repr, t)
    leaks.run(f"{tag} errors", lambda: t.select(t.r.errortype, t.r.errormsg, t.share,
                                                t.share.errormsg).collect().to_dicts())
    db.close()
    return [dbpath, Path(f"{dbpath}-wal"), Path(f"{dbpath}-shm"), Path(f"{dbpath}.media"),
            tmp_path / f"{tag}-d.pxl"]



def test_secrets_never_leak(tmp_path, caplog, capsys, pxlite_home, moto_server, gcs_server,
                            azurite_server, jpegs):
    caplog.set_level(logging.DEBUG)  # the root logger: every library logger propagates here
    token = uuid.uuid4().hex
    s3_secret = f"PXSECRET-s3-{token}"
    az_secret = base64.b64encode(f"PXSECRET-az-{token}-0123456789".encode()).decode()
    kid = f"pxsecret-kid-{token}"
    key_file, _, pem_slice = fake_gcs_key(tmp_path, kid)
    # credentials inside endpoint URLs: a user:password and a query token
    password, qtoken = f"PXPASSWORD-{token}", f"PXQTOKEN-{token}"
    # a real account SAS (Azurite checks it): read, write, delete, list
    sas = azurite_account_sas()
    sig = urllib.parse.parse_qs(sas)["sig"][0]
    secrets = [s3_secret, az_secret, kid, pem_slice, password, qtoken, sas, sig,
               urllib.parse.quote(sig, safe="")]
    closed = f"http://127.0.0.1:{closed_port()}"
    base = {"storage_retries": 0, "storage_timeout_s": 3}
    s3 = {"aws_access_key_id": "pxlite-test-key", "aws_secret_access_key": s3_secret,
          "region": "eu-west-1"}
    az_conn = lambda ep: (f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"  # noqa
                          f"AccountKey={az_secret};BlobEndpoint={ep}/devstoreaccount1;")
    gcs = {"project": "pxlite-test", "credentials_file": str(key_file)}
    bucket = f"pxl-missing-{token[:12]}"
    userinfo = lambda ep: ep.replace("://", f"://pxuser:{password}@", 1)  # noqa: E731
    blob_endpoint = f"{azurite_server.endpoint}/devstoreaccount1"
    container = f"pxl-sas-{token[:12]}"
    create_azure_container(azurite_server.connection_string, container)
    from azure.storage.blob import BlobServiceClient

    with open(jpegs[0], "rb") as f:
        BlobServiceClient.from_connection_string(azurite_server.connection_string) \
            .get_blob_client(container, "in/x.jpg").upload_blob(f)
    cases = [
        # unreachable endpoints (connection refused)
        ("s3-closed", {**base, "s3": {**s3, "endpoint_url": closed}}, "s3://bkt/out/",
         "s3://bkt/in/x.jpg"),
        ("az-closed", {**base, "azure": {"connection_string": az_conn(closed)}}, "az://cont/out/",
         "az://cont/in/x.jpg"),
        ("gcs-closed", {**base, "gcs": {**gcs, "endpoint": closed}}, "gs://bkt/out/",
         "gs://bkt/in/x.jpg"),
        # real servers: a missing bucket, and (Azurite checks keys) a wrong account key
        ("s3-nobucket", {**base, "s3": {**s3, "endpoint_url": moto_server.endpoint}},
         f"s3://{bucket}/out/", f"s3://{bucket}/in/x.jpg"),
        ("az-wrongkey", {**base, "azure": {"connection_string": az_conn(azurite_server.endpoint)}},
         f"az://{bucket}/out/", f"az://{bucket}/in/x.jpg"),
        ("gcs-nobucket", {**base, "gcs": {**gcs, "endpoint": gcs_server.endpoint}},
         f"gs://{bucket}/out/", f"gs://{bucket}/in/x.jpg"),
        # credentials in endpoints: moto serves the user-info form; botocore refuses a query
        # string in an endpoint (its refusal quotes it); the GCS client takes both
        ("s3-userinfo", {**base, "s3": {**s3, "endpoint_url": userinfo(moto_server.endpoint)}},
         f"s3://{bucket}/out/", f"s3://{bucket}/in/x.jpg"),
        ("s3-token", {**base, "s3": {**s3, "endpoint_url":
                                     f"{userinfo(moto_server.endpoint)}/?token={qtoken}"}},
         f"s3://{bucket}/out/", f"s3://{bucket}/in/x.jpg"),
        ("gcs-userinfo-token", {**base, "gcs": {**gcs, "endpoint":
                                                f"{userinfo(gcs_server.endpoint)}/?token={qtoken}"}},
         f"gs://{bucket}/out/", f"gs://{bucket}/in/x.jpg"),
        ("az-closed-userinfo", {**base, "azure": {"connection_string":
                                                  az_conn(userinfo(closed))}},
         "az://cont/out/", "az://cont/in/x.jpg"),
        # an Azure SAS credential that works: uploads, reads and file URLs succeed
        ("az-sas", {**base, "azure": {"account_url": blob_endpoint, "credential": sas}},
         f"az://{container}/out/", f"az://{container}/in/x.jpg"),
        ("az-sas-conn", {**base, "azure": {"connection_string":
                                           f"BlobEndpoint={userinfo(blob_endpoint)};"
                                           f"SharedAccessSignature={sas}"}},
         f"az://{container}/out2/", f"az://{container}/in/x.jpg"),
        # ... and the same SAS on a missing container
        ("az-sas-nocontainer", {**base, "azure": {"account_url": blob_endpoint,
                                                  "credential": sas}},
         f"az://{bucket}/out/", f"az://{bucket}/in/x.jpg"),
    ]
    leaks = Leaks()
    files: list[Path] = []
    for tag, cfg, dest, obj in cases:
        files += _exercise(leaks, tmp_path, cfg, dest, obj, tag)
        # the same with process-wide settings: storage errors through configure()
        config.reset()
        leaks.run(f"{tag} configure", pxl.configure, output_media_dest=dest,
                  **{k: v for k, v in cfg.items()})
        config.reset()
    # every failing case really failed, in the ways we meant
    kinds = {type(e).__name__ for e in leaks.errors}
    assert {"StorageError", "ComputeError"} <= kinds | {"ConfigError"}, kinds
    assert len(leaks.errors) >= 5 * (len(cases) - 2)
    msgs = " ".join(str(e) for e in leaks.errors)
    assert "could not reach" in msgs and "does not exist" in msgs and "refused" in msgs, msgs
    assert "was not a valid URI" in msgs and "****@127.0.0.1" in msgs, msgs
    # the SAS cases worked: files were written and their URLs returned (without the SAS)
    results = " ".join(text for what, text in leaks.texts if what.startswith("az-sas fileurls"))
    assert f"{blob_endpoint}/{container}/in/x.jpg" in results, results
    assert f"{blob_endpoint}/{container}/out/" in results, results
    assert "sig=****" in caplog.text  # the SDK logged SAS-signed requests, masked
    # presigned URLs were computed offline and stored: they carry signatures, not keys
    # pxlite config, with the same secrets in config.toml
    pxlite_home.mkdir(parents=True, exist_ok=True)
    (pxlite_home / "config.toml").write_text(
        f'[s3]\naws_secret_access_key = "{s3_secret}"\n'
        f'[azure]\nconnection_string = "{az_conn(closed)}"\n'
        f'[gcs]\ncredentials_file = "{key_file}"\n')
    capsys.readouterr()
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    leaks.texts.append(("pxlite config", out))
    assert "s3.aws_secret_access_key" in out and "azure.connection_string" in out
    files += [pxlite_home / "file_cache"]
    # the log capture saw the SDKs' own DEBUG records, so their absence of secrets means something
    sources = {r.name.split(".")[0] for r in caplog.records}
    assert {"botocore", "azure", "urllib3"} <= sources, sources
    leaks.check(secrets, files, caplog)
    # and the check itself can see a leak
    with pytest.raises(AssertionError):
        Leaks().check([s3_secret], [], type("C", (), {"text": s3_secret, "records": []})())


def test_presigned_urls_are_stored_as_bearer_urls(tmp_path, moto_server):
    """What a presigned column puts in the database file: the access key *id* and, with temporary
    credentials, the session token (SigV4 query auth carries it) -- never the secret key."""
    secret, session = f"PXSECRET-{uuid.uuid4().hex}", f"PXTOKEN-{uuid.uuid4().hex}"
    cfg = {"s3": {"endpoint_url": moto_server.endpoint, "region": "eu-west-1",
                  "aws_access_key_id": "AKIDPXLITE", "aws_secret_access_key": secret,
                  "aws_session_token": session}}
    db = pxl.connect(tmp_path / "p.pxl", config=cfg)
    t = db.create_table("t", {"url": pxl.String})
    t.insert(url="s3://bkt/a.jpg")
    t.add_computed_column(share=net.presigned_url(t.url, 600))
    url = t.collect()[0]["share"]
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    assert q["X-Amz-Credential"].startswith("AKIDPXLITE/") and q["X-Amz-Expires"] == "600"
    assert q["X-Amz-Security-Token"] == session  # documented in SECURITY.md
    db.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert secret.encode() not in raw and session.encode() in raw


def test_settings_repr_masks_secrets():
    s = config.resolve({"s3": {"aws_secret_access_key": "PXSECRET-repr-1234"},
                        "azure": {"connection_string": "AccountName=a;AccountKey=PXSECRETKEY=="}})
    assert "PXSECRET" not in repr(s) and "PXSECRET" not in str(s)


def test_describe_masks_sas_in_account_url():
    s = config.resolve({"azure": {"account_url":
                                  "https://acct.blob.core.windows.net/?sv=2022-11-02&sig=PXSIG%3D"}})
    text = repr(s.describe())
    assert "PXSIG" not in text and "acct.blob.core.windows.net" in text


def test_config_error_does_not_echo_a_secret_section_value(tmp_path):
    conn = "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=PXSECRETKEY=="
    with pytest.raises(ConfigError) as ei:
        pxl.connect(tmp_path / "x.pxl", config={"azure": conn})
    assert "PXSECRET" not in str(ei.value)


# ---------------------------------------------------------------------------------------------
# SQL is parameterized

#: Every expression an f-string that builds SQL in pxlite/ may interpolate, and why it is safe.
#: A new interpolation fails test_sql_fstrings_interpolate_only_allowed_fragments until it is
#: reviewed and added here.
SQL_FRAGMENTS = {
    # identifiers made from integer ids: t_<id>, c<id>, c<id>_et, c<id>_em
    r"(meta|cur|table|t)\.sql", r"(c|col|ccol|d|old)\.sql(_et|_em)?", r"sql_name",
    r"ctype\.sql_type",                                     # from a fixed set of type classes
    r"(s|a|b|lhs|rhs|match)\[0\]",                         # Expr.sql() fragments (checked here too)
    r"_SQL_OP\[self\.op\]",                                 # fixed operator table
    r"'ASC' if asc else 'DESC'",
    r"BATCH_ROWS", r"int\(base\)",                          # integers
    r"', '\.join\('\?' \* \(len\(inputs\) \+ 1\)\)",        # placeholders
    # locals assembled in the same function from the fragments above
    r"where_sql", r"cond", r"select", r"', '\.join\(select\)", r"sets", r"cols_sql", r"sel",
    r"inner",
    # plan.py's builders: identifiers from ids, '?' placeholders, Rows predicates (Expr.sql())
    r"cell_sets\(cols\)", r"names", r"', '\.join\('\?' \* count\)", r"what",
    r"(self\.)?predicate", r"ids",
    r"_JOB_COLUMNS",                                        # a constant list of px_jobs columns
    r"guard",                        # "c<id> IS ?" per input column (compute.run_batches)
    # queries (queryplan.py): SELECT lists, FROM/JOIN clauses and window clauses assembled from
    # Expr.sql() fragments and ids; the sample key is a registered function over an id column
    r"', '\.join\(sel\.frags\)", r"', '\.join\(inner_cols\)", r"from_sql", r"first\.sql",
    r"key", r"partition", r"outer", r"p\.sql", r"plan_sql",
    r"idx\.sql",                                           # i_<id>: an index named by its id
    r"item", r"frag",                                      # aggregate forms over Expr.sql()
    # expressions (exprs, jsonpath): SQL of sub-expressions, built the same way; fixed tables
    r"(av|doc|v|lst|inner)\[0\]", r"alias",      # alias: json_each's je<nesting depth>
    r"_SQL_OP\[op\]", r"json_kinds", r"json_conv", r"sqlcall\.SQL_NAME",
    # versions: the undo log h_<id>, integers, (SQL table, SQL column) names from media_cells,
    # and the lists of c<id> names / OLD.c<id> built in the same function
    r"(meta|data)\.log_sql", r"data\.sql", r"int\([a-z_.]+\)", r"sql_(table|col)", r"olds",
    r"images", r"', '\.join\(watched\)", r"sql_(names?|type|cols)", r"capture", r"view_name",
    r"existing",  # "_rowid <= <int> AND " or nothing (versions._existing)
    # embedding indexes: the change log x_<index id> and its trigger suffixes (a fixed tuple),
    # an integer constant, the trim statement built from them, vector columns c<id>
    r"log", r"vector_log\(idx\)", r"suffix", r"LOG_KEEP", r"trim",
    r"(sim\.vref\.col|vcol)\.sql", r"self\.table\.sql", r"vec_col", r"body",
    # views (views/): a table's data table t_<id> (``store``), a view's SQL view v_<id>
    # (``sql``), its bases' t_<id>/_r<id> and the trigger names and log rows from ids
    r"((self\.)?view\.)?(meta|base)\.(sql|store)", r"meta\.store", r"same", r"view_id",
    r"meta\.id", r"(table|base|col)_id", r"after", r"data", r"trigger", r"_LOG",
    r"', '\.join\('\?' \* \(len\(columns\) \+ 2\)\)", r"INSERTED|DELETED",
    r"' '\.join\(joins\)",
    # the scan index (scanindex.py): t_<id>_scan over a data table's c<id> columns
    r"index_name\(store\)", r"store", r"', '\.join\(want\)",
}
_SQL_WORDS = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|ALTER|WHERE|FROM|LIMIT|"
                        r"ORDER BY|SET|VALUES|IS NULL|IS NOT NULL|AND|OR|IN|CAST|AS REAL|ASC|DESC)"
                        r"\b|\?|=")


def _sql_fstrings() -> list[tuple[str, int, str, str]]:
    out = []
    for path in sorted(PXLITE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.JoinedStr):
                continue
            literal = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
            if not re.search(r"\b(SELECT|INSERT INTO|UPDATE|DELETE FROM|CREATE TABLE|DROP|ALTER "
                             r"TABLE|WHERE|ORDER BY|LIMIT|IS NULL|IS NOT NULL|CAST)\b|^\(?\s*$|"
                             r"\bAND\b|\bOR\b|= \?", literal):
                continue
            for v in node.values:
                if isinstance(v, ast.FormattedValue):
                    out.append((str(path.relative_to(ROOT)), node.lineno, ast.unparse(v.value),
                                literal))
    return out


def test_sql_fstrings_interpolate_only_allowed_fragments():
    found = _sql_fstrings()
    assert len(found) > 40  # the scan sees the SQL (guards against a broken pattern)
    bad = [(f, line, e, lit[:60]) for f, line, e, lit in found
           if _SQL_WORDS.search(lit) and not any(re.fullmatch(p, e) for p in SQL_FRAGMENTS)]
    assert not bad, "review these SQL interpolations and extend SQL_FRAGMENTS:\n" + "\n".join(
        map(str, bad))


def test_no_user_string_in_executed_sql(tmp_path, jpegs):
    """Trace every statement apsw runs while hostile strings are used as data, in names that are
    refused, as expression literals, paths and errors: none appears in any SQL text."""
    db = pxl.connect(tmp_path / "trace.pxl", config={"storage_retries": 0,
                                                     "storage_timeout_s": 3})
    web = f"http://127.0.0.1:{closed_port()}/"  # fails fast: no DNS, nothing listening
    marker = "PXMARK'\"); DROP TABLE px_tables;--"
    statements: list[str] = []

    def tracer(cursor, sql, bindings):
        statements.append(sql)
        return True

    db.db.sqlite.exec_trace = tracer
    try:
        t = db.create_table("t", {"s": pxl.String, "j": pxl.Json, "img": pxl.Image,
                                  "ts": pxl.Timestamp})
        d = tmp_path / marker.replace("/", "_")
        d.mkdir()
        (d / "a.jpg").write_bytes(jpegs[0].read_bytes())
        t.insert([{"s": marker, "j": {marker: [marker]}, "img": str(d / "a.jpg"),
                   "ts": dt.datetime(2024, 1, 1)}, {"s": "x", "img": web + marker}])
        t.insert([{"s": marker, "img": str(d / "missing.jpg")}], on_error="ignore")
        t.add_computed_column(up=t.s.isin([marker, "b"]))
        t.add_computed_column(rot=t.img.rotate(90), on_error="ignore")
        assert t.where(t.s == marker).count() == 2
        got = t.where((t.s == marker) | t.s.isin([marker])).select(t.s).collect()["s"]
        assert got == [marker] * 2
        t.where(t.s > marker).order_by(t.s).limit(3).collect()
        # JSON path keys and function arguments are bound too
        assert t.where((t.j[marker][0] == marker) & t.s.contains(marker) & (
            t.s.replace(marker, "y").upper() == "Y")).count() == 1
        assert t.where(t.j[marker][:1].len() == 1).order_by(t.j[marker][0]).count() == 1
        v = db.create_view("v", t.where(t.s != marker), additional_columns={
            "m": t.s.contains(marker)})  # a view: its definition and maintenance bind values
        t.update({"s": marker + "2"}, where=t.s == marker)
        t.delete(where=t.s == "x" + marker)
        assert v.count() == t.where(t.s != marker).count() == v.where(v.m).count() + 1
        for bad in (marker, "a" + marker):
            with pytest.raises(PxliteError):
                db.create_table(bad, {"a": pxl.Int})
            with pytest.raises(PxliteError):
                t.add_column(**{bad: pxl.Int})
            with pytest.raises(PxliteError):
                db.get_table(bad)
        pxl.check(db=db)
    finally:
        db.db.sqlite.exec_trace = None
    assert len(statements) > 30
    leaked = [s for s in statements if "PXMARK" in s]
    assert not leaked, leaked


def test_injection_shaped_names_and_values_round_trip(db, jpegs, tmp_path):
    """Names are refused unless they are identifiers (so none of these get in); values, paths,
    URLs, JSON and literals in expressions are bound as data and come back byte for byte."""
    for bad in INJECTIONS:
        if valid_path(bad):
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
# A database file from someone else


def _craft(path: Path, sql: str, params=()) -> None:
    c = apsw.Connection(str(path))
    c.execute(sql, params)
    c.close()


def test_opening_a_crafted_database_deletes_nothing_foreign(tmp_path):
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    p = tmp_path / "shared.pxl"
    pxl.connect(p).close()
    _craft(p, "INSERT INTO px_pending_deletes(uri) VALUES (?)", (victim.as_uri(),))
    pxl.connect(p).close()
    assert victim.exists()


def test_check_fix_on_a_crafted_database_deletes_nothing_foreign(tmp_path):
    home = tmp_path / "user"
    (home / "Documents").mkdir(parents=True)
    victim = home / "Documents" / "thesis.txt"
    victim.write_text("keep me")
    p = tmp_path / "shared.pxl"
    pxl.connect(p).close()
    _craft(p, "INSERT INTO px_media_locations(table_uid, prefix) VALUES (?, ?)",
           ("Documents", home.as_uri() + "/"))
    with pxl.connect(p) as db:
        pxl.check(db=db, fix=True)
    assert victim.exists()


def test_crafted_expression_never_calls_unregistered_functions(tmp_path, monkeypatch):
    """A computed column names its function by qualified name; only functions registered with
    @pxl.udf (or built in) can run. Naming any other callable gives a per-column error."""
    mod = tmp_path / "mods"
    mod.mkdir()
    marker = tmp_path / "called"
    (mod / "pxl_shared_mod.py").write_text(
        f"def boom(x):\n    open({str(marker)!r}, 'w').write('called')\n    return 1\n")
    monkeypatch.syspath_prepend(str(mod))
    p = tmp_path / "shared.pxl"
    with pxl.connect(p) as db:
        t = db.create_table("t", {"n": pxl.Int})
        t.add_computed_column(m=t.n + 1)
    for name in ("pxl_shared_mod.boom", "os.system", "builtins.eval", "subprocess.run"):
        expr = json.dumps({"call": name, "args": [{"col": 1}], "kwargs": {}})
        _craft(p, "UPDATE px_columns SET expr = ? WHERE name = 'm'", (expr,))
        with pxl.connect(p) as db:
            t = db.get_table("t")
            assert name in repr(t) or "cannot be found" in repr(t)
            with pytest.raises(PxliteError):
                t.insert(n=1)
            assert t.insert([{"n": 2}], on_error="ignore").num_errors == 1
            row = t.where(t.n == 2).select(t.m, t.m.errortype).collect()[-1]
            assert row["m"] is None and row["m_errortype"]
    assert not marker.exists()
