#!/usr/bin/env bash
# test/bench/instructions_per_statement.sh — `make bench-instructions`: CPU instructions that each
# configuration spends per statement (or per write transaction), counted by valgrind's callgrind (an
# instruction count, so the figure does not depend on what else the machine is doing, unlike TPS on a
# shared 2-vCPU box).
#
# Method
#   - One template data directory is made once (initdb, then in single-user mode): a 100,000-row
#     table `accounts` for the lookups and pgbench-like tables (scale 1: pgbench_accounts with
#     100,000 rows, pgbench_tellers 10, pgbench_branches 1, pgbench_history empty) with primary keys,
#     VACUUM ANALYZE and CHECKPOINT.
#   - For each configuration the server runs in single-user mode (`postgres --single`, which loads
#     shared_preload_libraries and hooks as a normal backend does) under callgrind, twice: with N1 and
#     with N2 statements (or transactions).  The difference divided by N2 - N1 is the cost of one,
#     start-up and shutdown excluded (but for write, the shutdown checkpoint's extra dirty pages).
#     Both runs read the same pseudo-random values (awk srand(42)), so the N2 run starts with the N1
#     run's statements.
#   - Every callgrind run starts from a fresh copy (`cp -a`) of the template: earlier runs' updates,
#     dead tuples, history rows and the statistics files that pg_stat_statements and perfkit save at
#     shutdown (perfkit.save) do not reach later runs.
#   - Per workload the configurations are interleaved (round 1: every configuration, round 2: ...),
#     the N1 and N2 runs of one configuration adjacent.  Instruction counts hardly vary between
#     rounds, so ROUNDS=1 is enough; with more, the median per configuration is reported.
#   - Workloads: "simple" (a new primary-key lookup text each time: parse, plan, execute — the simple
#     protocol), "prepared" (EXECUTE of a prepared lookup) and "write", a pgbench-like (TPC-B) write
#     transaction sent as simple-protocol statements, one per line (in single-user mode a line is a
#     command, and a transaction block spans lines):
#       BEGIN; UPDATE pgbench_accounts; SELECT abalance; UPDATE pgbench_tellers;
#       UPDATE pgbench_branches; INSERT INTO pgbench_history; END;
#     The write figure is per transaction, i.e. per 7 statements, and averages over transactions
#     N1+1..N2 of a growing history table and of HOT chains on the one branch row.
#   - Configurations (name -> settings on the postgres command line, IPS_CONF below):
#       vanilla               nothing preloaded
#       pgss                  pg_stat_statements with its defaults
#       perfkit               perfkit with all defaults: statistics with utility statements, slow-query
#                             check (1 s), N+1 detection, index advisor sampling (10%)
#       perfkit_no_nplusone   perfkit.nplusone = off
#       perfkit_no_advisor    perfkit.advisor_sample_rate = 0
#       perfkit_no_slowlog    perfkit.slow_threshold = -1 (no slow-query check)
#       perfkit_no_utility    perfkit.track_utility = off (BEGIN/END of the write workload unrecorded)
#       perfkit_stats_only    all three detectors off: statistics only, what pg_stat_statements does
#     The Redis push is off by default (perfkit.redis_url = ''), so there is nothing to turn off: the
#     checks its hooks make while it is off are part of every perfkit figure.  Index builds run only on
#     request (and their background workers do not run in single-user mode).  Also available, not in
#     the default list: perfkit_analyze (perfkit.slow_analyze = on).
#   - Report: one Markdown table per workload (to paste into the README): instructions per statement
#     (per transaction for write), ratio to vanilla, difference to pgss and to perfkit (for the
#     perfkit_no_* lines, minus what that feature costs).
#   - Noise: the same configuration differs between runs by up to ~100 instructions per lookup and a
#     few hundred per write transaction (the advisor's 10% sample is drawn at random, and start-up
#     state such as timestamps varies), so differences below that say nothing.
#
# Environment (defaults in parentheses):
#   BENCH_CONFIGS ("vanilla pgss perfkit perfkit_no_nplusone perfkit_no_advisor perfkit_no_slowlog
#                  perfkit_no_utility perfkit_stats_only")  names of IPS_CONF, reported in this order
#   BENCH_WORKLOADS ("simple prepared write")
#   N1 (500), N2 (2500)          lookups of the short and the long run (simple, prepared)
#   WRITE_N1 (200), WRITE_N2 (1000)  transactions of the short and the long run (write)
#   ROUNDS (1)                   interleaved rounds; the median is reported
#   IPS_PROFILE=1                keep the callgrind files of the N1 and N2 runs of perfkit and vanilla
#                                (first round) in IPS_PROFILE_DIR (/tmp/perfkit-ips-profile), named
#                                callgrind.WORKLOAD.CONFIG.n1.out / .n2.out, and print per workload
#                                the 25 perfkit functions (those in perfkit.so) with the most own
#                                instructions (callgrind_annotate --inclusive=no) per statement or
#                                transaction — the N2 run's count minus the N1 run's, divided by
#                                N2 - N1 — and the 25 functions of any object (PostgreSQL's too)
#                                whose own instructions grow most from vanilla to perfkit.  Debian's
#                                PostgreSQL 15 is stripped: its static functions (the query
#                                jumbler's, for one) show as ???:0x...; the majors built from source
#                                have their names
#   PG_MAJOR, PG_CONFIG, PK_SYSTEM_INSTALL=0, PK_KEEP=1 — see test/lib.sh.

