#!/usr/bin/env bash
# test/valgrind.sh — `make valgrind`: the regression suite, the isolation spec and the background
# workers once under valgrind's memcheck; fails when an error's stack contains a perfkit frame.
#
# perfkit is built with its Assert()s and -O0 -g and installed into a private copy of PostgreSQL 15
# (test/lib.sh).  A throwaway cluster (test/regress.conf settings) is started with its postmaster
# under `valgrind --trace-children=yes`: every process it forks (backends, background workers,
# autovacuum, checkpointer, ...) is traced, one log per process (vg.<pid>.log).  Then:
#   1. pg_regress --use-existing runs the REGRESS list of `make print-tests`, and
#      pg_isolation_regress the ISOLATION list (their diffs are reported, not required to pass:
#      the goal here is valgrind's errors, and timing-sensitive outputs may differ under valgrind);
#   2. background workers: a perfkit.create_index_concurrently() request and the index advisor's
#      create_recommended_indexes() complete; with a redis-server on 127.0.0.1 (a free port) and
#      perfkit.redis_url set, hot statements (simple and extended protocol) are pushed and an UPDATE
#      invalidates them;
#   3. the cluster is restarted once (statistics saved at shutdown, loaded at start-up), then stopped.
# Finally the logs are scanned: every error whose stack has a perfkit frame (perfkit.so, a file of
# src/, or a function pk_* / perfkit_*) is printed with its stack and makes the script exit 1; other
# errors (PostgreSQL's own, without USE_VALGRIND) are summarized without failing.  Known PostgreSQL
# false positives are suppressed by test/valgrind.supp.
#
# PostgreSQL is the Debian build, not a USE_VALGRIND one: palloc'd chunks inside a memory context
# block are not known to memcheck, so overruns *within* a context block are not seen; reads of
# uninitialised memory, overruns of malloc'd memory (context blocks, hiredis, libc) and invalid
# frees are.
#
# Environment: PG_CONFIG, PK_KEEP=1 (keep the temp dir), PK_VG_OUT (directory for the kept logs and
# the report, default a new /tmp/perfkit-valgrind.XXXXXX), PK_VG_ERROR_EXITCODE (default 128: a
# process with errors exits with it, so the postmaster treats it as a crash and the server log shows
# it; 0: processes exit normally), PK_VG_GEN_SUPP=1 (print suppression entries into the logs, to
# extend test/valgrind.supp), PK_VG_REGRESS (override the list of regress tests).
# Needs valgrind (installed when run as root) and redis-server (test/lib.sh's packages).

set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# This script never touches the system PostgreSQL: it builds with -O0 and assertions.
PK_SYSTEM_INSTALL=0
# -O0 -g: exact stacks and line numbers in valgrind's reports (Makefile.global appends COPT to CFLAGS).
export COPT="-O0 -g -fno-omit-frame-pointer"

PORT=5432                   # unix socket only, in our temp dir: any port works
ERROR_EXITCODE=${PK_VG_ERROR_EXITCODE:-128}
START_TIME=$(date +%s)
REDIS_PID=

# Print the elapsed time since the start as "12m34s".
vg_elapsed() {
	local s=$(($(date +%s) - START_TIME))
	printf '%dm%02ds' $((s / 60)) $((s % 60))
}

# Run psql against the cluster as the cluster user (extra arguments are passed on).
vg_psql() {
	pk_as_cluster_user psql -X -q -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -d postgres "$@"
}

# Print a query's single value: vg_value SQL.
vg_value() {
	vg_psql -At -c "$1"
}

# Poll until SQL returns 't' or SECONDS pass: vg_poll SECONDS SQL.  Fails on timeout (or without a postmaster).
vg_poll() {
	local deadline=$(($(date +%s) + $1))
	while (($(date +%s) < deadline)) && kill -0 "$PM_PID" 2>/dev/null; do
		[[ $(vg_value "$2" 2>/dev/null || true) == t ]] && return 0
		sleep 1
	done
	return 1
}

