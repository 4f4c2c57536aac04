#!/usr/bin/env bash
# test/soak.sh — soak test: perfkit with every feature on under a mixed pgbench load with more
# clients than cores, then checks that nothing leaked, drifted or failed.
#
# What it does
#   - Builds perfkit and installs it into a private copy of PostgreSQL 15 (test/lib.sh), or, when
#     PK_BINDIR names an installation that already has perfkit (as inside `make test`), uses that.
#   - Starts a redis-server on 127.0.0.1 (a free port, or SOAK_REDIS_PORT) and a throwaway cluster
#     (unix socket only) preloading pg_stat_statements and perfkit with perfkit.track = all,
#     pg_stat_statements.track = all, perfkit.redis_url pointing at that Redis and
#     perfkit.slow_threshold = 50ms.
#   - Runs pgbench -M prepared with CLIENTS clients for DURATION seconds over a weighted mix of
#     scripts: hot cacheable SELECTs (pushed to Redis), primary-key and recent-orders reads, a
#     writing transaction (UPDATE + two INSERTs), an N+1 loop inside one transaction, and a slow
#     statement (pg_sleep(0.06)).  Meanwhile a separate client requests index builds
#     (perfkit.create_index_concurrently in a transaction, then perfkit.drop_index_concurrently of the
#     previous index) every INDEX_EVERY seconds, and a sampler reads the memory of the pgbench
#     backends, perfkit's Redis pusher and its index build launcher from /proc every SAMPLE_EVERY
#     seconds.
#   - Then waits for the index builds and checks, printing every figure:
#       errors        pgbench: no failed transaction, no aborted client; no ERROR/FATAL/PANIC line in
#                     the server log during the run
#       parity        perfkit.statements calls == pg_stat_statements calls for every (userid, dbid,
#                     queryid, toplevel) present in both (keys on one side only are counted, not
#                     failed; BEGIN and END left out, which pgss undercounts when prepared);
#                     perfkit evicted and dropped nothing (else parity would mean little)
#       shared memory pg_shmem_allocations: the total and perfkit's own allocations are the same at
#                     the end as before the load
#       memory        RssAnon (private memory; VmRSS also counts the shared buffers a backend has
#                     touched, which legitimately grows) of every sampled process: the last sample is
#                     at most max(10%, 2 MiB) above the first sample after the warm-up (the first
#                     fifth of the run); first/warm/last/max of RssAnon and VmRSS are printed
#       index builds  every request ended 'succeeded', every created index not dropped since is valid,
#                     no INVALID index left
#       Redis         pushed > 0, errors = 0, dropped_queue_full = 0
#       capture       slow queries captured > 0, an N+1 pattern found
#     and exits non-zero when any check fails.
#
# Environment (defaults in parentheses):
#   DURATION (300) seconds of load   CLIENTS (8)   JOBS (2) pgbench threads
#   INDEX_EVERY (DURATION/10, at least 4) seconds between index requests
#   SAMPLE_EVERY (DURATION/60, at least 1) seconds between memory samples
#   SOAK_PORT (5497) port number of the cluster's socket (no TCP listener)
#   SOAK_REDIS_PORT (a free one) Redis port on 127.0.0.1
#   SOAK_OUT  also write the summary to this file
#   PG_CONFIG, PK_SYSTEM_INSTALL=0, PK_KEEP=1 — see test/lib.sh.
# Works as root (the server runs as postgres) and as an ordinary user.

set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION=${DURATION:-300}
CLIENTS=${CLIENTS:-8}
JOBS=${JOBS:-2}
PORT=${SOAK_PORT:-5497}
REDIS_PORT=${SOAK_REDIS_PORT:-}
INDEX_EVERY=${INDEX_EVERY:-}
SAMPLE_EVERY=${SAMPLE_EVERY:-}
SLOW_SLEEP=0.06               # the slow statement's pg_sleep; perfkit.slow_threshold is 50ms
BG_PIDS=()                    # background loops and redis-server, stopped at exit
REDIS_PID=

