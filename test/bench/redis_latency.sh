#!/usr/bin/env bash
# test/bench/redis_latency.sh — latency of hot statements whose results perfkit pushes to Redis, with
# Redis up, down (stopped) and stalled (SIGSTOP), against the push turned off: the push must never
# make a statement slower, whatever Redis does.
#
# Method
#   - Build perfkit from a snapshot of the working tree in the temp dir (concurrent edits and builds in
#     the checkout do not interfere), install it into a private copy of PostgreSQL 15 (test/lib.sh),
#     create one throwaway cluster (unix socket only) and start a private redis-server on a loopback
#     port (no persistence).  The server preloads perfkit with perfkit.redis_hot_calls = 10.
#   - Workload: pgbench -M prepared, each transaction one hot statement
#     `SELECT id, v FROM kv WHERE id = :id` with id random in 1..KEYS (every id is its own Redis key,
#     so there is steady pushing, invalidation by a light writer, and queueing when Redis is away), plus,
#     with WRITE_EVERY > 0, one UPDATE of a random row per WRITE_EVERY transactions on average.
#   - Scenarios: off (perfkit.redis_url = '', the reference), up, down (redis-server stopped),
#     stalled (redis-server stopped with SIGSTOP: connections hang, the pusher times out).  The URL is
#     switched with ALTER SYSTEM + pg_reload_conf(), no restart.  Rounds are interleaved (off up down
#     stalled off up ...); each measurement follows a warm-up with the same workload.
#   - Latencies come from pgbench's per-transaction log (-l: one line per transaction, latency in µs);
#     per scenario all rounds are pooled and the median, p99 and p99.9 are reported with the TPS, the
#     ratios to the reference, and the push counters moved during the scenario.
#
# Environment (defaults in parentheses): ROUNDS (3)  DURATION (10 s)  WARMUP (2 s)  CLIENTS (4)  JOBS (2)
#   KEYS (1000)  WRITE_EVERY (50)  BENCH_PORT (5497, socket only)  REDIS_PORT (6397, 127.0.0.1)
#   BENCH_OUT (also write the report there)  PK_KEEP=1 (keep the temp dir, with the pgbench logs).

set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CLIENTS=${CLIENTS:-4}
JOBS=${JOBS:-2}
KEYS=${KEYS:-1000}
WRITE_EVERY=${WRITE_EVERY:-50}
PORT=${BENCH_PORT:-5497}
REDIS_PORT=${REDIS_PORT:-6397}
SCENARIOS=(off up down stalled)
BENCH_REPO=$PK_ROOT
export PK_SYSTEM_INSTALL=${PK_SYSTEM_INSTALL:-0}
unset PERFKIT_ASSERTS PK_ASSERTS   # measure the production build

declare -A LATFILES=() TPS=() COUNTERS=()

# Print a log file and fail: bench_fail MESSAGE LOGFILE.
bench_fail() {
	pk_err "$1"
	if [[ -f ${2:-} ]]; then tail -n 40 "$2" >&2; fi
	exit 1
}

# psql against the bench server as the cluster user.
bench_psql() {
	pk_as_cluster_user psql -X -q -At -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -d postgres "$@"
}

# Copy the working tree (without .git and build products) to $PK_WORK/build and build from there.
bench_snapshot() {
	local snap=$PK_WORK/build
	mkdir "$snap"
	tar -C "$BENCH_REPO" --exclude=./.git --exclude='*.o' --exclude='*.so' --exclude='*.bc' \
		--exclude=./results --exclude=./tmp_check --exclude=./log -cf - . | tar -C "$snap" -xf -
	PK_ROOT=$snap
}

# Start the private redis-server (daemonized, pid file in the temp dir).
redis_start() {
	pk_as_cluster_user redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
		--daemonize yes --pidfile "$PK_WORK/redis.pid" --dir "$PK_WORK" --logfile "$PK_WORK/redis.log"
	local i
	for ((i = 0; i < 100; i++)); do
		[[ $(redis-cli -p "$REDIS_PORT" PING 2>/dev/null || true) == PONG ]] && return 0
		sleep 0.1
	done
	bench_fail "redis-server did not start" "$PK_WORK/redis.log"
}

# Stop the private redis-server (also when stalled).
redis_stop() {
	local pid
	[[ -f $PK_WORK/redis.pid ]] || return 0
	pid=$(cat "$PK_WORK/redis.pid")
	kill -CONT "$pid" 2>/dev/null || true
	kill -TERM "$pid" 2>/dev/null || true
	while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
	rm -f "$PK_WORK/redis.pid"
}