# Print the end of a log and fail: vg_fail MESSAGE LOGFILE.
vg_fail() {
	pk_err "$1"
	if [[ -f ${2:-} ]]; then tail -n 40 "$2" >&2; fi
	exit 1
}

# Start the postmaster under valgrind and wait until it accepts connections (valgrind is slow).
vg_start() {
	local supp_gen=no
	[[ ${PK_VG_GEN_SUPP:-0} == 1 ]] && supp_gen=all
	pk_say "starting the postmaster under valgrind (logs: $VGLOG/vg.<pid>.log)"
	pk_as_cluster_user valgrind --tool=memcheck --trace-children=yes --leak-check=no \
		--track-origins=yes --read-var-info=no --num-callers=40 --error-limit=no \
		--error-exitcode="$ERROR_EXITCODE" --gen-suppressions="$supp_gen" \
		--suppressions="$PK_SRC/test/valgrind.supp" --fullpath-after= \
		--error-markers=VALGRINDERROR-BEGIN,VALGRINDERROR-END \
		--log-file="$VGLOG/vg.%p.log" \
		"$PK_BINDIR/postgres" -D "$DATA" >>"$SERVER_LOG" 2>&1 &
	PM_PID=$!
	local deadline=$(($(date +%s) + 600))
	until pk_as_cluster_user pg_isready -q -h "$SOCK" -p "$PORT"; do
		if ! kill -0 "$PM_PID" 2>/dev/null; then
			pk_err "the postmaster exited during start-up"
			tail -n 20 "$SERVER_LOG" >&2
			return 1
		fi
		if (($(date +%s) >= deadline)); then
			pk_err "the postmaster did not accept connections in 600s"
			return 1
		fi
		sleep 2
	done
	pk_say "postmaster up ($(vg_elapsed))"
}

# Stop the postmaster (fast shutdown), if it runs, and record its exit status.
vg_stop() {
	kill -0 "$PM_PID" 2>/dev/null || return 0
	pk_say "stopping the postmaster"
	pk_as_cluster_user pg_ctl -D "$DATA" -w -t 900 -s -m fast stop || pk_err "pg_ctl stop failed"
	local rc=0
	wait "$PM_PID" || rc=$?
	PM_EXIT+=("$rc")
	pk_say "postmaster exited with status $rc ($(vg_elapsed))"
}

# Exit hook of lib.sh's cleanup: stop redis-server if it still runs.
# shellcheck disable=SC2317  # called from the EXIT trap (pk_cleanup in lib.sh)
pk_exit_hook() {
	if [[ -n $REDIS_PID ]]; then kill "$REDIS_PID" 2>/dev/null || true; fi
}

# Run a step of the exercise; a failure is noted (WORKERS_OK=0), not fatal: the logs are scanned anyway.
vg_check() {
	if "$@"; then return 0; fi
	pk_err "exercise: check failed: ${*: -1}"
	WORKERS_OK=0
}

# Print a free TCP port on 127.0.0.1.
vg_free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# --- prerequisites ----------------------------------------------------------------------------
pk_traps
if ! command -v valgrind >/dev/null 2>&1; then
	if pk_is_root; then
		pk_say "installing valgrind"
		DEBIAN_FRONTEND=noninteractive apt-get update </dev/null
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends valgrind </dev/null
	else
		pk_err "valgrind is needed: sudo apt-get install -y valgrind"
		exit 2
	fi
fi
pk_deps
pk_build
pk_workdir
PK_ASSERTS=1 pk_temp_install
pk_stage_tests

OUT=${PK_VG_OUT:-$(mktemp -d /tmp/perfkit-valgrind.XXXXXX)}
mkdir -p "$OUT"
DATA=$PK_WORK/vg_data
SOCK=$PK_WORK/vg_sock
VGLOG=$PK_WORK/vglogs
SERVER_LOG=$PK_WORK/server.log
PM_EXIT=()
PGXS_DIR=$(realpath "$(dirname "$("$PG_CONFIG" --pgxs)")/../..")
PRINT_TESTS=$(make -C "$PK_ROOT" --no-print-directory -s print-tests PG_CONFIG="$PG_CONFIG")
read -r -a REGRESS <<<"${PK_VG_REGRESS:-$(sed -n 's/^REGRESS=//p' <<<"$PRINT_TESTS")}"
read -r -a ISOLATION <<<"$(sed -n 's/^ISOLATION=//p' <<<"$PRINT_TESTS")"