set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

# Configuration name -> postgres command-line settings.
PK_PRELOAD="-c shared_preload_libraries=perfkit"
declare -A IPS_CONF=(
	[vanilla]="-c shared_preload_libraries="
	[pgss]="-c shared_preload_libraries=pg_stat_statements"
	[perfkit]="$PK_PRELOAD"
	[perfkit_no_nplusone]="$PK_PRELOAD -c perfkit.nplusone=off"
	[perfkit_no_advisor]="$PK_PRELOAD -c perfkit.advisor_sample_rate=0"
	[perfkit_no_slowlog]="$PK_PRELOAD -c perfkit.slow_threshold=-1"
	[perfkit_no_utility]="$PK_PRELOAD -c perfkit.track_utility=off"
	[perfkit_stats_only]="$PK_PRELOAD -c perfkit.nplusone=off -c perfkit.advisor_sample_rate=0 -c perfkit.slow_threshold=-1"
	[perfkit_analyze]="$PK_PRELOAD -c perfkit.slow_analyze=on"
)
read -r -a CONFIGS <<<"${BENCH_CONFIGS:-vanilla pgss perfkit perfkit_no_nplusone perfkit_no_advisor perfkit_no_slowlog perfkit_no_utility perfkit_stats_only}"
read -r -a WORKLOADS <<<"${BENCH_WORKLOADS:-simple prepared write}"
N1=${N1:-500}
N2=${N2:-2500}
WRITE_N1=${WRITE_N1:-200}
WRITE_N2=${WRITE_N2:-1000}
ROUNDS=${ROUNDS:-1}
IPS_PROFILE=${IPS_PROFILE:-0}
IPS_PROFILE_DIR=${IPS_PROFILE_DIR:-/tmp/perfkit-ips-profile}

for c in "${CONFIGS[@]}"; do
	[[ -n ${IPS_CONF[$c]+set} ]] || { pk_err "unknown configuration $c (known: ${!IPS_CONF[*]})"; exit 2; }
done
for w in "${WORKLOADS[@]}"; do
	[[ $w == simple || $w == prepared || $w == write ]] || { pk_err "unknown workload $w"; exit 2; }
done
if [[ $N2 -le $N1 || $WRITE_N2 -le $WRITE_N1 ]]; then
	pk_err "N2 must be greater than N1 (and WRITE_N2 than WRITE_N1)"
	exit 2
fi

