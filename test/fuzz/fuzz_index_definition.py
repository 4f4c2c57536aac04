#!/usr/bin/python3
"""Fuzz the definition argument of perfkit.create_index_concurrently(text).

Mutates valid CREATE INDEX statements on table fz_t (token deletions, insertions, swaps, random
characters, very long identifiers, nested parentheses, second statements, other DDL, CONCURRENTLY
variants, predicates with function calls, INCLUDE, USING, WITH, quotes, comments) and checks for
each one, with a fixed seed so that a run can be repeated:

  - the call succeeds, and then the request (perfkit.index_builds) is one 'create' request on
    fz_t by the calling role holding exactly the text sent, or it fails with an SQLSTATE outside
    class XX (internal errors);
  - the connection survives (same backend pid after every call);
  - no catalog object appears or disappears (a fingerprint of pg_class, pg_proc, pg_namespace,
    pg_type, pg_operator, pg_trigger, pg_rewrite, pg_constraint, pg_event_trigger, pg_authid
    and pg_database, taken right after each call while its request is still uncommitted);
  - at the end, a sample of the accepted definitions is requested for real and built by
    perfkit's background builder: the only new relations are indexes of fz_t;
  - the checkpointer is the same process at the end (a backend crash restarts it; checked
    when the role may see it, e.g. with pg_read_all_stats); with
    --datadir the postmaster pid is the same; with --logfile the server log has no "terminated
    by signal", "was terminated", PANIC or TRAP (failed assertion) line.

Each call runs inside a transaction that is rolled back.  Run it as a non-superuser role that
owns fz_t (the TAP test test/t/040_fuzz_index_definition.pl sets this up, with --setup):

  /usr/bin/python3 test/fuzz/fuzz_index_definition.py --host /tmp/sock --port 5432 \\
      --dbname postgres --user fuzzer --iterations 100000 --seed 7

Exit status 0 when every check passed; 1 with the failing case printed otherwise.
"""

import argparse
import os
import random
import re
import sys
import time

import psycopg2
import psycopg2.extensions

TABLE = "fz_t"

SETUP_SQL = """
CREATE TABLE fz_t (a int, b text, c jsonb, d timestamptz, e int, r int4range);
INSERT INTO fz_t SELECT g, 'b' || g, jsonb_build_object('k', g), now(), g % 7, int4range(g, g + 10)
  FROM generate_series(1, 100) g;
"""

SEEDS = [
    "CREATE INDEX fz_i ON fz_t (a)",
    "CREATE UNIQUE INDEX fz_i ON fz_t (a, b)",
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS fz_i ON fz_t USING hash (b)",
    "CREATE INDEX fz_i ON ONLY fz_t (lower(b)) WHERE a > 0",
    "CREATE INDEX ON fz_t USING gin (c jsonb_path_ops)",
    "CREATE INDEX fz_i ON fz_t (a DESC NULLS LAST, b COLLATE \"C\" text_pattern_ops) INCLUDE (d)",
    "CREATE INDEX fz_i ON fz_t USING brin (e) WITH (pages_per_range = 16)",
    "CREATE INDEX fz_i ON public.fz_t ((a + 1), (b || 'x')) WHERE b IS NOT NULL AND a <> 3",
    "CREATE INDEX fz_i ON fz_t USING gist (r)",
    "CREATE UNIQUE INDEX fz_i ON fz_t (a) NULLS NOT DISTINCT",
    "CREATE INDEX \"Fz I\" ON fz_t (a) TABLESPACE pg_default",
    "CREATE INDEX fz_i ON fz_t USING spgist (b) WHERE length(b) > 2",
    "create index fz_i on fz_t (upper(b), (c->>'k')) with (fillfactor = 70)",
    "CREATE INDEX fz_i ON fz_t (a) WHERE b = $q$it's; DROP TABLE fz_t; --$q$",
]