pk_as_cluster_user mkdir -p "$VGLOG"
pk_as_cluster_user touch "$SERVER_LOG"
pk_say "creating the cluster in $DATA"
pk_init_cluster "$DATA" "$SOCK" "$PORT" <<EOF || vg_fail "initdb failed" "$PK_WORK/initdb.log"
# test/regress.conf
$(cat "$PK_SRC/test/regress.conf")
# valgrind run
fsync = off
# loading llvmjit.so trips a glibc false positive in memcheck (strncmp in dl-load.c's is_dst),
# and the process with an error exits as if it crashed; JIT is PostgreSQL's, not perfkit's
jit = off
max_connections = 30
log_line_prefix = '%m [%p] '
EOF

# --- 1. the regression suite and the isolation spec -------------------------------------------
PM_PID=
WORKERS_OK=1
vg_start || vg_fail "the server did not start under valgrind" "$SERVER_LOG"
# From here on a failing step is noted and the run goes on, so that the valgrind logs are always
# scanned: an error in perfkit code may well make a backend crash (--error-exitcode) and a step fail.
set +e
# pg_regress --use-existing neither creates the databases nor sets what its create_database() sets
pk_say "creating the databases regression and isolation_regression"
for db in regression isolation_regression; do
	vg_check vg_psql <<SQL
CREATE DATABASE $db TEMPLATE template0;
ALTER DATABASE $db SET lc_messages TO 'C';
ALTER DATABASE $db SET lc_monetary TO 'C';
ALTER DATABASE $db SET lc_numeric TO 'C';
ALTER DATABASE $db SET lc_time TO 'C';
ALTER DATABASE $db SET bytea_output TO 'hex';
ALTER DATABASE $db SET timezone_abbreviations TO 'Default';
SQL
done
REGRESS_RC=0
pk_say "pg_regress: ${REGRESS[*]}"
PK_CWD=$PK_SRC pk_as_cluster_user "$PGXS_DIR/src/test/regress/pg_regress" --use-existing \
	--host="$SOCK" --port="$PORT" --bindir="$PK_BINDIR" --inputdir="$PK_SRC" \
	--outputdir="$PK_WORK/regress_out" "${REGRESS[@]}" 2>&1 | tee "$PK_WORK/regress.log" || REGRESS_RC=$?