# shellcheck disable=SC2317  # called by pk_cleanup (lib.sh) on exit: never leave redis-server behind
pk_exit_hook() { [[ -n ${PK_WORK:-} ]] && redis_stop; return 0; }

# Wait until the status view says COLUMN = VALUE (at most 30 s): wait_status COLUMN VALUE.
wait_status() {
	local i
	for ((i = 0; i < 300; i++)); do
		[[ $(bench_psql -c "SELECT $1 FROM perfkit.redis_status") == "$2" ]] && return 0
		sleep 0.1
	done
	bench_fail "perfkit.redis_status.$1 did not become $2" "$LOG"
}

# Set perfkit.redis_url (reload, no restart): set_url URL.
set_url() {
	bench_psql -c "ALTER SYSTEM SET perfkit.redis_url = '$1'" -c "SELECT pg_reload_conf()" >/dev/null
	if [[ -z $1 ]]; then wait_status enabled f; else wait_status enabled t; fi
}

# Put Redis into the state of a scenario.
enter_scenario() {
	case $1 in
	off) set_url '' ;;
	up) set_url "redis://127.0.0.1:$REDIS_PORT/0"; wait_status connected t ;;
	down) set_url "redis://127.0.0.1:$REDIS_PORT/0"; redis_stop ;;
	stalled) set_url "redis://127.0.0.1:$REDIS_PORT/0"; kill -STOP "$(cat "$PK_WORK/redis.pid")" ;;
	esac
}

# Bring Redis back after a scenario.
leave_scenario() {
	case $1 in
	down) redis_start ;;
	stalled) kill -CONT "$(cat "$PK_WORK/redis.pid")" ;;
	esac
}

# Counters of the push, space separated: pushed dropped_queue_full dropped_stale errors.
counters() {
	bench_psql -c "SELECT pushed, dropped_queue_full, dropped_stale, errors FROM perfkit.redis_status" | tr '|' ' '
}

# One measurement: measure SCENARIO ROUND.
measure() {
	local name=$1 r=$2 dir=$PK_WORK/logs/$1-$2 before after tps
	pk_say "round $r: $name"
	enter_scenario "$name"
	pk_as_cluster_user mkdir -p "$dir"
	pk_as_cluster_user pgbench -n -M prepared -c "$CLIENTS" -j "$JOBS" -T "$WARMUP" -f "$SCRIPT" \
		-h "$SOCK" -p "$PORT" postgres >"$dir.warmup" 2>&1 || bench_fail "pgbench warm-up failed" "$dir.warmup"
	read -r -a before <<<"$(counters)"
	PK_CWD=$dir pk_as_cluster_user pgbench -n -M prepared -c "$CLIENTS" -j "$JOBS" -T "$DURATION" \
		-f "$SCRIPT" -l --log-prefix="$dir/lat" -h "$SOCK" -p "$PORT" postgres >"$dir.out" 2>&1 ||
		bench_fail "pgbench failed" "$dir.out"
	grep -q 'failed transactions: 0 ' "$dir.out" || bench_fail "transactions failed in scenario $name" "$dir.out"
	read -r -a after <<<"$(counters)"
	leave_scenario "$name"
	tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' "$dir.out")
	TPS[$name]="${TPS[$name]:-} $tps"
	LATFILES[$name]="${LATFILES[$name]:-} $dir"
	local c0=${COUNTERS[$name]:-0 0 0 0} acc=() i
	read -r -a acc <<<"$c0"
	for i in 0 1 2 3; do acc[i]=$((acc[i] + after[i] - before[i])); done
	COUNTERS[$name]="${acc[*]}"
}

# Median of numbers.
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# Percentiles of the pooled per-transaction latencies of a scenario (ms): "p50 p99 p99.9 count".
percentiles() {
	local d
	for d in ${LATFILES[$1]}; do cat "$d"/lat.*; done | awk '{ print $3 / 1000 }' | sort -n |
		awk '{ v[NR] = $1 } END {
			p50 = v[int(NR * 0.50) > 0 ? int(NR * 0.50) : 1]
			p99 = v[int(NR * 0.99) > 0 ? int(NR * 0.99) : 1]
			p999 = v[int(NR * 0.999) > 0 ? int(NR * 0.999) : 1]
			printf "%.3f %.3f %.3f %d\n", p50, p99, p999, NR }'
}