VOCABULARY = [
    "CREATE", "INDEX", "UNIQUE", "CONCURRENTLY", "IF", "NOT", "EXISTS", "ON", "ONLY", "USING",
    "WHERE", "INCLUDE", "WITH", "TABLESPACE", "NULLS", "DISTINCT", "FIRST", "LAST", "ASC", "DESC",
    "COLLATE", "AND", "OR", "IS", "NULL", "TRUE", "FALSE", "SELECT", "FROM", "DROP", "TABLE",
    "ALTER", "DELETE", "INSERT", "INTO", "VALUES", "RETURNING", "UNION", "LIMIT", "CASCADE",
    ";", "(", ")", ",", ".", "::", "=", "<>", "+", "-", "*", "/", "||", "->>", "@>", "~",
    "--", "/*", "*/", "'", '"', "$$", "$q$", "E'\\''", "U&\"\\0061\"", "U&'\\0000'", "B'1'",
    "0", "1", "-1", "2147483648", "9223372036854775808", "1e400", "NaN", "'x'", "'2020-01-01'",
    "a", "b", "c", "d", "e", "r", "xmin", "ctid", "tableoid", "nope", "fz_t", "fz_i", "public",
    "pg_class", "pg_catalog", "perfkit", "perfkit.index_build_requests", "pg_temp",
    "btree", "hash", "gist", "gin", "brin", "spgist", "heap", "nope_am",
    "int4_ops", "text_ops", "jsonb_ops", "text_pattern_ops", "nope_ops", "\"C\"", "\"POSIX\"",
    "lower", "upper", "abs", "md5", "length", "coalesce", "nullif", "greatest", "now",
    "random", "pg_sleep", "pg_terminate_backend", "set_config", "pg_read_file", "nextval",
    "txid_current", "current_user", "pg_catalog.lower", "int4range",
]

PREDICATES = [
    "lower(b) = 'x'", "pg_sleep(1) IS NULL", "random() > 0.5", "a = ANY(ARRAY[1, 2])",
    "(SELECT 1) = 1", "length(b) > 3", "b ~ '^x'", "pg_terminate_backend(pg_backend_pid())",
    "current_user = 'x'", "now() > '2020-01-01'", "a::text::int > 0",
    "jsonb_typeof(c) = 'object'", "int4range(a, a + 1) @> 3", "txid_current() > 0",
    "nextval('fz_seq') > 0", "set_config('search_path', 'x', false) IS NULL",
    "pg_read_file('/etc/passwd') IS NULL", "EXISTS (SELECT 1 FROM pg_class)",
    "a IN (SELECT a FROM fz_t)", "count(*) > 1", "row_number() OVER () > 1",
    "generate_series(1, 2) > 1", "$1 > 0", "a > 0 AND b IS NOT NULL OR c ? 'k'",
    "abs(a) < 2147483647", "md5(b) <> ''", "coalesce(a, 0) = nullif(e, 3)",
    "greatest(a, e, 3) = 3", "d < '2030-01-01'::timestamptz", "pg_catalog.upper(b) <> 'X'",
    "xmin <> '0'", "ctid > '(0,1)'", "b COLLATE \"C\" > 'a'", "a / 0 > 1", "1 / 0 > 1",
    "'x' || repeat('y', 100000000) = b", "fz_t.a > 0", "other.a > 0",
]

OTHER_STATEMENTS = [
    "DROP TABLE fz_t", "DROP INDEX fz_i", "ALTER TABLE fz_t ADD COLUMN z int",
    "CREATE TABLE fz_evil (x int)", "REINDEX TABLE fz_t", "VACUUM fz_t", "SELECT 1",
    "DO $$ BEGIN EXECUTE 'DROP TABLE fz_t'; END $$", "CREATE SCHEMA fz_s",
    "CREATE MATERIALIZED VIEW fz_mv AS SELECT 1", "CREATE STATISTICS fz_st ON a, e FROM fz_t",
    "COMMENT ON TABLE fz_t IS 'x'", "GRANT ALL ON fz_t TO PUBLIC", "TRUNCATE fz_t",
    "CREATE FUNCTION fz_f() RETURNS int LANGUAGE sql AS 'SELECT 1'", "COPY fz_t TO STDOUT",
    "SET ROLE postgres", "RESET ALL", "COMMIT", "ROLLBACK", "BEGIN", "PREPARE TRANSACTION 'x'",
    "LISTEN x", "NOTIFY x", "CHECKPOINT", "LOCK fz_t", "CLUSTER fz_t USING fz_i",
    "CREATE INDEX fz_j ON pg_class (relname)", "CREATE INDEX fz_j ON perfkit.index_build_requests (kind)",
    "CREATE INDEX fz_j ON fz_t (a); CREATE INDEX fz_k ON fz_t (b)",
]

