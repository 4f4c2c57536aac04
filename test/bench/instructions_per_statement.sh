#!/usr/bin/env bash
# test/bench/instructions_per_statement.sh — `make bench-instructions`: CPU instructions that each
# configuration spends per statement, counted by valgrind's callgrind (an instruction count, so the
# figure does not depend on what else the machine is doing, unlike TPS on a shared 2-vCPU box).
#
# Method: one throwaway data directory with a 100,000-row table; for each configuration the server
# runs in single-user mode (`postgres --single`, which loads shared_preload_libraries and hooks as
# a normal backend does) under callgrind, twice: with N1 and with N2 primary-key lookups.  The
# difference divided by N2 - N1 is the cost of one statement, start-up excluded.  Two workloads:
# "simple" (a new statement text each time: parse, plan, execute — the simple protocol) and
# "prepared" (EXECUTE of a prepared statement).  Reported: instructions per statement and the
# ratio to vanilla.
#
# Environment: BENCH_CONFIGS (default "vanilla pgss perfkit perfkit_nplusoff"; also perfkit_noadvisor,
# perfkit_analyze), N1 (500), N2 (2500).

set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

# Configuration name -> postgres command-line settings.
declare -A IPS_CONF=(
	[vanilla]="-c shared_preload_libraries="
	[pgss]="-c shared_preload_libraries=pg_stat_statements"
	[perfkit]="-c shared_preload_libraries=perfkit"
	[perfkit_nplusoff]="-c shared_preload_libraries=perfkit -c perfkit.nplusone=off"
	[perfkit_noadvisor]="-c shared_preload_libraries=perfkit -c perfkit.advisor_sample_rate=0"
	[perfkit_analyze]="-c shared_preload_libraries=perfkit -c perfkit.slow_analyze=on"
)
read -r -a CONFIGS <<<"${BENCH_CONFIGS:-vanilla pgss perfkit perfkit_nplusoff}"
N1=${N1:-500}
N2=${N2:-2500}

# Write the statements of one run: ips_script WORKLOAD N FILE.
ips_script() {
	local workload=$1 n=$2 file=$3
	{
		if [[ $workload == prepared ]]; then
			echo "PREPARE q(int) AS SELECT abalance FROM accounts WHERE aid = \$1;"
			awk -v n="$n" 'BEGIN { srand(42); for (i = 0; i < n; i++) printf "EXECUTE q(%d);\n", 1 + int(rand() * 100000) }'
		else
			awk -v n="$n" 'BEGIN { srand(42); for (i = 0; i < n; i++) printf "SELECT abalance FROM accounts WHERE aid = %d;\n", 1 + int(rand() * 100000) }'
		fi
	} >"$file"
}

# Instructions of one single-user run: ips_count CONFIG FILE.
ips_count() {
	local conf=$1 file=$2 log
	log=$PK_WORK/callgrind.$RANDOM.log
	# shellcheck disable=SC2086  # the settings are separate words on purpose
	pk_as_cluster_user valgrind --tool=callgrind --callgrind-out-file=/dev/null --log-file="$log" \
		postgres --single -D "$PK_WORK/ips_data" ${IPS_CONF[$conf]} postgres <"$file" >/dev/null 2>&1
	sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$log"
}

command -v valgrind >/dev/null || { pk_err "valgrind is needed (apt-get install valgrind)"; exit 2; }
pk_traps
pk_deps
pk_build
pk_workdir
pk_temp_install

pk_say "creating the data directory"
pk_as_cluster_user initdb -D "$PK_WORK/ips_data" -A trust --no-sync --no-instructions >/dev/null
pk_as_cluster_user postgres --single -D "$PK_WORK/ips_data" postgres >/dev/null <<'SQL'
CREATE TABLE accounts (aid int PRIMARY KEY, abalance int NOT NULL DEFAULT 0, filler char(84));
INSERT INTO accounts SELECT g, 0, '' FROM generate_series(1, 100000) g;
VACUUM ANALYZE accounts;
SQL

declare -A PER=()
for workload in simple prepared; do
	ips_script "$workload" "$N1" "$PK_WORK/s1.sql"
	ips_script "$workload" "$N2" "$PK_WORK/s2.sql"
	chmod 644 "$PK_WORK"/s[12].sql
	for c in "${CONFIGS[@]}"; do
		i1=$(ips_count "$c" "$PK_WORK/s1.sql")
		i2=$(ips_count "$c" "$PK_WORK/s2.sql")
		PER[$workload.$c]=$(((i2 - i1) / (N2 - N1)))
		printf '    %-9s %-18s %8d instructions per statement\n' "$workload" "$c" "${PER[$workload.$c]}"
	done
done

echo
echo "instructions per statement (callgrind, N=$N2-$N1 primary-key lookups, single-user mode)"
printf '%-18s %10s %10s %10s %10s\n' config simple vs_vanilla prepared vs_vanilla
for c in "${CONFIGS[@]}"; do
	printf '%-18s %10d %10s %10d %10s\n' "$c" "${PER[simple.$c]}" \
		"$(awk -v a="${PER[simple.$c]}" -v b="${PER[simple.${CONFIGS[0]}]}" 'BEGIN { printf "%.3f", a / b }')" \
		"${PER[prepared.$c]}" \
		"$(awk -v a="${PER[prepared.$c]}" -v b="${PER[prepared.${CONFIGS[0]}]}" 'BEGIN { printf "%.3f", a / b }')"
done
