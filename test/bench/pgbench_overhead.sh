#!/usr/bin/env bash
# test/bench/pgbench_overhead.sh — `make bench`: measure the throughput cost of perfkit's executor hooks
# with pgbench, against a server without any statement tracking and one with pg_stat_statements.
#
# Method
#   - Build perfkit from a snapshot of the working tree in the temp dir (other people's edits and
#     builds in the checkout do not interfere; assertion-enabled builds are refused), install it into
#     a private copy of PostgreSQL 15 (test/lib.sh) and create ONE throwaway cluster under the temp dir
#     (unix socket only, listen_addresses = ''), with the same base settings for every configuration
#     (shared_buffers = 256MB, fsync = off, synchronous_commit = off, full_page_writes = off, no
#     autovacuum, no timed checkpoints).  `pgbench -i -s $SCALE` runs once.
#   - A configuration is a name mapping to extra postgresql.conf lines (BENCH_CONF below).  Before each
#     measurement the lines are written to an include file and the server is restarted with them; the
#     script checks that the server knows every setting and preloads exactly the libraries asked for,
#     then runs CREATE EXTENSION IF NOT EXISTS for each preloaded library that is an extension.
#   - Rounds are interleaved (A B C A B C ...): slow drifts of the machine (other load, thermal or
#     frequency changes, table/index growth of the TPC-B workload) hit every configuration alike
#     instead of biasing whichever ran last.  Each measurement follows a short warm-up with the same
#     workload (buffers and backends warm after the restart) and starts with `pgbench -v`, i.e. a
#     VACUUM of all four pgbench tables (not timed): with autovacuum off, the dead rows of the TPC-B
#     updates would otherwise pile up over the rounds and slow down each later measurement.
#   - Per configuration the median TPS over the rounds is reported (robust to one disturbed round), with
#     the spread (max - min) / median as a noise indicator, the ratio of the median to vanilla's median
#     and, for every other tracking configuration, the ratio to pg_stat_statements' median.
#   - The machine may be shared: for each measurement the script also reports the "other load", the
#     CPU time used meanwhile by processes other than its server and pgbench (/proc/stat busy time
#     minus the CPU time of the postmaster with all its children, live or reaped, and of the pgbench
#     client), and the "steal", the CPU time the hypervisor gave to other guests, both as % of the
#     machine, and warns when their sum exceeds OTHER_LOAD_WARN: such figures say little.
#   - Target: perfkit >= 0.98 x vanilla, and not below pg_stat_statements.  The verdict line is
#     informational only (the exit status does not depend on it): ratios within the spread are noise.
#
# Environment (defaults in parentheses):
#   BENCH_CONFIGS ("vanilla pgss perfkit")  configurations to measure, in this order, names of BENCH_CONF
#   WORKLOAD (select)   select: `pgbench -S -M prepared`; tpcb: the built-in TPC-B-like script, -M prepared
#   ROUNDS (5)  DURATION (15 s per measurement)  WARMUP (2 s)  CLIENTS (2)  JOBS (2)  SCALE (10)
#   BENCH_OUT           also write the report to this file
#   BENCH_PORT (5498)   port number of the socket (no TCP listener, the socket lives in the temp dir)
#   PG_CONFIG, PK_SYSTEM_INSTALL=0 (do not also install into the system PostgreSQL), PK_KEEP=1 (keep
#   the temp dir with the server and pgbench logs) — see test/lib.sh.

set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

# Configurations: name -> extra postgresql.conf lines (one setting per line).  To add one, add an entry;
# put it into the default BENCH_CONFIGS only once the server knows all of its settings (otherwise the
# settings check after the restart fails).
declare -A BENCH_CONF=(
	[vanilla]="shared_preload_libraries = ''
compute_query_id = auto"
	[pgss]="shared_preload_libraries = 'pg_stat_statements'"
	[perfkit]="shared_preload_libraries = 'perfkit'"
	[perfkit_nplusoff]="shared_preload_libraries = 'perfkit'
perfkit.nplusone = off"
	[perfkit_analyze]="shared_preload_libraries = 'perfkit'
perfkit.slow_analyze = on"
	[perfkit_redis_on]="shared_preload_libraries = 'perfkit'
perfkit.redis_url = 'redis://127.0.0.1:1/0'"
)

