#!/usr/bin/env bash
# test/bench/index_build_latency.sh — how long does a concurrent writer wait while an index is built?
# A plain CREATE INDEX takes a SHARE lock and blocks every INSERT/UPDATE/DELETE on the table until it
# is done; perfkit.create_index_concurrently() has the background builder run CREATE INDEX
# CONCURRENTLY, which lets writers through.  This script measures the writer's latency in both cases.
#
# Method
#   - Build perfkit, install it into a private copy of PostgreSQL 15 (test/lib.sh), create one throwaway
#     cluster under the temp dir (unix socket only) with perfkit preloaded, autovacuum off, fsync off.
#   - Table orders(id bigserial, customer_id int, amount numeric, note text) with $ROWS rows, VACUUM
#     ANALYZE, and one unmeasured build + drop of the index to warm the caches.
#   - For each mode, one writer (pgbench -c 1, prepared, per-transaction log -l) inserts single rows
#     for the whole run: $LEAD s before the build, during it, $TAIL s after.
#       plain:   CREATE INDEX orders_customer_id_idx ON orders (customer_id), from a second session
#       perfkit: SELECT perfkit.create_index_concurrently('CREATE INDEX ...'), then
#                CALL perfkit.wait_for_index_builds(); the build window is the row's started_at ..
#                finished_at in perfkit.index_builds
#     The index is dropped between the modes.  Each transaction whose execution overlaps the build
#     window counts for that window; the $LEAD s before it are the baseline.
#   - Reported per window: build time, writer transactions, p50 / p99 / max latency in ms.  The
#     numbers are from one run on a shared machine: compare the max (a plain build blocks the writer
#     for its whole duration), not small differences of p50.
#
# Environment (defaults in parentheses): ROWS (3000000), LEAD (2 s), TAIL (2 s), BENCH_PORT (5497),
# BENCH_OUT (also write the report there), PG_CONFIG, PK_SYSTEM_INSTALL=0, PK_KEEP=1 (see test/lib.sh).

set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

ROWS=${ROWS:-3000000}
LEAD=${LEAD:-2}
TAIL=${TAIL:-2}
PORT=${BENCH_PORT:-5497}
INDEX_DEF='CREATE INDEX orders_customer_id_idx ON orders (customer_id)'

# Fail unless every parameter is a positive integer: lat_check_int NAME=VALUE...
lat_check_int() {
	local kv
	for kv in "$@"; do
		[[ ${kv#*=} =~ ^[1-9][0-9]*$ ]] || { pk_err "${kv%%=*} must be a positive integer, not '${kv#*=}'"; exit 2; }
	done
}

# Print the log file's tail and fail: lat_fail MESSAGE LOGFILE.
lat_fail() {
	pk_err "$1"
	if [[ -f $2 ]]; then tail -n 40 "$2" >&2; fi
	exit 1
}

# Run psql on the bench server as the cluster user (unaligned, tuples only, stop on error).
lat_psql() {
	pk_as_cluster_user psql -X -q -At -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -d postgres "$@"
}

# Microseconds since the epoch.
lat_now() { date +%s%6N; }

# Create and start the cluster, load the table.
lat_init_cluster() {
	pk_say "creating the cluster in $DATA"
	pk_as_cluster_user mkdir -p "$SOCK" "$RUNS"
	pk_init_cluster "$DATA" "$SOCK" "$PORT" <<EOF || lat_fail "initdb failed" "$PK_WORK/initdb.log"
# index_build_latency.sh
shared_preload_libraries = 'perfkit'
shared_buffers = 512MB
maintenance_work_mem = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
autovacuum = off
checkpoint_timeout = 1h
max_wal_size = 8GB
EOF
	pk_as_cluster_user pg_ctl -D "$DATA" -l "$LOG" -w -s start || lat_fail "server did not start" "$LOG"
	pk_say "loading $ROWS rows"
	lat_psql >/dev/null <<SQL || lat_fail "loading the table failed" "$LOG"
CREATE EXTENSION perfkit;
CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int NOT NULL, amount numeric NOT NULL,
                     note text);
INSERT INTO orders (customer_id, amount, note)
SELECT (random() * 100000)::int, round((random() * 500)::numeric, 2), md5(g::text)
  FROM generate_series(1, $ROWS) g;
VACUUM ANALYZE orders;
$INDEX_DEF;
DROP INDEX orders_customer_id_idx;
SQL
	pk_as_cluster_user tee "$RUNS/writer.sql" >/dev/null <<'EOF'
\set cid random(1, 100000)
INSERT INTO orders (customer_id, amount, note) VALUES (:cid, 1.00, 'bench');
EOF
}

# Start the writer for SECONDS in the background, logging every transaction under prefix MODE.
lat_start_writer() {
	local mode=$1 secs=$2
	PK_CWD=$RUNS pk_as_cluster_user pgbench -n -M prepared -c 1 -j 1 -T "$secs" -f "$RUNS/writer.sql" \
		-l --log-prefix="$mode" -h "$SOCK" -p "$PORT" postgres >"$PK_WORK/pgbench-$mode.log" 2>&1 &
	WRITER_PID=$!
}

# Wait for the writer, fail if it failed.
lat_wait_writer() {
	local mode=$1
	wait "$WRITER_PID" || lat_fail "pgbench ($mode) failed" "$PK_WORK/pgbench-$mode.log"
}

# Print "count p50 p99 max" (ms) of the transactions of MODE overlapping [FROM_US, TO_US).
lat_stats() {
	local mode=$1 from=$2 to=$3
	cat "$RUNS/$mode".* |
		awk -v from="$from" -v to="$to" '{
			end = $5 * 1000000 + $6; start = end - $3
			if (start < to && end > from) print $3 / 1000.0
		}' | sort -g |
		awk '{ v[NR] = $1 } END {
			if (NR == 0) { print "0 - - -"; exit }
			p50 = v[int((NR - 1) * 0.50) + 1]; p99 = v[int((NR - 1) * 0.99) + 1]
			printf "%d %.2f %.2f %.2f\n", NR, p50, p99, v[NR]
		}'
}