TOKEN_RE = re.compile(
    r"""\s+|--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'|"(?:[^"]|"")*"|\$\w*\$.*?\$\w*\$|[A-Za-z_][A-Za-z0-9_$]*"""
    r"""|\d+(?:\.\d+)?|::|->>|\|\||<>|>=|<=|@>|.""",
    re.S)


def tokens(text):
    """Split a definition into rough SQL tokens (whitespace kept as tokens)."""
    return TOKEN_RE.findall(text)


def random_chars(rng, n):
    """n random characters: ASCII (printable and control), Latin, CJK, emoji; never NUL."""
    ranges = [(1, 31), (32, 126), (127, 127), (0xA0, 0x24F), (0x4E00, 0x4E80), (0x1F600, 0x1F64F)]
    out = []
    for _ in range(n):
        lo, hi = rng.choice(ranges)
        out.append(chr(rng.randint(lo, hi)))
    return "".join(out)


def mutate(rng, text):
    """Apply one random mutation to a definition."""
    toks = tokens(text)
    op = rng.randrange(17)
    i = rng.randrange(len(toks) + 1)
    j = rng.randrange(len(toks) + 1)
    if op == 0 and toks:  # delete a token
        del toks[min(i, len(toks) - 1)]
    elif op == 1 and toks:  # duplicate a token
        k = min(i, len(toks) - 1)
        toks.insert(k, toks[k])
    elif op == 2 and len(toks) > 1:  # swap two tokens
        a, b = min(i, len(toks) - 1), min(j, len(toks) - 1)
        toks[a], toks[b] = toks[b], toks[a]
    elif op == 3:  # insert a keyword, name or punctuation
        toks.insert(i, " " + rng.choice(VOCABULARY) + " ")
    elif op == 4:  # random characters
        toks.insert(i, random_chars(rng, rng.randint(1, 8)))
    elif op == 5:  # a very long identifier, plain or quoted
        n = rng.choice([63, 64, 200, 10000, 100000])
        name = rng.choice(["x" * n, '"' + "y" * n + '"', '"' + "é" * (n // 2) + '"'])
        if "fz_i" in text and rng.random() < 0.6:
            return text.replace("fz_i", name, 1)
        toks.insert(i, " " + name + " ")
    elif op == 6:  # nested parentheses, balanced or not
        depth = rng.choice([1, 2, 10, 100, 1000, 5000])
        inner = rng.choice(["a", "(a + 1)", "lower(b)", "true", ""])
        left = "(" * depth
        right = ")" * (depth if rng.random() < 0.7 else rng.randint(0, depth))
        toks.insert(i, left + inner + right)
    elif op == 7:  # a second statement after the first
        sep = rng.choice([";", "; ", ";;", " ;\n", ";--\n", "/* x */;"])
        return text + sep + rng.choice(OTHER_STATEMENTS + [""])
    elif op == 8:  # other DDL instead
        return rng.choice(OTHER_STATEMENTS)
    elif op == 9:  # CONCURRENTLY: add, move, remove
        if "CONCURRENTLY" in text and rng.random() < 0.5:
            return text.replace("CONCURRENTLY", "", 1)
        toks.insert(i, " CONCURRENTLY ")
    elif op == 10:  # a predicate with function calls
        pred = rng.choice(PREDICATES)
        if " WHERE " in text and rng.random() < 0.5:
            return text + rng.choice([" AND ", " OR "]) + pred
        return text + " WHERE " + pred
    elif op == 11:  # INCLUDE
        return text + " INCLUDE (" + rng.choice(["d", "a, a", "(a + 1)", "nope", "ctid", "c", ""]) + ")"
    elif op == 12:  # USING method
        method = rng.choice(["btree", "hash", "gist", "gin", "brin", "spgist", "heap", "nope", '"BTREE"'])
        if " USING " in text:
            return re.sub(r" USING \S+", " USING " + method, text, count=1)
        return text.replace(" fz_t ", " fz_t USING " + method + " ", 1)
    elif op == 13:  # an unmatched quote or dollar quote
        toks.insert(i, rng.choice(["'", '"', "$$", "$a$", "E'", "U&'", "/*", "*/", "--", "\\"]))
    elif op == 14:  # storage options
        opt = rng.choice(["fillfactor = %d" % rng.choice([-1, 0, 10, 100, 101, 2 ** 31, 2 ** 63]),
                          "deduplicate_items = off", "pages_per_range = 0", "fastupdate = maybe",
                          "foo = bar", "toast.fillfactor = 50", "fillfactor = 'x'", ""])
        return text + " WITH (" + opt + ")"
    elif op == 15:  # white space, comments and case
        toks.insert(i, rng.choice(["\n", "\t", "  ", " /* c */ ", " -- c\n", "\r\n", "\u00a0"]))
        if rng.random() < 0.3:
            return "".join(toks).swapcase()
    else:  # replace a name with another name
        if toks:
            k = min(i, len(toks) - 1)
            if re.match(r"[A-Za-z_]", toks[k]):
                toks[k] = rng.choice(VOCABULARY)
    return "".join(toks)


def generate(rng):
    """A seed definition with one to four mutations (sometimes none)."""
    text = rng.choice(SEEDS)
    for _ in range(rng.choice([0, 1, 1, 1, 2, 2, 3, 4])):
        text = mutate(rng, text)
    return text


def short(text, n=300):
    """The start of a text, for messages."""
    text = text.replace("\n", "\\n")
    return text if len(text) <= n else text[:n] + "... (%d chars)" % len(text)


FINGERPRINT_SQL = """
SELECT ROW((SELECT count(*) FROM pg_catalog.pg_class), (SELECT count(*) FROM pg_catalog.pg_proc),
       (SELECT count(*) FROM pg_catalog.pg_namespace), (SELECT count(*) FROM pg_catalog.pg_type),
       (SELECT count(*) FROM pg_catalog.pg_operator), (SELECT count(*) FROM pg_catalog.pg_trigger),
       (SELECT count(*) FROM pg_catalog.pg_rewrite), (SELECT count(*) FROM pg_catalog.pg_constraint),
       (SELECT count(*) FROM pg_catalog.pg_event_trigger), (SELECT count(*) FROM pg_catalog.pg_roles),
       (SELECT count(*) FROM pg_catalog.pg_database), (SELECT count(*) FROM pg_catalog.pg_attribute))::text
"""


def checkpointer_pid(cur):
    """The checkpointer's pid (a backend crash restarts it), or None when the role cannot see it."""
    cur.execute("SELECT pid FROM pg_catalog.pg_stat_activity WHERE backend_type = 'checkpointer'")
    row = cur.fetchone()
    return row[0] if row else None


class Failure(Exception):
    """A check failed."""


def connect(args):
    """A connection with the fuzzer's settings."""
    conn = psycopg2.connect(host=args.host, port=args.port, dbname=args.dbname, user=args.user)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SET statement_timeout = '20s'")
    return conn


def one(cur, sql, params=None):
    """The first column of the first row of a query."""
    cur.execute(sql, params)
    return cur.fetchone()[0]


def postmaster_pid(datadir):
    """The pid in postmaster.pid, or None without a data directory."""
    if not datadir:
        return None
    with open(os.path.join(datadir, "postmaster.pid")) as f:
        return int(f.readline())


def log_problems(logfile, offset):
    """Crash and assertion lines written to the server log since offset."""
    if not logfile:
        return []
    with open(logfile, "rb") as f:
        f.seek(offset)
        text = f.read().decode("utf-8", "replace")
    return [line for line in text.splitlines()
            if "terminated by signal" in line or "was terminated" in line
            or line.startswith("TRAP:") or "PANIC:" in line]


def check_call(cur, definition, backend, baseline, table_oid, role):
    """Request one definition in a rolled-back transaction and check the outcome."""
    cur.execute("BEGIN")
    before = one(cur, "SELECT count(*) FROM perfkit.index_builds")
    try:
        cur.execute("SELECT perfkit.create_index_concurrently(%s)", (definition,))
        request_id = cur.fetchone()[0]
        error = None
    except psycopg2.Error as e:
        error = e
    if error is not None:
        if error.pgcode is None:
            raise Failure("no SQLSTATE (connection lost?): %s" % error)
        if error.pgcode.startswith("XX"):
            raise Failure("internal error %s: %s" % (error.pgcode, error.pgerror))
        cur.execute("ROLLBACK")
        if one(cur, "SELECT pg_backend_pid()") != backend:
            raise Failure("the connection was reset")
        if one(cur, FINGERPRINT_SQL) != baseline:
            raise Failure("the catalogs changed after a failed call")
        return error.pgcode
    cur.execute("SELECT kind, relation::oid, definition, requested_by, status"
                "  FROM perfkit.index_builds WHERE id = %s", (request_id,))
    row = cur.fetchone()
    after = one(cur, "SELECT count(*) FROM perfkit.index_builds")
    fingerprint = one(cur, FINGERPRINT_SQL)
    cur.execute("ROLLBACK")
    if row is None:
        raise Failure("accepted, but request %s is not in perfkit.index_builds" % request_id)
    kind, relid, stored, requested_by, status = row
    if kind != "create" or relid != table_oid or stored != definition or requested_by != role \
            or status != "pending":
        raise Failure("accepted, but the request is %r" % (row,))
    if after != before + 1:
        raise Failure("accepted, but %d requests appeared" % (after - before))
    if fingerprint != baseline:
        raise Failure("accepted, and the catalogs changed at request time")
    if one(cur, "SELECT pg_backend_pid()") != backend:
        raise Failure("the connection was reset")
    return "ok"


def build_sample(args, conn, accepted, table_oid):
    """Request a sample of accepted definitions for real; the builder may add only indexes of fz_t."""
    cur = conn.cursor()
    before_rel = one(cur, "SELECT array_agg(oid ORDER BY oid)::text FROM pg_class")
    others = ("SELECT ROW((SELECT count(*) FROM pg_proc), (SELECT count(*) FROM pg_namespace),"
              " (SELECT count(*) FROM pg_type), (SELECT count(*) FROM pg_operator),"
              " (SELECT count(*) FROM pg_trigger), (SELECT count(*) FROM pg_rewrite),"
              " (SELECT count(*) FROM pg_event_trigger), (SELECT count(*) FROM pg_roles))::text")
    before_other = one(cur, others)
    first_id = one(cur, "SELECT coalesce(max(id), 0) FROM perfkit.index_builds")
    requested = 0
    for definition in accepted:
        try:
            cur.execute("SELECT perfkit.create_index_concurrently(%s)", (definition,))
            requested += 1
        except psycopg2.Error as e:
            if e.pgcode is None or e.pgcode.startswith("XX"):
                raise Failure("sample request failed with %s: %s" % (e.pgcode, e))
    cur.execute("CALL perfkit.wait_for_index_builds('3 minutes')")
    if cur.fetchone()[0] is not True:
        raise Failure("the sample's builds did not finish within 3 minutes")
    cur.execute("SELECT status, count(*) FROM perfkit.index_builds WHERE id > %s GROUP BY 1 ORDER BY 1",
                (first_id,))
    statuses = dict(cur.fetchall())
    if set(statuses) - {"succeeded", "skipped", "failed"}:
        raise Failure("unexpected build statuses %r" % statuses)
    cur.execute("SELECT c.relname, c.relkind, i.indrelid FROM pg_class c"
                "  LEFT JOIN pg_index i ON i.indexrelid = c.oid"
                " WHERE c.oid <> ALL (%s::oid[])", (before_rel,))
    new = cur.fetchall()
    bad = [r for r in new if r[1] != "i" or r[2] != table_oid]
    if bad:
        raise Failure("the builder created relations other than indexes of fz_t: %r" % bad)
    if one(cur, others) != before_other:
        raise Failure("the builds changed catalogs other than pg_class")
    if one(cur, "SELECT count(*) FROM pg_class WHERE oid = %s", (table_oid,)) != 1:
        raise Failure("fz_t is gone")
    for name, _, _ in new:
        cur.execute("DROP INDEX %s" % psycopg2.extensions.quote_ident(name, cur))
    return requested, statuses, len(new)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default=os.environ.get("PGHOST"))
    parser.add_argument("--port", default=os.environ.get("PGPORT", "5432"))
    parser.add_argument("--dbname", default=os.environ.get("PGDATABASE", "postgres"))
    parser.add_argument("--user", default=os.environ.get("PGUSER"))
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=20240611)
    parser.add_argument("--sample", type=int, default=40,
                        help="accepted definitions requested for real and built at the end")
    parser.add_argument("--datadir", help="data directory: the postmaster pid must not change")
    parser.add_argument("--logfile", help="server log: no crash or failed assertion may appear")
    parser.add_argument("--setup", action="store_true",
                        help="create table fz_t first (as the connecting role)")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    pm_pid = postmaster_pid(args.datadir)
    log_offset = os.path.getsize(args.logfile) if args.logfile else 0
    conn = connect(args)
    cur = conn.cursor()
    if args.setup:
        cur.execute(SETUP_SQL)
    table_oid = one(cur, "SELECT %s::regclass::oid", (TABLE,))
    role = one(cur, "SELECT current_user")
    backend = one(cur, "SELECT pg_backend_pid()")
    checkpointer = checkpointer_pid(cur)
    baseline = one(cur, FINGERPRINT_SQL)

    outcomes = {}
    accepted = []
    started = time.monotonic()
    for n in range(1, args.iterations + 1):
        definition = generate(rng)
        try:
            outcome = check_call(cur, definition, backend, baseline, table_oid, role)
        except (Failure, psycopg2.Error) as e:
            print("FAIL at iteration %d (seed %d): %s\n  definition: %s"
                  % (n, args.seed, e, short(definition)), file=sys.stderr)
            for line in log_problems(args.logfile, log_offset):
                print("  log: " + line, file=sys.stderr)
            return 1
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if outcome == "ok" and len(accepted) < args.sample and definition not in accepted:
            accepted.append(definition)
    elapsed = time.monotonic() - started

    try:
        requested, statuses, built = build_sample(args, conn, accepted, table_oid)
    except (Failure, psycopg2.Error) as e:
        print("FAIL while building the sample: %s" % e, file=sys.stderr)
        return 1

    problems = log_problems(args.logfile, log_offset)
    if problems:
        print("FAIL: the server log shows crashes or failed assertions:", file=sys.stderr)
        for line in problems:
            print("  log: " + line, file=sys.stderr)
        return 1
    if checkpointer is not None and checkpointer_pid(conn.cursor()) != checkpointer:
        print("FAIL: the checkpointer changed (the server went through crash recovery)", file=sys.stderr)
        return 1
    if pm_pid is not None and postmaster_pid(args.datadir) != pm_pid:
        print("FAIL: the postmaster pid changed (server restarted)", file=sys.stderr)
        return 1

    classes = ", ".join("%s %d" % (k, v) for k, v in sorted(outcomes.items(), key=lambda kv: -kv[1]))
    print("fuzz_index_definition: seed %d, %d definitions in %.1f s (%.0f/s): %d accepted, %d rejected"
          % (args.seed, args.iterations, elapsed, args.iterations / max(elapsed, 1e-9),
             outcomes.get("ok", 0), args.iterations - outcomes.get("ok", 0)))
    print("outcomes by SQLSTATE: " + classes)
    print("sample built by the background builder: %d requested, statuses %r, %d new indexes, all on %s"
          % (requested, statuses, built, TABLE))
    print("ok: no internal error, no crash, no object other than indexes of %s" % TABLE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