# Settings shared by all configurations (appended to postgresql.conf once).
BENCH_BASE_CONF="shared_buffers = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
autovacuum = off
checkpoint_timeout = 1h
max_wal_size = 8GB"

read -r -a CONFIGS <<<"${BENCH_CONFIGS:-vanilla pgss perfkit}"
WORKLOAD=${WORKLOAD:-select}
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-15}
WARMUP=${WARMUP:-2}
CLIENTS=${CLIENTS:-2}
JOBS=${JOBS:-2}
SCALE=${SCALE:-10}
PORT=${BENCH_PORT:-5498}
TARGET_VS_VANILLA=0.98
OTHER_LOAD_WARN=5             # % of the machine taken by others (processes + steal) above which the report warns
BENCH_REPO=$PK_ROOT           # the checkout; PK_ROOT moves to a snapshot of it (bench_snapshot)
unset PERFKIT_ASSERTS PK_ASSERTS   # measure the production build

declare -A TPS=()   # config -> space-separated TPS of each round
declare -A OTHER=() # config -> space-separated OTHER/STEAL of each measurement (%, see bench_measure)
declare -A MEDIAN=()

# Copy the working tree (without .git and build products) to $PK_WORK/build and point PK_ROOT there, so
# that pk_build/pk_temp_install build from a fixed snapshot: concurrent edits, `make clean` or
# assertion-enabled builds (make test) in the shared checkout cannot change what is measured.
bench_snapshot() {
	local snap=$PK_WORK/build
	pk_say "snapshot of $BENCH_REPO in $snap"
	mkdir "$snap"
	tar -C "$BENCH_REPO" --exclude=./.git --exclude='*.o' --exclude='*.so' --exclude='*.bc' \
		--exclude=./results --exclude=./tmp_check --exclude=./output_iso --exclude=./log -cf - . |
		tar -C "$snap" -xf -
	PK_ROOT=$snap
}

# Fail if the perfkit.so of the private installation is an assertion-enabled build.
bench_check_build() {
	local so
	so=$("$PK_BINDIR/pg_config" --pkglibdir)/perfkit.so
	if ! command -v nm >/dev/null 2>&1; then
		pk_say "nm not found: cannot check that $so was built without assertions"
	elif nm -D --undefined-only "$so" | grep -qw ExceptionalCondition; then
		pk_err "$so is an assertion-enabled build (PERFKIT_ASSERTS=1?): not benchmarking it"
		exit 1
	fi
}