# One measured build in MODE (plain|perfkit); sets RESULT[MODE] and RESULT[MODE_base].
lat_run() {
	local mode=$1 secs t0 t1 window status started
	# generous: the writer must outlive the build; checked below
	secs=$((LEAD + TAIL + 4 * PLAIN_SECS + 10))
	[[ $mode == perfkit ]] && secs=$((LEAD + TAIL + 8 * PLAIN_SECS + 10))
	pk_say "$mode: writer for up to ${secs}s, build after ${LEAD}s"
	lat_start_writer "$mode" "$secs"
	started=$(lat_now)
	sleep "$LEAD"
	if [[ $mode == plain ]]; then
		t0=$(lat_now)
		lat_psql -c "$INDEX_DEF" >/dev/null
		t1=$(lat_now)
	else
		lat_psql -c "SELECT perfkit.create_index_concurrently('$INDEX_DEF')" >/dev/null
		[[ $(lat_psql -c "CALL perfkit.wait_for_index_builds('1 hour')") == t ]] ||
			lat_fail "the build did not finish" "$LOG"
		window=$(lat_psql -c "SELECT (extract(epoch FROM started_at) * 1000000)::bigint || ' ' ||
		                             (extract(epoch FROM finished_at) * 1000000)::bigint || ' ' || status
		                        FROM perfkit.index_builds ORDER BY id DESC LIMIT 1")
		read -r t0 t1 status <<<"$window"
		[[ $status == succeeded ]] || lat_fail "the perfkit build ended $status" "$LOG"
		WAKEUP_MS=$(lat_psql -c "SELECT round(extract(epoch FROM started_at - requested_at) * 1000, 1)
		                           FROM perfkit.index_builds ORDER BY id DESC LIMIT 1")
	fi
	lat_wait_writer "$mode"
	[[ $((started + secs * 1000000)) -gt $((t1 + 1000000)) ]] ||
		lat_fail "the writer stopped before the build ended; raise the writer time" "$PK_WORK/pgbench-$mode.log"
	[[ $(lat_psql -c "SELECT indisvalid FROM pg_index WHERE indexrelid = 'orders_customer_id_idx'::regclass") == t ]] ||
		lat_fail "$mode: the index is not valid" "$LOG"
	lat_psql -c "DROP INDEX orders_customer_id_idx" >/dev/null
	BUILD_SECS[$mode]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) / 1000000 }')
	RESULT[$mode]=$(lat_stats "$mode" "$t0" "$t1")
	RESULT[${mode}_base]=$(lat_stats "$mode" "$((t0 - LEAD * 1000000 + 500000))" "$t0")
}

# Print the report.
lat_report() {
	local row n p50 p99 max cpu
	cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
	echo "index build latency benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "  machine:  nproc=$(nproc), ${cpu:-unknown CPU}; load average at the end $(cut -d ' ' -f 1-3 /proc/loadavg)"
	echo "  server:   $("$PK_BINDIR/postgres" --version), perfkit preloaded, fsync off"
	echo "  table:    orders, $ROWS rows; index: ${INDEX_DEF#CREATE INDEX }"
	echo "  writer:   pgbench -c 1 -M prepared, one single-row INSERT per transaction"
	echo
	printf '%-34s %9s %9s %9s %9s %10s\n' window build_s writer_tx p50_ms p99_ms max_ms
	for row in plain_base:"before plain CREATE INDEX" plain:"during plain CREATE INDEX" \
		perfkit_base:"before perfkit request" perfkit:"during perfkit build (CIC)"; do
		read -r n p50 p99 max <<<"${RESULT[${row%%:*}]}"
		printf '%-34s %9s %9s %9s %9s %10s\n' "${row#*:}" "${BUILD_SECS[${row%%:*}]:--}" "$n" "$p50" "$p99" "$max"
	done
	echo
	echo "perfkit: build started ${WAKEUP_MS} ms after the requesting transaction committed"
}

lat_check_int ROWS="$ROWS" LEAD="$LEAD" TAIL="$TAIL" BENCH_PORT="$PORT"
pk_traps
pk_deps
pk_build
pk_workdir
pk_temp_install

DATA=$PK_WORK/bench_data
SOCK=$PK_WORK/bench_sock
RUNS=$PK_WORK/runs
LOG=$PK_WORK/bench_server.log
declare -A RESULT=() BUILD_SECS=()
WAKEUP_MS=-

lat_init_cluster
pk_say "timing one plain build without writers"
t=$(lat_now)
lat_psql -c "$INDEX_DEF" -c "DROP INDEX orders_customer_id_idx" >/dev/null
PLAIN_SECS=$(( ($(lat_now) - t) / 1000000 + 1 ))

lat_run plain
lat_run perfkit
pk_as_cluster_user pg_ctl -D "$DATA" -w -s -m fast stop

echo
lat_report | tee "$PK_WORK/report.txt"
if [[ -n ${BENCH_OUT:-} ]]; then
	mkdir -p "$(dirname "$BENCH_OUT")"
	cp "$PK_WORK/report.txt" "$BENCH_OUT"
	pk_say "report written to $BENCH_OUT"
fi
pk_teardown