# Write the statements of one run: ips_script WORKLOAD N FILE.
ips_script() {
	local workload=$1 n=$2 file=$3
	case $workload in
	simple)
		awk -v n="$n" 'BEGIN { srand(42); for (i = 0; i < n; i++) printf "SELECT abalance FROM accounts WHERE aid = %d;\n", 1 + int(rand() * 100000) }'
		;;
	prepared)
		echo "PREPARE q(int) AS SELECT abalance FROM accounts WHERE aid = \$1;"
		awk -v n="$n" 'BEGIN { srand(42); for (i = 0; i < n; i++) printf "EXECUTE q(%d);\n", 1 + int(rand() * 100000) }'
		;;
	write)
		# pgbench's tpcb-like script at scale 1, its random values drawn the same way
		awk -v n="$n" 'BEGIN {
			srand(42)
			for (i = 0; i < n; i++) {
				aid = 1 + int(rand() * 100000); tid = 1 + int(rand() * 10); bid = 1
				delta = -5000 + int(rand() * 10001)
				print "BEGIN;"
				printf "UPDATE pgbench_accounts SET abalance = abalance + %d WHERE aid = %d;\n", delta, aid
				printf "SELECT abalance FROM pgbench_accounts WHERE aid = %d;\n", aid
				printf "UPDATE pgbench_tellers SET tbalance = tbalance + %d WHERE tid = %d;\n", delta, tid
				printf "UPDATE pgbench_branches SET bbalance = bbalance + %d WHERE bid = %d;\n", delta, bid
				printf "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (%d, %d, %d, %d, CURRENT_TIMESTAMP);\n", tid, bid, aid, delta
				print "END;"
			}
		}'
		;;
	esac >"$file"
	chmod 644 "$file"
}

# Instructions of one single-user run on a fresh copy of the template, into IPS_COUNT:
# ips_count CONFIG FILE [CALLGRIND_OUT].
ips_count() {
	local conf=$1 file=$2 out=${3:-/dev/null} log=$PK_WORK/callgrind.log
	pk_as_cluster_user rm -rf "$PK_WORK/ips_run"
	pk_as_cluster_user cp -a "$PK_WORK/ips_template" "$PK_WORK/ips_run"
	# shellcheck disable=SC2086  # the settings are separate words on purpose
	if ! pk_as_cluster_user valgrind --tool=callgrind --callgrind-out-file="$out" --log-file="$log" \
		postgres --single -D "$PK_WORK/ips_run" ${IPS_CONF[$conf]} postgres <"$file" >"$PK_WORK/ips_run.out" 2>&1 ||
		grep -q -E '(ERROR|FATAL|PANIC):' "$PK_WORK/ips_run.out"; then
		pk_err "$conf on $(basename "$file") failed:"
		grep -m 5 -E '(ERROR|FATAL|PANIC):' "$PK_WORK/ips_run.out" >&2 || tail -n 5 "$PK_WORK/ips_run.out" >&2
		exit 1
	fi
	IPS_COUNT=$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$log")
	[[ -n $IPS_COUNT ]] || { pk_err "no instruction count in $log"; exit 1; }
}

# Print the median of the integers given as arguments.
ips_median() {
	printf '%s\n' "$@" | sort -n |
		awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%d\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# Print a number with thousands separators.
ips_num() { printf '%d' "$1" | sed -E ':a; s/^([0-9]+)([0-9]{3})/\1,\2/; ta'; }

# Print a signed difference with thousands separators ("+1,234", "-56", "0"), or "–" without a base.
ips_diff() {
	if [[ -z ${2:-} ]]; then echo "–"; return; fi
	local d=$(($1 - $2))
	if [[ $d -eq 0 ]]; then echo 0; elif [[ $d -gt 0 ]]; then echo "+$(ips_num "$d")"; else echo "-$(ips_num $((-d)))"; fi
}

# Own instructions per statement (or transaction) of every function, from the callgrind files of an
# N1 and an N2 run: (N2 count - N1 count) / (N2 - N1), as "count<TAB>file:function (object)" lines.
# ips_functions N1_FILE N2_FILE N2-N1
ips_functions() {
	local f
	for f in "$1" "$2"; do
		callgrind_annotate --inclusive=no --threshold=100 "$f" 2>/dev/null |
			awk -v tag="$f" '/^ *[0-9,]+ +\( *[0-9.]+%\) +.* \[[^]]*\]$/ {
				n = $1; gsub(/,/, "", n)
				sub(/^ *[0-9,]+ +\( *[0-9.]+%\) +/, "")
				obj = $0; sub(/.* \[/, "", obj); sub(/\]$/, "", obj); sub(/.*\//, "", obj)
				sub(/ \[[^]]*\]$/, "")
				print tag "\t" n "\t" $0 " (" obj ")"
			}'
	done | awk -F '\t' -v first="$1" -v n="$3" '
		$1 == first { a[$3] += $2; next }
		{ b[$3] += $2 }
		END {
			for (k in a) if (!(k in b)) b[k] = 0
			for (k in b) printf "%.1f\t%s\n", (b[k] - a[k]) / n, k
		}'
}