# Fail unless every parameter is a positive integer: bench_check_int NAME=VALUE...
bench_check_int() {
	local kv
	for kv in "$@"; do
		[[ ${kv#*=} =~ ^[1-9][0-9]*$ ]] || { pk_err "${kv%%=*} must be a positive integer, not '${kv#*=}'"; exit 2; }
	done
}

# Validate the environment and set WORKLOAD_ARGS.
bench_check_env() {
	local c
	bench_check_int ROUNDS="$ROUNDS" DURATION="$DURATION" WARMUP="$WARMUP" CLIENTS="$CLIENTS" \
		JOBS="$JOBS" SCALE="$SCALE" BENCH_PORT="$PORT"
	case $WORKLOAD in
	select) WORKLOAD_ARGS=(-S -M prepared) ;;
	tpcb) WORKLOAD_ARGS=(-M prepared) ;;
	*) pk_err "WORKLOAD must be select or tpcb, not '$WORKLOAD'"; exit 2 ;;
	esac
	[[ ${#CONFIGS[@]} -gt 0 ]] || { pk_err "BENCH_CONFIGS is empty"; exit 2; }
	for c in "${CONFIGS[@]}"; do
		[[ -v BENCH_CONF[$c] ]] || { pk_err "unknown configuration '$c'; known: ${!BENCH_CONF[*]}"; exit 2; }
	done
}

# Print the log file's tail and fail: bench_fail MESSAGE LOGFILE.
bench_fail() {
	pk_err "$1"
	if [[ -f $2 ]]; then tail -n 40 "$2" >&2; fi
	exit 1
}

# Run psql on the bench server as the cluster user: bench_psql DB ARGS...
bench_psql() {
	local db=$1
	shift
	pk_as_cluster_user psql -X -q -At -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -d "$db" "$@"
}

# Print the value of setting NAME in a block of conf lines (quotes removed): bench_conf_value NAME LINES.
bench_conf_value() {
	sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*//p" <<<"$2" | tail -n 1 | sed "s/^'\(.*\)'[[:space:]]*$/\1/"
}

# Create the cluster with the base settings and an include file for the configuration, start it with CONFIG.
bench_init_cluster() {
	pk_say "creating the cluster in $DATA"
	pk_as_cluster_user mkdir -p "$SOCK"
	pk_init_cluster "$DATA" "$SOCK" "$PORT" <<EOF || bench_fail "initdb failed" "$PK_WORK/initdb.log"
# pgbench_overhead.sh: the same for every configuration
$BENCH_BASE_CONF
# the configuration under test (rewritten before each restart)
include 'bench_config.conf'
EOF
	bench_write_config "${CONFIGS[0]}"
	pk_as_cluster_user pg_ctl -D "$DATA" -l "$LOG" -w -s start || bench_fail "server did not start" "$LOG"
	pk_say "pgbench -i -s $SCALE"
	pk_as_cluster_user createdb -h "$SOCK" -p "$PORT" pgbench
	pk_as_cluster_user pgbench -i -q -s "$SCALE" -h "$SOCK" -p "$PORT" pgbench \
		>"$PK_WORK/pgbench-init.log" 2>&1 || bench_fail "pgbench -i failed" "$PK_WORK/pgbench-init.log"
}

# Write the include file of configuration NAME.
bench_write_config() {
	printf '# configuration %s\n%s\n' "$1" "${BENCH_CONF[$1]}" |
		pk_as_cluster_user tee "$DATA/bench_config.conf" >/dev/null
}

# Fail unless the server knows every setting of configuration NAME and preloads exactly its libraries.
bench_check_config() {
	local name=$1 lines=${BENCH_CONF[$1]} line setting want got
	while IFS= read -r line; do
		[[ $line =~ ^[[:space:]]*([A-Za-z_][A-Za-z0-9_.]*)[[:space:]]*= ]] || continue
		setting=${BASH_REMATCH[1]}
		bench_psql postgres -c "SELECT current_setting('$setting')" >/dev/null 2>&1 ||
			bench_fail "configuration $name: the server does not know the setting $setting" "$LOG"
	done <<<"$lines"
	want=$(bench_conf_value shared_preload_libraries "$lines" | tr -d ' ')
	got=$(bench_psql postgres -c "SHOW shared_preload_libraries" | tr -d ' ')
	[[ $want == "$got" ]] ||
		bench_fail "configuration $name: shared_preload_libraries is '$got', expected '$want'" "$LOG"
}

# Restart the server with configuration NAME and create the extensions of its preloaded libraries.
bench_restart() {
	local name=$1 libs lib
	bench_write_config "$name"
	pk_as_cluster_user pg_ctl -D "$DATA" -l "$LOG" -w -s -m fast restart >/dev/null ||
		bench_fail "server did not restart with configuration $name" "$LOG"
	PM_PID=$(head -n 1 "$DATA/postmaster.pid")
	bench_check_config "$name"
	libs=$(bench_conf_value shared_preload_libraries "${BENCH_CONF[$name]}")
	IFS=', ' read -r -a libs <<<"$libs"
	for lib in "${libs[@]}"; do
		if [[ -n $lib && -f $SHAREDIR/extension/$lib.control ]]; then
			bench_psql pgbench -c "SET client_min_messages = warning" -c "CREATE EXTENSION IF NOT EXISTS $lib" ||
				bench_fail "configuration $name: CREATE EXTENSION $lib failed" "$LOG"
		fi
	done
}

# Run pgbench with the workload for SECONDS, output to LOGFILE: bench_pgbench SECONDS LOGFILE CLIENTS JOBS [OPTION...].
bench_pgbench() {
	local secs=$1 log=$2 clients=$3 jobs=$4
	shift 4
	pk_as_cluster_user pgbench "${WORKLOAD_ARGS[@]}" "$@" -c "$clients" -j "$jobs" -T "$secs" -h "$SOCK" -p "$PORT" \
		pgbench >"$log" 2>&1 || bench_fail "pgbench failed" "$log"
}

# Print the CPU ticks used so far by process PID and its reaped descendants: bench_proc_ticks PID.
bench_proc_ticks() {
	local stat
	stat=$(<"/proc/$1/stat")
	stat=${stat##*) }   # fields after "pid (comm) ": utime stime cutime cstime are the 12th to 15th
	awk '{ print $12 + $13 + $14 + $15 }' <<<"$stat"
}

# Print the CPU ticks used so far by the server: postmaster, reaped and live children (e.g. background workers).
bench_server_ticks() {
	local total pid t
	total=$(bench_proc_ticks "$PM_PID")
	for pid in $(pgrep -P "$PM_PID" || true); do
		t=$(bench_proc_ticks "$pid" 2>/dev/null) || continue   # exited meanwhile
		total=$((total + t))
	done
	echo "$total"
}

# Print the busy CPU ticks of the whole machine so far (user nice system irq softirq) and the steal ticks
# (time the hypervisor gave our virtual CPUs to someone else).
bench_busy_ticks() {
	awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8, $9; exit }' /proc/stat
}

# Wait (up to 5 s) until the server has no client backends left, so that their CPU time is accounted.
bench_wait_backends() {
	local i
	for ((i = 0; i < 50; i++)); do
		pgrep -P "$PM_PID" -f '^postgres: postgres ' >/dev/null || return 0
		sleep 0.1
	done
}

# Measure configuration NAME in round R: restart, warm up, measure; appends the TPS to TPS[NAME] and
# the CPU load of other processes during the measurement to OTHER[NAME].
bench_measure() {
	local name=$1 r=$2 log tps busy0 steal0 ours0 t0 busy1 steal1 ours1 t1 other steal
	log=$PK_WORK/pgbench-$name-$r.log
	bench_restart "$name"
	bench_pgbench "$WARMUP" "$PK_WORK/warmup-$name-$r.log" 2 2
	bench_wait_backends
	read -r busy0 steal0 < <(bench_busy_ticks)
	ours0=$(($(bench_server_ticks) + $(bench_proc_ticks $$)))
	t0=$EPOCHREALTIME
	bench_pgbench "$DURATION" "$log" "$CLIENTS" "$JOBS" -v
	bench_wait_backends
	read -r busy1 steal1 < <(bench_busy_ticks)
	ours1=$(($(bench_server_ticks) + $(bench_proc_ticks $$)))
	t1=$EPOCHREALTIME
	tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' "$log")
	[[ -n $tps ]] || bench_fail "no 'tps = N (without initial connection time)' line in the pgbench output" "$log"
	read -r other steal < <(awk -v b="$((busy1 - busy0))" -v s="$((steal1 - steal0))" -v o="$((ours1 - ours0))" \
		-v t0="$t0" -v t1="$t1" -v hz="$CLK_TCK" -v n="$NCPU" 'BEGIN {
			m = hz * (t1 - t0) * n; x = 100 * (b - o) / m
			printf "%.0f %.0f\n", x < 0 ? 0 : x, 100 * s / m
		}')
	TPS[$name]="${TPS[$name]:-}${TPS[$name]:+ }$tps"
	OTHER[$name]="${OTHER[$name]:-}${OTHER[$name]:+ }$other/$steal"
	printf '    round %d/%d  %-14s %12.1f tps   (other load %3d%%, steal %3d%%)\n' "$r" "$ROUNDS" "$name" "$tps" \
		"$other" "$steal"
}

# Print the median of the numbers given as arguments.
bench_median() {
	printf '%s\n' "$@" | sort -g |
		awk '{ v[NR] = $1 } END { if (NR % 2) printf "%.3f\n", v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# Print A / B with 3 decimals, or "-" when B is missing: bench_ratio A B.
bench_ratio() {
	if [[ -z ${2:-} ]]; then echo -; else awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f\n", a / b }'; fi
}

# Print the machine facts and the result table.
bench_report() {
	local c v vals spread pgver commit cpu max_other=0
	pgver=$("$PK_BINDIR/postgres" --version)
	commit=$(git -C "$BENCH_REPO" describe --always --dirty 2>/dev/null || echo unknown)
	cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
	echo "pgbench overhead benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "  machine:    nproc=$NCPU, ${cpu:-unknown CPU}, $(uname -r); load average at the end" \
		"$(cut -d ' ' -f 1-3 /proc/loadavg)"
	echo "  server:     $pgver; perfkit $commit (snapshot of the working tree, assertions off)"
	echo "  workload:   $WORKLOAD (pgbench ${WORKLOAD_ARGS[*]} -c $CLIENTS -j $JOBS -T $DURATION), scale $SCALE"
	echo "  rounds:     $ROUNDS, interleaved ${CONFIGS[*]}; before each measurement: restart, warm-up" \
		"${WARMUP}s, VACUUM (pgbench -v)"
	echo "  base conf:  $(tr '\n' ',' <<<"$BENCH_BASE_CONF" | sed 's/,$//; s/,/, /g')"
	echo
	printf '%-14s' config
	for ((v = 1; v <= ROUNDS; v++)); do printf ' %10s' "r$v"; done
	printf ' %10s %7s %10s %8s\n' median spread vs_vanilla vs_pgss
	for c in "${CONFIGS[@]}"; do
		read -r -a vals <<<"${TPS[$c]}"
		spread=$(printf '%s\n' "${vals[@]}" | sort -g |
			awk -v m="${MEDIAN[$c]}" '{ v[NR] = $1 } END { printf "%.1f%%\n", 100 * (v[NR] - v[1]) / m }')
		printf '%-14s' "$c"
		for v in "${vals[@]}"; do printf ' %10.1f' "$v"; done
		printf ' %10.1f %7s %10s' "${MEDIAN[$c]}" "$spread" "$(bench_ratio "${MEDIAN[$c]}" "${MEDIAN[vanilla]:-}")"
		if [[ $c == vanilla || $c == pgss ]]; then
			printf ' %8s\n' -
		else
			printf ' %8s\n' "$(bench_ratio "${MEDIAN[$c]}" "${MEDIAN[pgss]:-}")"
		fi
	done
	echo
	echo "other/steal: CPU used by processes other than this benchmark's server and pgbench / CPU time"
	echo "stolen by the hypervisor, during each measurement, in % of the machine (noise that the"
	echo "interleaving cannot cancel)"
	printf '%-14s' config
	for ((v = 1; v <= ROUNDS; v++)); do printf ' %10s' "r$v"; done
	printf '\n'
	for c in "${CONFIGS[@]}"; do
		printf '%-14s' "$c"
		for v in ${OTHER[$c]}; do
			printf ' %10s' "$v"
			((${v%/*} + ${v#*/} <= max_other)) || max_other=$((${v%/*} + ${v#*/}))
		done
		printf '\n'
	done
	if ((max_other > OTHER_LOAD_WARN)); then
		echo
		echo "WARNING: other processes and the hypervisor took up to ${max_other}% of the CPUs during a" \
			"measurement: the figures are disturbed; rerun on an otherwise idle machine."
	fi
	if [[ -v MEDIAN[perfkit] && -v MEDIAN[vanilla] ]]; then
		echo
		awk -v p="${MEDIAN[perfkit]}" -v v="${MEDIAN[vanilla]}" -v s="${MEDIAN[pgss]:-}" -v t="$TARGET_VS_VANILLA" 'BEGIN {
			printf "target: perfkit/vanilla = %.3f (>= %.2f: %s)", p / v, t, (p / v >= t ? "met" : "NOT met")
			if (s != "") printf "; perfkit/pgss = %.3f (>= 1: %s)", p / s, (p >= s ? "met" : "NOT met")
			printf "\n"
		}'
	fi
}

pk_traps
bench_check_env
pk_deps
pk_workdir
bench_snapshot
pk_build
pk_temp_install
bench_check_build

DATA=$PK_WORK/bench_data
SOCK=$PK_WORK/bench_sock
LOG=$PK_WORK/bench_server.log
SHAREDIR=$("$PK_BINDIR/pg_config" --sharedir)
CLK_TCK=$(getconf CLK_TCK)
NCPU=$(nproc)

bench_init_cluster
pk_say "measuring: workload $WORKLOAD, $ROUNDS rounds x (${CONFIGS[*]}), ${DURATION}s each"
for ((round = 1; round <= ROUNDS; round++)); do
	for c in "${CONFIGS[@]}"; do bench_measure "$c" "$round"; done
done
pk_as_cluster_user pg_ctl -D "$DATA" -w -s -m fast stop

for c in "${CONFIGS[@]}"; do
	read -r -a vals <<<"${TPS[$c]}"
	MEDIAN[$c]=$(bench_median "${vals[@]}")
done
echo
bench_report | tee "$PK_WORK/report.txt"
if [[ -n ${BENCH_OUT:-} ]]; then
	mkdir -p "$(dirname "$BENCH_OUT")"
	cp "$PK_WORK/report.txt" "$BENCH_OUT"
	pk_say "report written to $BENCH_OUT"
fi
pk_teardown
