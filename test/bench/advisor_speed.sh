#!/usr/bin/env bash
# test/bench/advisor_speed.sh — how long does perfkit.index_recommendations take over a large workload?
#
# Method
#   - Build perfkit, install it into a private copy of PostgreSQL 15 (test/lib.sh), create one throwaway
#     cluster under the temp dir (unix socket only) with perfkit preloaded and
#     perfkit.advisor_sample_rate = 1, so every statement is collected.
#   - $TABLES tables t1..tN of $ROWS rows with eight integer columns c1..c8 of different
#     selectivities (c1 unique ... c8 with 8 values), ANALYZEd, no index but the primary key; the
#     statistics are reset after the load, so that its rows do not count as writes.
#   - $STATEMENTS distinct statement shapes, each run once: per table, an equality on one column,
#     an equality plus a range on another, an equality ordered by another column with LIMIT, and
#     joins of two tables on one column; the shapes differ in their columns, so each is its own
#     fingerprint in perfkit.statements and in the advisor's table.
#   - Timed: SELECT count(*) FROM perfkit.index_recommendations, $RUNS times (the first one warms
#     the caches): every statement planned without and with each candidate and join pair it may
#     use, then the greedy search, which plans again after each step the statements the new index
#     may change; reported: statements collected, recommendations, every run's time and the median.
#
# Environment (defaults in parentheses): TABLES (20), ROWS (20000), STATEMENTS (1000), RUNS (5),
# BENCH_PORT (5496), PG_CONFIG, PK_SYSTEM_INSTALL=0, PK_KEEP=1 (see test/lib.sh).

set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

TABLES=${TABLES:-20}
ROWS=${ROWS:-20000}
STATEMENTS=${STATEMENTS:-1000}
RUNS=${RUNS:-5}
PORT=${BENCH_PORT:-5496}

# Run psql on the bench server as the cluster user (unaligned, tuples only, stop on error).
adv_psql() {
	pk_as_cluster_user psql -X -q -At -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -d postgres "$@"
}

# Print the statements of the workload, one per line, distinct shapes first-come.
adv_workload() {
	awk -v tables="$TABLES" -v want="$STATEMENTS" 'BEGIN {
		n = 0
		for (round = 0; n < want && round < 64; round++)
			for (t = 1; t <= tables && n < want; t++) {
				a = 1 + (round % 8); b = 1 + ((round / 8 + a) % 8); if (b == a) b = 1 + (b % 8)
				kind = int(round / 16) % 4
				if (kind == 0)
					printf "SELECT count(*) FROM t%d WHERE c%d = %d AND c%d >= 0;\n", t, a, round, b
				else if (kind == 1)
					printf "SELECT count(*) FROM t%d WHERE c%d = %d AND c%d BETWEEN 10 AND 20;\n", t, a, round, b
				else if (kind == 2)
					printf "SELECT id FROM t%d WHERE c%d = %d ORDER BY c%d DESC LIMIT 5;\n", t, a, round, b
				else
					printf "SELECT count(*) FROM t%d x JOIN t%d y ON y.c%d = x.id WHERE x.c%d = %d;\n", t, 1 + (t % tables), a, b, round
				n++
			}
	}'
}

pk_traps
pk_deps
pk_build
pk_workdir
pk_temp_install
DATA=$PK_WORK/data
SOCK=$PK_WORK/sock
LOG=$PK_WORK/server.log
pk_init_cluster "$DATA" "$SOCK" "$PORT" <<EOF || { pk_err "initdb failed"; exit 1; }
shared_preload_libraries = 'perfkit'
perfkit.advisor_sample_rate = 1
perfkit.track = all
max_parallel_workers_per_gather = 0
fsync = off
autovacuum = off
EOF
pk_as_cluster_user pg_ctl -D "$DATA" -l "$LOG" -w -s start || { tail -n 30 "$LOG"; exit 1; }

pk_say "loading $TABLES tables of $ROWS rows"
{
	echo "CREATE EXTENSION perfkit;"
	for ((t = 1; t <= TABLES; t++)); do
		echo "CREATE TABLE t$t (id int PRIMARY KEY, c1 int, c2 int, c3 int, c4 int, c5 int, c6 int, c7 int, c8 int);"
		echo "INSERT INTO t$t SELECT i, i, i % 5000, i % 2000, i % 1000, i % 500, i % 100, i % 20, i % 8 FROM generate_series(1, $ROWS) i;"
	done
	echo "ANALYZE;"
	echo "SELECT perfkit.reset_index_advisor();"
	echo "SELECT perfkit.reset();   -- the load is not the workload"
} | adv_psql >/dev/null

pk_say "running $STATEMENTS statement shapes"
adv_workload | adv_psql >/dev/null
collected=$(adv_psql -c "SELECT count(DISTINCT queryid) FROM perfkit.statements WHERE query ~ '^SELECT (count|id)'")

times=()
for ((r = 1; r <= RUNS; r++)); do
	out=$(adv_psql <<'SQL'
\timing on
SELECT count(*) FROM perfkit.index_recommendations;
SQL
	)
	recs=$(sed -n '1p' <<<"$out")
	times+=("$(sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' <<<"$out")")
done
pk_as_cluster_user pg_ctl -D "$DATA" -w -s -m fast stop

median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
echo
echo "advisor speed: $collected statements collected, $recs recommendations"
echo "runs (ms): ${times[*]}"
echo "median: $median ms"