pk_say "pg_regress done ($(vg_elapsed))"
ISOLATION_RC=0
if [[ ${#ISOLATION[@]} -gt 0 && -z ${PK_VG_REGRESS:-} ]]; then
	pk_say "pg_isolation_regress: ${ISOLATION[*]}"
	PK_CWD=$PK_SRC pk_as_cluster_user "$PGXS_DIR/src/test/isolation/pg_isolation_regress" --use-existing \
		--host="$SOCK" --port="$PORT" --bindir="$PK_BINDIR" --inputdir="$PK_SRC/test/isolation" \
		--outputdir="$PK_WORK/iso_out" "${ISOLATION[@]}" 2>&1 | tee "$PK_WORK/isolation.log" || ISOLATION_RC=$?
	pk_say "pg_isolation_regress done ($(vg_elapsed))"
fi
for d in regress_out iso_out; do
	if [[ -s $PK_WORK/$d/regression.diffs ]]; then cp "$PK_WORK/$d/regression.diffs" "$OUT/$d.diffs"; fi
done

# --- 2. background workers: index builds, the advisor, the Redis pusher ------------------------

pk_say "background workers: index builds and the index advisor"
vg_check vg_psql <<'SQL'
ALTER SYSTEM SET perfkit.advisor_sample_rate = 1;
SELECT pg_reload_conf();
CREATE EXTENSION IF NOT EXISTS perfkit;
CREATE TABLE vg_t (id int PRIMARY KEY, x int, y text, z int);
INSERT INTO vg_t SELECT g, g % 100, 'v' || g, g % 7 FROM generate_series(1, 20000) g;
ANALYZE vg_t;
SELECT perfkit.create_index_concurrently('CREATE INDEX vg_t_x ON vg_t (x)');
CALL perfkit.wait_for_index_builds('10 minutes');
SQL
vg_check test "$(vg_value "SELECT string_agg(status, ',') FROM perfkit.index_builds WHERE index_name = 'vg_t_x'")" == succeeded
vg_check test "$(vg_value "SELECT count(*) FROM pg_index WHERE indexrelid = 'vg_t_x'::regclass AND indisvalid")" == 1
# statements the advisor can improve with an index on y (and one with parameters via pgbench)
vg_check vg_psql -c "SELECT perfkit.reset()" >/dev/null
vg_check vg_psql >/dev/null < <(for i in $(seq 1 12); do echo "SELECT id, z FROM vg_t WHERE y = 'v$((i * 97))';"; done)
pk_as_cluster_user tee "$PK_WORK/by_y.sql" >/dev/null <<'EOF'
\set k random(1, 20000)
SELECT id, x FROM vg_t WHERE y = 'v' || :k;
EOF
pk_as_cluster_user pgbench -n -t 10 -c 1 -M prepared -h "$SOCK" -p "$PORT" -f "$PK_WORK/by_y.sql" postgres \
	>"$PK_WORK/pgbench_advisor.log" 2>&1 || vg_check false "pgbench (advisor)"
vg_psql -c 'SELECT definition, round(improvement_pct) AS improvement_pct, calls FROM perfkit.index_recommendations' \
	>"$OUT/index_recommendations.txt" 2>&1 || true
vg_psql -c 'SELECT perfkit.report()' >"$OUT/report.txt" 2>&1 || vg_check false "perfkit.report()"
vg_psql -c 'SELECT * FROM perfkit.create_recommended_indexes()' -c "CALL perfkit.wait_for_index_builds('10 minutes')" \
	>"$OUT/create_recommended_indexes.txt" 2>&1 || vg_check false "create_recommended_indexes()"
vg_check test "$(vg_value "SELECT count(*) > 0 FROM perfkit.index_builds WHERE status = 'succeeded' AND definition LIKE '%(y)%'")" == t

pk_say "background workers: the Redis pusher"
mkdir -p "$PK_WORK/redis"
if pk_is_root; then chown "$PK_CLUSTER_USER:" "$PK_WORK/redis"; fi
REDIS_PORT=$(vg_free_port)
pk_as_cluster_user redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
	--dir "$PK_WORK/redis" --logfile "$PK_WORK/redis/redis.log" --daemonize yes \
	--pidfile "$PK_WORK/redis/redis.pid" >/dev/null
for _ in $(seq 1 50); do
	[[ $(redis-cli -p "$REDIS_PORT" PING 2>/dev/null || true) == PONG ]] && break
	sleep 0.2
done
REDIS_PID=$(cat "$PK_WORK/redis/redis.pid" 2>/dev/null)
[[ -n $REDIS_PID ]] || vg_check false "redis-server start"
vg_check vg_psql <<SQL
ALTER SYSTEM SET perfkit.redis_url = 'redis://127.0.0.1:$REDIS_PORT/0';
ALTER SYSTEM SET perfkit.redis_hot_calls = 3;
ALTER SYSTEM SET perfkit.redis_min_push_interval = 0;
SELECT pg_reload_conf();
SQL
vg_check vg_poll 300 "SELECT connected FROM perfkit.redis_status"
# hot statements, simple protocol (one session, so they become hot at the third call) ...
vg_check vg_psql >/dev/null < <(for _ in 1 2 3 4 5; do echo "SELECT id, x, y FROM vg_t WHERE id <= 20 ORDER BY id;"; done)
# ... and the extended protocol with bind parameters
pk_as_cluster_user tee "$PK_WORK/by_id.sql" >/dev/null <<'EOF'
\set k random(1, 3)
SELECT id, x, y, z FROM vg_t WHERE id = :k;
EOF
pk_as_cluster_user pgbench -n -t 30 -c 1 -M prepared -h "$SOCK" -p "$PORT" -f "$PK_WORK/by_id.sql" postgres \
	>"$PK_WORK/pgbench_redis.log" 2>&1 || vg_check false "pgbench (redis)"
vg_check vg_poll 300 "SELECT pushed >= 2 AND queue_bytes = 0 FROM perfkit.redis_status"
REDIS_KEYS=$(redis-cli -p "$REDIS_PORT" DBSIZE 2>/dev/null)
vg_check test "${REDIS_KEYS:-0}" -ge 2
# a write to the table invalidates the pushed results
vg_check vg_psql -c "UPDATE vg_t SET z = z + 1 WHERE id = 1" >/dev/null
vg_check vg_poll 300 "SELECT invalidated > 0 AND queue_bytes = 0 FROM perfkit.redis_status"
vg_psql -c 'SELECT * FROM perfkit.redis_status' >"$OUT/redis_status.txt" 2>&1 || true
pk_say "workers done: redis keys after the pushes: $REDIS_KEYS ($(vg_elapsed))"

# --- 3. restart: statistics saved at shutdown and loaded at start-up ----------------------------
vg_stop
if vg_check vg_start; then
	vg_check test "$(vg_value "SELECT count(*) > 0 FROM perfkit.statements WHERE query LIKE '%vg_t%'")" == t
fi
vg_stop
if [[ -n $REDIS_PID ]]; then kill "$REDIS_PID" 2>/dev/null; fi
REDIS_PID=

# --- the valgrind logs ------------------------------------------------------------------------
pk_say "scanning the valgrind logs"
cp "$SERVER_LOG" "$OUT/server.log"
set -e
SCAN_RC=0
python3 - "$VGLOG" "$OUT" "$PK_ROOT" <<'PY' || SCAN_RC=$?
# Classify each error of each vg.<pid>.log (between the --error-markers):
#   perfkit: the innermost frame of the error's stack that is PostgreSQL's or perfkit's (libc, hiredis
#            and valgrind's own frames skipped) is perfkit's; or the memory involved was allocated,
#            freed or left uninitialised (--track-origins) by a perfkit frame;
#   hooks:   PostgreSQL's error, with perfkit further down the stack (its hooks run every statement);
#   other:   PostgreSQL's own.
import collections, glob, os, re, shutil, sys

logdir, out, root = sys.argv[1], sys.argv[2], sys.argv[3]
# a perfkit frame: the module, a file of src/ (full paths: --fullpath-after=), or a pk_/perfkit_ function
perfkit_frame = re.compile(r"perfkit\.so|" + re.escape(root) + r"/src/|^(pk_|perfkit_)\w+ \(")
postgres_frame = re.compile(r"/bin/postgres\)|/lib/postgresql/\d+/lib/")
prefix = re.compile(r"^==\d+== ?")
frame = re.compile(r"^\s+(?:at|by) 0x[0-9A-F]+: (.*)$")


def culprit_is_perfkit(frames):
    """True when the innermost PostgreSQL-or-perfkit frame is perfkit's."""
    for f in frames:
        if perfkit_frame.search(f):
            return True
        if postgres_frame.search(f):
            return False
    return False


def sections(block):
    """The frame lists of an error: its own stack first, then allocation/free/origin stacks."""
    out, cur = [], None
    for l in block[1:]:
        m = frame.match(l)
        if m:
            if cur is None:
                cur = []
                out.append(cur)
            cur.append(m.group(1))
        else:
            cur = None
    return out


processes = 0
occurrences = 0
suppressed = 0
perfkit = collections.OrderedDict()     # error text -> [count, [files]]
hooks = collections.Counter()           # kind + top frames -> count
other = collections.Counter()
kept = []
for path in sorted(glob.glob(os.path.join(logdir, "vg.*.log"))):
    processes += 1
    with open(path, errors="replace") as f:
        lines = [prefix.sub("", l.rstrip("\n")) for l in f]
    block = None
    has_error = False
    for l in lines:
        if l.startswith("VALGRINDERROR-BEGIN"):
            block = []
        elif l.startswith("VALGRINDERROR-END"):
            has_error = True
            block = [x for x in block if x.strip()]
            secs = sections(block)
            if secs and any(culprit_is_perfkit(sec) for sec in secs):
                e = perfkit.setdefault("\n".join(block), [0, []])
                e[0] += 1
                e[1].append(os.path.basename(path))
            else:
                top = secs[0][:4] if secs else []
                sig = block[0].strip() + "\n      " + "\n      ".join(top)
                if any(perfkit_frame.search(f) for sec in secs for f in sec):
                    hooks[sig] += 1
                else:
                    other[sig] += 1
            block = None
        elif block is not None:
            block.append(l)
        m = re.match(r"ERROR SUMMARY: (\d+) errors from \d+ contexts \(suppressed: (\d+) from", l)
        if m:
            occurrences += int(m.group(1))
            suppressed += int(m.group(2))
    if has_error:
        shutil.copy(path, out)
        kept.append(os.path.basename(path))

n_perfkit = sum(v[0] for v in perfkit.values())
n_hooks = sum(hooks.values())
n_other = sum(other.values())
with open(os.path.join(out, "valgrind_report.txt"), "w") as rep:
    def say(s=""):
        print(s)
        rep.write(s + "\n")
    if perfkit:
        say("==== errors in perfkit code (%d, %d distinct) ====" % (n_perfkit, len(perfkit)))
        for text, (n, files) in perfkit.items():
            say("-- %d process(es), e.g. %s" % (n, files[0]))
            say(text)
            say()
    for title, errs in (("PostgreSQL's errors with perfkit's hooks further down the stack", hooks),
                        ("PostgreSQL's own errors", other)):
        if errs:
            say("==== %s (not failing the run): %d, %d distinct ====" % (title, sum(errs.values()), len(errs)))
            for sig, n in errs.most_common():
                say("-- %d process(es): %s" % (n, sig))
            say()
    say("valgrind summary")
    say("  processes traced:                 %d" % processes)
    say("  errors (distinct per process):    %d (occurrences: %d)" % (n_perfkit + n_hooks + n_other, occurrences))
    say("  errors in perfkit code:           %d (%d distinct)" % (n_perfkit, len(perfkit)))
    say("  PostgreSQL's, under perfkit hooks: %d (%d distinct)" % (n_hooks, len(hooks)))
    say("  PostgreSQL's own:                 %d (%d distinct)" % (n_other, len(other)))
    say("  suppressed (test/valgrind.supp):  %d occurrences" % suppressed)
    if kept:
        say("  logs of processes with errors:    %s" % ", ".join(kept))
if processes == 0:
    print("no valgrind log found: nothing was traced")
    sys.exit(2)
sys.exit(1 if perfkit else 0)
PY

# exit code 1 is a background worker's normal exit at shutdown
CRASHES=$(grep -c -E 'terminated by signal|exited with exit code ([02-9]|[1-9][0-9]+)$' "$OUT/server.log" || true)
echo "  server log: processes that crashed or exited with an error code: $CRASHES"
echo "  postmaster exit statuses: ${PM_EXIT[*]}"
echo "  pg_regress: $(grep -c -E '\.\.\. ok' "$PK_WORK/regress.log" || true) ok, $(grep -c -E '\.\.\. FAILED' "$PK_WORK/regress.log" || true) failed (exit $REGRESS_RC; isolation exit $ISOLATION_RC; diffs are not required to pass under valgrind)"
echo "  exercise (databases, index builds, advisor, redis push, restart): $([[ $WORKERS_OK == 1 ]] && echo ok || echo FAILED)"
echo "  run time: $(vg_elapsed); logs and report in $OUT"
if [[ $SCAN_RC -ne 0 ]]; then
	pk_err "valgrind found errors in perfkit code (see above)"
	exit 1
fi
if [[ $WORKERS_OK != 1 ]]; then
	pk_err "the exercise did not complete (see the failed checks above)"
	exit 1
fi
pk_say "valgrind: no errors in perfkit code"