# Print the top 25 of the "count<TAB>name" lines on stdin, by count, then the sum of all of them
# labelled TOTAL: ips_top TOTAL.
ips_top() {
	sort -t "$(printf '\t')" -k1,1 -rn | awk -F '\t' -v label="$1" '
		{ total += $1 } NR <= 25 { printf "%10.1f  %s\n", $1, $2 }
		END { printf "%10.1f  %s\n", total, label }'
}

command -v valgrind >/dev/null || { pk_err "valgrind is needed (apt-get install valgrind)"; exit 2; }
pk_traps
pk_deps
pk_build
pk_workdir
pk_temp_install

pk_say "creating the template data directory"
pk_as_cluster_user initdb -D "$PK_WORK/ips_template" -A trust --no-sync --no-instructions >/dev/null
# one command per line: single-user mode ends a command at each newline
pk_as_cluster_user postgres --single -D "$PK_WORK/ips_template" postgres >"$PK_WORK/setup.out" 2>&1 <<'SQL'
CREATE TABLE accounts (aid int PRIMARY KEY, abalance int NOT NULL DEFAULT 0, filler char(84));
INSERT INTO accounts SELECT g, 0, '' FROM generate_series(1, 100000) g;
CREATE TABLE pgbench_branches (bid int NOT NULL, bbalance int, filler char(88)) WITH (fillfactor = 100);
CREATE TABLE pgbench_tellers (tid int NOT NULL, bid int, tbalance int, filler char(84)) WITH (fillfactor = 100);
CREATE TABLE pgbench_accounts (aid int NOT NULL, bid int, abalance int, filler char(84)) WITH (fillfactor = 100);
CREATE TABLE pgbench_history (tid int, bid int, aid int, delta int, mtime timestamp, filler char(22));
INSERT INTO pgbench_branches (bid, bbalance) VALUES (1, 0);
INSERT INTO pgbench_tellers (tid, bid, tbalance) SELECT g, 1, 0 FROM generate_series(1, 10) g;
INSERT INTO pgbench_accounts (aid, bid, abalance, filler) SELECT g, 1, 0, '' FROM generate_series(1, 100000) g;
ALTER TABLE pgbench_branches ADD PRIMARY KEY (bid);
ALTER TABLE pgbench_tellers ADD PRIMARY KEY (tid);
ALTER TABLE pgbench_accounts ADD PRIMARY KEY (aid);
VACUUM ANALYZE;
CHECKPOINT;
SQL
if grep -q -E '(ERROR|FATAL|PANIC):' "$PK_WORK/setup.out"; then
	pk_err "creating the tables failed:"
	grep -E '(ERROR|FATAL|PANIC):' "$PK_WORK/setup.out" >&2
	exit 1
fi
if [[ $IPS_PROFILE == 1 ]]; then
	mkdir -p "$IPS_PROFILE_DIR"
fi

declare -A PER=()
for workload in "${WORKLOADS[@]}"; do
	n1=$N1 n2=$N2 unit=statement
	if [[ $workload == write ]]; then n1=$WRITE_N1 n2=$WRITE_N2 unit=transaction; fi
	ips_script "$workload" "$n1" "$PK_WORK/s1.sql"
	ips_script "$workload" "$n2" "$PK_WORK/s2.sql"
	declare -A ALL=()
	for ((r = 1; r <= ROUNDS; r++)); do
		for c in "${CONFIGS[@]}"; do
			out1=/dev/null out2=/dev/null
			if [[ $IPS_PROFILE == 1 && $r == 1 && ($c == perfkit || $c == vanilla) ]]; then
				out1=$PK_WORK/callgrind.$workload.$c.n1.out out2=$PK_WORK/callgrind.$workload.$c.n2.out
			fi
			ips_count "$c" "$PK_WORK/s1.sql" "$out1"
			i1=$IPS_COUNT
			ips_count "$c" "$PK_WORK/s2.sql" "$out2"
			i2=$IPS_COUNT
			if [[ $out2 != /dev/null ]]; then cp "$out1" "$out2" "$IPS_PROFILE_DIR/"; fi
			per=$(((i2 - i1) / (n2 - n1)))
			ALL[$c]="${ALL[$c]:-} $per"
			printf '    %-9s round %d  %-20s %10d instructions per %s\n' "$workload" "$r" "$c" "$per" "$unit"
		done
	done
	for c in "${CONFIGS[@]}"; do
		# shellcheck disable=SC2086  # a list of numbers
		PER[$workload.$c]=$(ips_median ${ALL[$c]})
	done
	unset ALL