report() {
	local s p ref=() c=() tps
	read -r -a ref <<<"$(percentiles off)"
	echo "Redis push latency benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "  machine:  nproc=$(nproc), $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)," \
		"load average at the end $(cut -d ' ' -f 1-3 /proc/loadavg)"
	echo "  server:   $("$PK_BINDIR/postgres" --version); perfkit $(git -C "$BENCH_REPO" describe --always --dirty 2>/dev/null || echo unknown); $(redis-server --version | cut -d ' ' -f 1-3)"
	echo "  workload: pgbench -M prepared -c $CLIENTS -j $JOBS -T $DURATION, SELECT by random id among $KEYS keys" \
		"(hot_calls 10)$([[ $WRITE_EVERY -gt 0 ]] && echo ", 1 UPDATE per ~$WRITE_EVERY transactions")"
	echo "  rounds:   $ROUNDS, interleaved ${SCENARIOS[*]}; ${WARMUP}s warm-up before each; latencies of all rounds pooled"
	echo
	printf '%-8s %10s %9s %9s %9s %7s %8s  %8s %8s %8s %7s\n' scenario tps 'p50 ms' 'p99 ms' 'p99.9 ms' \
		'p50/off' 'p99/off' pushed q_full stale errors
	for s in "${SCENARIOS[@]}"; do
		read -r -a p <<<"$(percentiles "$s")"
		read -r -a c <<<"${COUNTERS[$s]}"
		# shellcheck disable=SC2086
		tps=$(median ${TPS[$s]})
		printf '%-8s %10.0f %9s %9s %9s %7.2f %8.2f  %8s %8s %8s %7s\n' "$s" "$tps" "${p[0]}" "${p[1]}" "${p[2]}" \
			"$(awk -v a="${p[0]}" -v b="${ref[0]}" 'BEGIN { print a / b }')" \
			"$(awk -v a="${p[1]}" -v b="${ref[1]}" 'BEGIN { print a / b }')" "${c[0]}" "${c[1]}" "${c[2]}" "${c[3]}"
	done
	echo
	echo "pushed/q_full/stale/errors: perfkit.redis_status counters moved during the measurements of the scenario."
}

pk_traps
pk_deps
pk_workdir
bench_snapshot
pk_build
pk_temp_install

DATA=$PK_WORK/bench_data
SOCK=$PK_WORK/bench_sock
LOG=$PK_WORK/bench_server.log
SCRIPT=$PK_WORK/hot.sql

pk_say "creating the cluster and starting redis-server on 127.0.0.1:$REDIS_PORT"
if redis-cli -p "$REDIS_PORT" PING >/dev/null 2>&1; then
	pk_err "something already listens on 127.0.0.1:$REDIS_PORT: set REDIS_PORT"
	exit 1
fi
pk_as_cluster_user mkdir -p "$SOCK" "$PK_WORK/logs"
pk_init_cluster "$DATA" "$SOCK" "$PORT" <<EOF || bench_fail "initdb failed" "$PK_WORK/initdb.log"
# redis_latency.sh
shared_preload_libraries = 'perfkit'
perfkit.redis_hot_calls = 10
shared_buffers = 256MB
fsync = off
synchronous_commit = off
autovacuum = off
EOF
redis_start
pk_as_cluster_user pg_ctl -D "$DATA" -l "$LOG" -w -s start || bench_fail "server did not start" "$LOG"
bench_psql >/dev/null <<SQL
CREATE EXTENSION perfkit;
CREATE TABLE kv (id int PRIMARY KEY, v text NOT NULL);
INSERT INTO kv SELECT g, md5(g::text) FROM generate_series(1, $KEYS) g;
SQL
{
	printf '\\set id random(1, %s)\n' "$KEYS"
	printf 'SELECT id, v FROM kv WHERE id = :id;\n'
	if [[ $WRITE_EVERY -gt 0 ]]; then
		printf '\\set w random(1, %s)\n' "$WRITE_EVERY"
		printf '\\if :w = 1\nUPDATE kv SET v = md5(random()::text) WHERE id = :id;\n\\endif\n'
	fi
} | pk_as_cluster_user tee "$SCRIPT" >/dev/null

for ((round = 1; round <= ROUNDS; round++)); do
	for s in "${SCENARIOS[@]}"; do measure "$s" "$round"; done
done
pk_as_cluster_user pg_ctl -D "$DATA" -w -s -m fast stop
redis_stop

echo
report | tee "$PK_WORK/report.txt"
if [[ -n ${BENCH_OUT:-} ]]; then
	mkdir -p "$(dirname "$BENCH_OUT")"
	cp "$PK_WORK/report.txt" "$BENCH_OUT"
	pk_say "report written to $BENCH_OUT"
fi
pk_teardown