# shellcheck disable=SC2317  # called from the EXIT trap (pk_cleanup in lib.sh)
# Stop what we started in the background (the servers were stopped by pk_teardown).
pk_exit_hook() {
	local pid
	for pid in ${BG_PIDS[@]+"${BG_PIDS[@]}"}; do kill "$pid" 2>/dev/null || true; done
	if [[ -n $REDIS_PID ]]; then
		kill "$REDIS_PID" 2>/dev/null || true
		wait "$REDIS_PID" 2>/dev/null || true
	fi
}

# Print the log file's tail and fail: soak_fail MESSAGE [LOGFILE].
soak_fail() {
	pk_err "$1"
	if [[ -n ${2:-} && -f $2 ]]; then tail -n 40 "$2" >&2; fi
	exit 1
}

# Fail unless every parameter is a positive integer: soak_check_int NAME=VALUE...
soak_check_int() {
	local kv
	for kv in "$@"; do
		[[ ${kv#*=} =~ ^[1-9][0-9]*$ ]] || { pk_err "${kv%%=*} must be a positive integer, not '${kv#*=}'"; exit 2; }
	done
}

# Run psql on the soak database as the cluster user: soak_psql ARGS...
soak_psql() {
	pk_as_cluster_user psql -X -q -At -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -d soak "$@"
}

# Record a failed check: soak_check OK_CONDITION_STATUS MESSAGE (0 = passed).
soak_check() {
	if [[ $1 -eq 0 ]]; then
		printf '  ok    %s\n' "$2"
	else
		printf '  FAIL  %s\n' "$2"
	fi
}

# Use the installation in $PK_BINDIR if it has perfkit, else build and install into a private copy.
soak_install() {
	local libdir
	if [[ -n ${PK_BINDIR:-} && -x $PK_BINDIR/pg_config ]]; then
		libdir=$("$PK_BINDIR/pg_config" --pkglibdir)
		if [[ -f $libdir/perfkit.so && -f $libdir/pg_stat_statements.so ]]; then
			pk_say "using the installation in $PK_BINDIR"
			export PK_BINDIR
			return 0
		fi
	fi
	PK_BINDIR=
	pk_deps
	pk_build
	pk_temp_install
}

# Succeed when something listens on 127.0.0.1:PORT.
soak_port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Start redis-server on 127.0.0.1 (SOAK_REDIS_PORT, or a free port); sets REDIS_PORT and REDIS_PID.
soak_start_redis() {
	local tries port i
	command -v redis-server >/dev/null || soak_fail "redis-server not found (apt-get install redis-server)"
	mkdir -p "$PK_WORK/redis"
	for ((tries = 0; tries < 10; tries++)); do
		port=${REDIS_PORT:-$((20000 + RANDOM % 20000))}
		if soak_port_busy "$port"; then
			[[ -z $REDIS_PORT ]] || soak_fail "SOAK_REDIS_PORT $REDIS_PORT is in use"
			continue
		fi
		redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$PK_WORK/redis" \
			--logfile "$PK_WORK/redis/redis.log" &
		REDIS_PID=$!
		for ((i = 0; i < 50; i++)); do
			if [[ $(redis-cli -p "$port" PING 2>/dev/null) == PONG ]]; then
				REDIS_PORT=$port
				pk_say "redis-server on 127.0.0.1:$port (pid $REDIS_PID)"
				return 0
			fi
			kill -0 "$REDIS_PID" 2>/dev/null || break
			sleep 0.1
		done
		kill "$REDIS_PID" 2>/dev/null || true
		wait "$REDIS_PID" 2>/dev/null || true
		REDIS_PID=
		[[ -z $REDIS_PORT ]] || break
	done
	soak_fail "redis-server did not start" "$PK_WORK/redis/redis.log"
}

# Create and start the cluster, the schema and the pgbench scripts.
soak_setup_cluster() {
	pk_say "creating the cluster in $DATA"
	pk_init_cluster "$DATA" "$SOCK" "$PORT" <<EOF || soak_fail "initdb failed" "$PK_WORK/initdb.log"
# soak.sh
shared_preload_libraries = 'pg_stat_statements,perfkit'
max_connections = $((CLIENTS + 20))
max_worker_processes = 12
pg_stat_statements.track = all
pg_stat_statements.max = 5000
perfkit.track = all
perfkit.max_statements = 5000
perfkit.slow_threshold = '50ms'
perfkit.redis_url = 'redis://127.0.0.1:$REDIS_PORT/0'
perfkit.index_build_retry_delay = '1s'
fsync = off
synchronous_commit = off
full_page_writes = off
log_line_prefix = '%m [%p] %b '
EOF
	pk_as_cluster_user pg_ctl -D "$DATA" -l "$LOG" -w -s start || soak_fail "server did not start" "$LOG"
	pk_as_cluster_user createdb -h "$SOCK" -p "$PORT" soak
	pk_as_cluster_user pgbench -i -q -s 2 -h "$SOCK" -p "$PORT" soak >"$PK_WORK/pgbench-init.log" 2>&1 ||
		soak_fail "pgbench -i failed" "$PK_WORK/pgbench-init.log"
	soak_psql <<'SQL' >/dev/null || soak_fail "schema creation failed" "$LOG"
CREATE EXTENSION pg_stat_statements;
CREATE EXTENSION perfkit;
CREATE TABLE soak_products (id int PRIMARY KEY, category int NOT NULL, name text NOT NULL, price numeric(10,2) NOT NULL);
INSERT INTO soak_products SELECT g, 1 + g % 8, 'product ' || g, (g * 7 % 1000) / 10.0 FROM generate_series(1, 200) g;
CREATE TABLE soak_parents (id int PRIMARY KEY, grp int NOT NULL);
INSERT INTO soak_parents SELECT g, (g - 1) / 10 FROM generate_series(1, 10000) g;
CREATE INDEX ON soak_parents (grp);
CREATE TABLE soak_children (id serial PRIMARY KEY, parent_id int NOT NULL, v text NOT NULL);
INSERT INTO soak_children (parent_id, v) SELECT p, 'child ' || p || '.' || k FROM generate_series(1, 10000) p, generate_series(1, 3) k;
CREATE INDEX ON soak_children (parent_id);
CREATE TABLE soak_orders (id bigserial PRIMARY KEY, customer int NOT NULL, amount numeric NOT NULL,
                          created_at timestamptz NOT NULL DEFAULT now());
INSERT INTO soak_orders (customer, amount) SELECT 1 + g % 1000, g % 100 FROM generate_series(1, 20000) g;
CREATE INDEX ON soak_orders (customer);
VACUUM ANALYZE;
SQL
	pk_as_cluster_user mkdir -p "$SCRIPTS"
	# cacheable hot reads: a table nobody writes, 8 keys (pushed to Redis)
	pk_as_cluster_user tee "$SCRIPTS/hot.sql" >/dev/null <<'EOF'
\set c random(1, 8)
SELECT id, name, price FROM soak_products WHERE category = :c ORDER BY id;
EOF
	pk_as_cluster_user tee "$SCRIPTS/read.sql" >/dev/null <<'EOF'
\set aid random(1, 100000 * :scale)
\set c random(1, 1000)
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
SELECT id, amount, created_at FROM soak_orders WHERE customer = :c ORDER BY id DESC LIMIT 5;
EOF
	pk_as_cluster_user tee "$SCRIPTS/write.sql" >/dev/null <<'EOF'
\set aid random(1, 100000 * :scale)
\set delta random(-5000, 5000)
\set c random(1, 1000)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
INSERT INTO soak_orders (customer, amount) VALUES (:c, :delta);
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, :aid, :delta, CURRENT_TIMESTAMP);
END;
EOF
	# an N+1 loop: the parents of a group, then each parent's children, one by one
	{
		echo '\set g random(0, 999)'
		for k in 1 2 3 4 5 6; do echo "\\set p$k :g * 10 + $k"; done
		echo 'BEGIN;'
		echo 'SELECT id FROM soak_parents WHERE grp = :g ORDER BY id;'
		for k in 1 2 3 4 5 6; do echo "SELECT id, v FROM soak_children WHERE parent_id = :p$k;"; done
		echo 'END;'
	} | pk_as_cluster_user tee "$SCRIPTS/nplusone.sql" >/dev/null
	pk_as_cluster_user tee "$SCRIPTS/slow.sql" >/dev/null <<EOF
SELECT pg_sleep($SLOW_SLEEP), count(*) FROM soak_products;
EOF
}

# One value of the soak database: soak_value SQL.
soak_value() { soak_psql -c "$1"; }

# Shared memory: "total perfkit perfkit_count" from pg_shmem_allocations.
soak_shmem() {
	soak_value "SELECT sum(allocated_size), sum(allocated_size) FILTER (WHERE name LIKE 'perfkit%'),
	                   count(*) FILTER (WHERE name LIKE 'perfkit%')
	              FROM pg_shmem_allocations WHERE name IS NOT NULL" | tr '|' ' '
}

# Background: request index builds every INDEX_EVERY seconds until the stop file exists.  Each
# request is a transaction (like a migration's); the previous index is dropped the same way once it
# is valid; each round also reads perfkit.index_recommendations.  Writes the number of create requests to $PK_WORK/index_requests.
soak_index_requester() {
	local n=0 prev=
	sleep "$INDEX_EVERY"
	while [[ ! -e $PK_WORK/stop ]]; do
		n=$((n + 1))
		soak_psql >/dev/null <<SQL || echo "index request $n failed" >>"$PK_WORK/requester_errors"
BEGIN;
SELECT perfkit.create_index_concurrently('CREATE INDEX soak_orders_idx_$n ON soak_orders (created_at, customer)');
COMMIT;
SQL
		if [[ -n $prev ]]; then
			soak_psql >/dev/null <<SQL || echo "drop request of $prev failed" >>"$PK_WORK/requester_errors"
BEGIN;
SELECT perfkit.drop_index_concurrently(i.indexrelid::regclass)
  FROM pg_index i WHERE i.indexrelid = to_regclass('$prev') AND i.indisvalid;
COMMIT;
SQL
		fi
		prev=soak_orders_idx_$n
		# the index advisor reads its shared table and plans the collected statements meanwhile
		soak_psql >/dev/null <<SQL || echo "index recommendations $n failed" >>"$PK_WORK/requester_errors"
SELECT count(*) FROM perfkit.index_recommendations;
SELECT count(*) FROM perfkit.create_recommended_indexes(dry_run => true);
SQL
		echo "$n" >"$PK_WORK/index_requests"
		sleep "$INDEX_EVERY"
	done
}

# Background: sample RssAnon and VmRSS (kB) of the pgbench backends, the Redis pusher and the index
# build launcher every
# SAMPLE_EVERY seconds, as lines "elapsed pid kind rss_anon vm_rss", until the stop file exists.
soak_sampler() {
	local start=$SECONDS pids=() pid i anon rss kind pm
	# wait at most 5 s for every client (on a loaded machine each look-up is slow)
	while ((SECONDS - start < 5)); do
		mapfile -t pids < <(soak_value "SELECT pid || ' backend' FROM pg_stat_activity
		                                 WHERE application_name = 'pgbench' ORDER BY pid" 2>/dev/null || true)
		[[ ${#pids[@]} -lt $CLIENTS ]] || break
		sleep 0.1
	done
	# perfkit's long-lived workers (connected to no database): found by their process titles
	pm=$(head -n 1 "$DATA/postmaster.pid")
	pid=$(pgrep -P "$pm" -f '^postgres: .*perfkit redis pusher' | head -n 1 || true)
	[[ -z $pid ]] || pids+=("$pid pusher")
	pid=$(pgrep -P "$pm" -f '^postgres: .*perfkit index build launcher' | head -n 1 || true)
	[[ -z $pid ]] || pids+=("$pid launcher")
	while [[ ! -e $PK_WORK/stop ]]; do
		for i in "${pids[@]}"; do
			pid=${i%% *}
			kind=${i#* }
			[[ -r /proc/$pid/status ]] || continue
			anon=$(awk '$1 == "RssAnon:" { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
			rss=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
			[[ -n $anon && -n $rss ]] && echo "$((SECONDS - start)) $pid $kind $anon $rss"
		done >>"$PK_WORK/rss.txt"
		sleep "$SAMPLE_EVERY"
	done
}

# Memory figures per sampled process and the flatness check; prints one line per process and
# returns non-zero when one grew.
soak_rss_report() {
	local warm=$1
	awk -v warm="$warm" '
		{
			pid = $2; kind[pid] = $3; n[pid]++
			if (!(pid in first)) { first[pid] = $4; firstv[pid] = $5 }
			if (!(pid in w) && $1 >= warm) { w[pid] = $4; wv[pid] = $5 }
			last[pid] = $4; lastv[pid] = $5
			if ($4 > max[pid]) max[pid] = $4
			if ($5 > maxv[pid]) maxv[pid] = $5
		}
		END {
			bad = 0
			for (pid in n) {
				if (!(pid in w)) { w[pid] = last[pid]; wv[pid] = lastv[pid] }
				allow = w[pid] / 10; if (allow < 2048) allow = 2048
				flat = last[pid] - w[pid] <= allow
				if (!flat) bad++
				printf "    %-7s pid %-7s samples %3d  RssAnon kB first %6d warm %6d last %6d max %6d  (%+d)  VmRSS kB first %6d warm %6d last %6d max %6d  %s\n",
					kind[pid], pid, n[pid], first[pid], w[pid], last[pid], max[pid], last[pid] - w[pid],
					firstv[pid], wv[pid], lastv[pid], maxv[pid], flat ? "flat" : "GREW"
			}
			exit bad > 0
		}' "$PK_WORK/rss.txt" | sort -k 1,1 -k 3,3n
	return "${PIPESTATUS[0]}"
}

soak_check_int DURATION="$DURATION" CLIENTS="$CLIENTS" JOBS="$JOBS" SOAK_PORT="$PORT"
[[ -n $INDEX_EVERY ]] || INDEX_EVERY=$((DURATION / 10 < 4 ? 4 : DURATION / 10))
[[ -n $SAMPLE_EVERY ]] || SAMPLE_EVERY=$((DURATION / 60 < 1 ? 1 : DURATION / 60))
soak_check_int INDEX_EVERY="$INDEX_EVERY" SAMPLE_EVERY="$SAMPLE_EVERY"
[[ -z $REDIS_PORT ]] || soak_check_int SOAK_REDIS_PORT="$REDIS_PORT"
unset MAKEFLAGS

pk_traps
pk_workdir
soak_install
DATA=$PK_WORK/soak_data
SOCK=$PK_WORK/soak_sock
LOG=$PK_WORK/soak_server.log
SCRIPTS=$PK_WORK/scripts
NCPU=$(nproc)
if ((CLIENTS <= NCPU)); then pk_say "note: CLIENTS=$CLIENTS is not more than the $NCPU cores"; fi

soak_start_redis
soak_setup_cluster

read -r SHM_TOTAL0 SHM_PK0 SHM_PKN0 < <(soak_shmem)
soak_value "SELECT perfkit.reset(), pg_stat_statements_reset()" >/dev/null
LOG_OFFSET=$(stat -c %s "$LOG")

pk_say "load: pgbench -M prepared, $CLIENTS clients, $JOBS threads, ${DURATION}s; index requests every" \
	"${INDEX_EVERY}s; memory samples every ${SAMPLE_EVERY}s"
rm -f "$PK_WORK/stop"
soak_index_requester &
BG_PIDS+=($!)
PGBENCH_RC=0
pk_as_cluster_user pgbench -n -M prepared -c "$CLIENTS" -j "$JOBS" -T "$DURATION" \
	-f "$SCRIPTS/hot.sql@5" -f "$SCRIPTS/read.sql@4" -f "$SCRIPTS/write.sql@3" \
	-f "$SCRIPTS/nplusone.sql@2" -f "$SCRIPTS/slow.sql@1" \
	-h "$SOCK" -p "$PORT" soak >"$PK_WORK/pgbench.log" 2>&1 &
PGBENCH_PID=$!
soak_sampler &
BG_PIDS+=($!)
wait "$PGBENCH_PID" || PGBENCH_RC=$?
touch "$PK_WORK/stop"
wait "${BG_PIDS[@]}" 2>/dev/null || true
BG_PIDS=()

pk_say "waiting for the index builds"
BUILDS_DONE=$(soak_value "CALL perfkit.wait_for_index_builds('10 minutes')" || echo error)
sleep 1   # a last Redis push or invalidation in flight

# ---- figures
TX=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$PK_WORK/pgbench.log")
TPS=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' "$PK_WORK/pgbench.log")
FAILED_TX=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$PK_WORK/pgbench.log")
ABORTED=$(grep -c 'aborted in command\|client .* aborted' "$PK_WORK/pgbench.log" || true)
read -r STMTS_TOP STMTS_ALL < <(soak_value "SELECT sum(calls) FILTER (WHERE toplevel), sum(calls)
	FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'soak')" | tr '|' ' ')
# BEGIN and END (COMMIT from 16 on), prepared by pgbench -M prepared, are left out of the calls comparison:
# pg_stat_statements counts them at their first execution per client only (see TAP 053)
read -r SHARED MISMATCH ONLY_PK ONLY_PGSS < <(soak_value "
	SELECT count(*) FILTER (WHERE p.queryid IS NOT NULL AND s.queryid IS NOT NULL),
	       count(*) FILTER (WHERE p.queryid IS NOT NULL AND s.queryid IS NOT NULL AND p.calls <> s.calls
	                          AND p.query NOT IN ('BEGIN', 'END', 'COMMIT')),
	       count(*) FILTER (WHERE s.queryid IS NULL),
	       count(*) FILTER (WHERE p.queryid IS NULL)
	  FROM perfkit.statements p FULL JOIN pg_stat_statements s USING (userid, dbid, queryid, toplevel)" | tr '|' ' ')
MISMATCH_ROWS=$(soak_value "
	SELECT left(coalesce(p.query, s.query), 70) || ': perfkit ' || p.calls || ', pgss ' || s.calls
	  FROM perfkit.statements p JOIN pg_stat_statements s USING (userid, dbid, queryid, toplevel)
	 WHERE p.calls <> s.calls AND p.query NOT IN ('BEGIN', 'END', 'COMMIT') LIMIT 10")
read -r PK_ENTRIES PK_EVICTIONS PK_DROPPED < <(soak_value "SELECT statements, evictions, dropped FROM perfkit.info" | tr '|' ' ')
read -r SLOW_CAPTURED SLOW_CALLS < <(soak_value "SELECT (SELECT count(*) FROM perfkit.slow_queries),
	(SELECT sum(slow_calls) FROM perfkit.statements)" | tr '|' ' ')
NPLUS=$(soak_value "SELECT count(*) FROM perfkit.n_plus_one WHERE confirmed")
read -r IB_CREATE IB_DROP IB_OK IB_OTHER < <(soak_value "
	SELECT count(*) FILTER (WHERE kind = 'create'), count(*) FILTER (WHERE kind = 'drop'),
	       count(*) FILTER (WHERE status = 'succeeded'), count(*) FILTER (WHERE status <> 'succeeded')
	  FROM perfkit.index_builds" | tr '|' ' ')
IB_OTHER_ROWS=$(soak_value "SELECT id || ' ' || kind || ' ' || index_name || ' ' || status || coalesce(': ' || error, '')
	FROM perfkit.index_builds WHERE status <> 'succeeded' ORDER BY id")
IB_MISSING=$(soak_value "
	SELECT count(*) FROM perfkit.index_builds c
	 WHERE c.kind = 'create'
	   AND NOT EXISTS (SELECT 1 FROM perfkit.index_builds d WHERE d.kind = 'drop' AND d.index_name = c.index_name
	                      AND d.status = 'succeeded')
	   AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indexrelid = to_regclass(c.index_name) AND i.indisvalid)")
INVALID=$(soak_value "SELECT count(*) FROM pg_index WHERE NOT indisvalid")
read -r R_PUSHED R_INVAL R_ERRORS R_QFULL R_STALE R_UNSAFE R_CONNECTED < <(soak_value "
	SELECT pushed, invalidated, errors, dropped_queue_full, dropped_stale, skipped_unsafe, connected
	  FROM perfkit.redis_status" | tr '|' ' ')
R_KEYS=$(redis-cli -p "$REDIS_PORT" --raw EVAL "return #redis.call('KEYS', 'perfkit:soak:*')" 0 2>/dev/null || echo '?')
read -r SHM_TOTAL1 SHM_PK1 SHM_PKN1 < <(soak_shmem)
LOG_PROBLEMS=$(tail -c +"$((LOG_OFFSET + 1))" "$LOG" | grep -E '\b(ERROR|FATAL|PANIC):|terminated by signal|was terminated' || true)
LOG_PROBLEM_COUNT=$(grep -c . <<<"$LOG_PROBLEMS" || true)
REQUESTS=$(cat "$PK_WORK/index_requests" 2>/dev/null || echo 0)
WARM=$((DURATION / 5))

# ---- report
{
	echo
	echo "perfkit soak test, $(date -u '+%Y-%m-%d %H:%M UTC'), $("$PK_BINDIR/postgres" --version)"
	echo "  machine: nproc=$NCPU, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1);" \
		"load average at the end $(cut -d ' ' -f 1-3 /proc/loadavg)"
	echo "  load: $CLIENTS clients ($JOBS pgbench threads), ${DURATION} s, pgbench -M prepared," \
		"scripts hot@5 read@4 write@3 nplusone@2 slow@1; $REQUESTS index requests, one every ${INDEX_EVERY} s"
	echo "  pgbench: ${TX:-?} transactions (${TPS:-?} tps), failed ${FAILED_TX:-?}, aborted clients $ABORTED, exit status $PGBENCH_RC"
	echo "  statements executed: ${STMTS_TOP:-0} top-level, ${STMTS_ALL:-0} with nested (pg_stat_statements, soak database)"
	echo "  pg_stat_statements parity: $SHARED shared keys, $MISMATCH with different calls" \
		"(keys only in perfkit: $ONLY_PK, only in pg_stat_statements: $ONLY_PGSS)"
	echo "  perfkit.info: $PK_ENTRIES entries, $PK_EVICTIONS evictions, $PK_DROPPED dropped"
	echo "  slow queries: $SLOW_CAPTURED captured, ${SLOW_CALLS:-0} slow calls; confirmed N+1 patterns: $NPLUS"
	echo "  index builds: $IB_CREATE create + $IB_DROP drop requests, $IB_OK succeeded, $IB_OTHER other;" \
		"created indexes missing or invalid: $IB_MISSING; INVALID indexes: $INVALID; wait finished: $BUILDS_DONE"
	echo "  redis: connected $R_CONNECTED, pushed $R_PUSHED, invalidated $R_INVAL, errors $R_ERRORS," \
		"dropped_queue_full $R_QFULL, dropped_stale $R_STALE, skipped_unsafe $R_UNSAFE; keys now $R_KEYS"
	echo "  shared memory (pg_shmem_allocations): total $SHM_TOTAL0 -> $SHM_TOTAL1 bytes;" \
		"perfkit's $SHM_PKN0 allocations $SHM_PK0 -> $SHM_PK1 bytes ($SHM_PKN1 allocations)"
	echo "  memory of long-lived processes (warm = first sample after ${WARM} s; flat = last <= warm + max(10%, 2 MiB) of RssAnon):"
	RSS_RC=0
	soak_rss_report "$WARM" || RSS_RC=$?
	echo "  server log during the run: $LOG_PROBLEM_COUNT ERROR/FATAL/PANIC lines"
	echo
	echo "checks:"
	soak_check $((PGBENCH_RC == 0 && ABORTED == 0 && ${FAILED_TX:-1} == 0 ? 0 : 1)) \
		"pgbench: no client error (failed ${FAILED_TX:-?}, aborted $ABORTED, exit $PGBENCH_RC)"
	soak_check $((${TX:-0} > 0 ? 0 : 1)) "pgbench processed transactions (${TX:-0})"
	soak_check $((LOG_PROBLEM_COUNT == 0 ? 0 : 1)) "no ERROR/FATAL/PANIC in the server log ($LOG_PROBLEM_COUNT)"
	soak_check $((MISMATCH == 0 && SHARED > 0 ? 0 : 1)) \
		"perfkit.statements calls == pg_stat_statements calls ($MISMATCH mismatches over $SHARED keys)"
	soak_check $((PK_EVICTIONS == 0 && PK_DROPPED == 0 ? 0 : 1)) "perfkit evicted and dropped nothing"
	soak_check $((SHM_TOTAL0 == SHM_TOTAL1 && SHM_PK0 == SHM_PK1 ? 0 : 1)) \
		"shared memory did not grow (total $SHM_TOTAL0 -> $SHM_TOTAL1, perfkit $SHM_PK0 -> $SHM_PK1)"
	soak_check "$RSS_RC" "backend and pusher memory stayed flat after the warm-up"
	soak_check $((REQUESTS > 0 && IB_CREATE == REQUESTS && IB_OTHER == 0 && IB_MISSING == 0 && INVALID == 0 ? 0 : 1)) \
		"index builds: $REQUESTS requested, all finished valid ($IB_OTHER not succeeded, $IB_MISSING missing, $INVALID INVALID)"
	soak_check "$([[ $BUILDS_DONE == t ]] && echo 0 || echo 1)" "perfkit.wait_for_index_builds() returned finished"
	soak_check $((R_PUSHED > 0 && R_ERRORS == 0 && R_QFULL == 0 ? 0 : 1)) \
		"Redis: pushed $R_PUSHED > 0, errors $R_ERRORS, dropped_queue_full $R_QFULL"
	soak_check $((SLOW_CAPTURED > 0 && NPLUS > 0 ? 0 : 1)) "slow queries captured ($SLOW_CAPTURED), N+1 found ($NPLUS)"
	soak_check "$([[ -s $PK_WORK/requester_errors ]] && echo 1 || echo 0)" "every index request was accepted"
} | tee "$PK_WORK/report.txt"
if [[ -s $PK_WORK/requester_errors ]]; then cat "$PK_WORK/requester_errors"; fi
if [[ -n $MISMATCH_ROWS ]]; then printf 'calls mismatches:\n%s\n' "$MISMATCH_ROWS"; fi
if [[ -n $IB_OTHER_ROWS ]]; then printf 'index builds not succeeded:\n%s\n' "$IB_OTHER_ROWS"; fi
if [[ -n $LOG_PROBLEMS ]]; then printf 'server log problems (first 20):\n%s\n' "$(head -n 20 <<<"$LOG_PROBLEMS")"; fi
if grep -q 'aborted\|error' "$PK_WORK/pgbench.log"; then
	echo "pgbench errors (first 20):"
	grep 'aborted\|error' "$PK_WORK/pgbench.log" | head -n 20
fi
if [[ -n ${SOAK_OUT:-} ]]; then
	mkdir -p "$(dirname "$SOAK_OUT")"
	cp "$PK_WORK/report.txt" "$SOAK_OUT"
fi
grep -q '^  FAIL  ' "$PK_WORK/report.txt" && FAILED=1 || FAILED=0

pk_as_cluster_user pg_ctl -D "$DATA" -w -s -m fast stop || true
if ((FAILED)); then
	echo "soak: FAILED"
	exit 1
fi
echo "soak: passed"
pk_teardown