done

# The base of the ratio: vanilla, or the first configuration when vanilla was not measured.
base=${CONFIGS[0]}
for c in "${CONFIGS[@]}"; do [[ $c == vanilla ]] && base=vanilla; done
has() { local c; for c in "${CONFIGS[@]}"; do [[ $c == "$1" ]] && return 0; done; return 1; }

pg_version=$("$PK_BINDIR/postgres" --version | awk '{ print $3 }')
for workload in "${WORKLOADS[@]}"; do
	if [[ $workload == write ]]; then
		echo
		echo "write: instructions per pgbench-like transaction (7 statements; callgrind, PostgreSQL $pg_version," \
			"$((WRITE_N2 - WRITE_N1)) = $WRITE_N2 - $WRITE_N1 transactions, single-user mode)"
		col="per transaction"
	else
		echo
		echo "$workload: instructions per primary-key lookup (callgrind, PostgreSQL $pg_version," \
			"$((N2 - N1)) = $N2 - $N1 statements, single-user mode)"
		col="per statement"
	fi
	echo
	echo "| configuration | instructions $col | vs $base | Δ vs pgss | Δ vs perfkit |"
	echo "|---|---:|---:|---:|---:|"
	for c in "${CONFIGS[@]}"; do
		v=${PER[$workload.$c]}
		pgss=
		pk=
		if has pgss; then pgss=${PER[$workload.pgss]}; fi
		if has perfkit; then pk=${PER[$workload.perfkit]}; fi
		printf '| %s | %s | %s | %s | %s |\n' "$c" "$(ips_num "$v")" \
			"$(awk -v a="$v" -v b="${PER[$workload.$base]}" 'BEGIN { printf "%.3f", a / b }')" \
			"$(ips_diff "$v" "$pgss")" "$(ips_diff "$v" "$pk")"
	done
done

if [[ $IPS_PROFILE == 1 ]] && has perfkit; then
	for workload in "${WORKLOADS[@]}"; do
		n1=$N1 n2=$N2 unit=statement
		if [[ $workload == write ]]; then n1=$WRITE_N1 n2=$WRITE_N2 unit=transaction; fi
		prof=$IPS_PROFILE_DIR/callgrind.$workload
		ips_functions "$prof.perfkit.n1.out" "$prof.perfkit.n2.out" "$((n2 - n1))" >"$PK_WORK/prof.perfkit"
		echo
		echo "$workload, perfkit: own instructions (callgrind_annotate --inclusive=no) per $unit of its 25" \
			"most expensive functions, (N2 run - N1 run) / $((n2 - n1))"
		echo
		grep -F '(perfkit.so)' "$PK_WORK/prof.perfkit" | ips_top "all perfkit functions, per $unit"
		if has vanilla; then
			ips_functions "$prof.vanilla.n1.out" "$prof.vanilla.n2.out" "$((n2 - n1))" >"$PK_WORK/prof.vanilla"
			echo
			echo "$workload, perfkit - vanilla: the 25 functions of any object whose own instructions per $unit" \
				"grow most with perfkit (perfkit's own, and PostgreSQL's that it calls)"
			echo
			awk -F '\t' 'NR == FNR { v[$2] = $1; next } { d = $1 - v[$2]; if (d > 0) printf "%.1f\t%s\n", d, $2 }' \
				"$PK_WORK/prof.vanilla" "$PK_WORK/prof.perfkit" | ips_top "all functions that grow, per $unit"
		fi
	done
	echo
	echo "callgrind files (N1 and N2 runs of perfkit and vanilla per workload): $IPS_PROFILE_DIR"
fi
