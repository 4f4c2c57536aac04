#!/usr/bin/env bash
# test/run_tests.sh — `make test`: install missing packages (as root), then for each PostgreSQL major
# (15 from Debian's packages; 16, 17, 18, 19 built from ../shared/postgres by test/pg_build.sh, cached
# outside the checkout) build perfkit, install it into a private copy of that server under a temp
# directory, and run every suite there as the cluster user:
#   - pg_regress            REGRESS list from `make print-tests`   (sql/NAME.sql, expected/NAME.out)
#   - pg_isolation_regress  ISOLATION list                         (test/isolation/specs/NAME.spec,
#                                                                   test/isolation/expected/NAME.out)
#   - TAP                   test/t/*.pl, one prove run per file
# Each regress test, isolation spec and TAP file counts as one unit, and so does a build without
# compiler warnings (build/warnings). Each major ends with a line
# `PostgreSQL N: N passed, N failed`, the whole run with `N passed, N failed`; the exit status is 0
# only when nothing failed and something passed.
# Environment: PG_MAJOR (`all`, the default: 15 16 17 18 19; or one major, or a list such as "15 18"),
# PG_CONFIG (test only the server of that pg_config), PK_KEEP=1 keeps the temp dir,
# PK_ONLY=REGEX runs only the units whose name (regress/NAME, isolation/NAME, tap/NAME) matches.

set -euo pipefail
PK_ALL_MAJORS="15 16 17 18 19"

# The matrix: run this script once per major and add up their summaries.
if [[ -z ${PG_CONFIG:-} && ${PG_MAJOR:-all} =~ ^(all|[0-9]+( +[0-9]+)+)$ ]]; then
	majors=${PG_MAJOR:-all}
	[[ $majors != all ]] || majors=$PK_ALL_MAJORS
	bash "$(dirname "${BASH_SOURCE[0]}")/lib.sh" deps
	total_passed=0 total_failed=0 lines=()
	for major in $majors; do
		log=$(mktemp)
		rc=0
		PG_MAJOR=$major bash "${BASH_SOURCE[0]}" 2>&1 | tee "$log" || rc=$?
		summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
		rm -f "$log"
		if [[ -z $summary ]]; then summary="0 passed, 1 failed"; fi   # died without a summary
		passed=${summary%% passed*}
		failed=${summary#*, }
		failed=${failed%% failed*}
		if [[ $rc -ne 0 && $failed -eq 0 ]]; then failed=1; fi
		total_passed=$((total_passed + passed))
		total_failed=$((total_failed + failed))
		lines+=("PostgreSQL $major: $passed passed, $failed failed")
	done
	echo
	printf '%s\n' "${lines[@]}"
	echo "$total_passed passed, $total_failed failed"
	[[ $total_failed -eq 0 && $total_passed -gt 0 ]]
	exit
fi

# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PASSED=0
FAILED=0
FAILED_UNITS=()
SUMMARY_PRINTED=0

# shellcheck disable=SC2317  # called from the EXIT trap (pk_cleanup in lib.sh)
# Called by pk_cleanup on exit: if we die before the summary (e.g. the build fails), still end with one.
pk_exit_hook() {
	if [[ $SUMMARY_PRINTED -eq 0 ]]; then
		echo
		echo "aborted before all suites ran (exit status $1)"
		echo "$PASSED passed, $((FAILED + 1)) failed"
	fi
}

# Record the result of one unit: pk_result NAME ok|fail.
pk_result() {
	if [[ $2 == ok ]]; then
		PASSED=$((PASSED + 1))
	else
		FAILED=$((FAILED + 1))
		FAILED_UNITS+=("$1")
	fi
}

# Print the value of NAME=... from `make print-tests` output in $PRINT_TESTS.
pk_list() { sed -n "s/^$1=//p" <<<"$PRINT_TESTS"; }

# Succeed when the unit KIND/NAME is selected by PK_ONLY (all are when it is unset).
pk_selected() { [[ -z ${PK_ONLY:-} || $1/$2 =~ $PK_ONLY ]]; }

# Print the names whose DIR/IN_SUBDIR/NAME.IN_EXT and DIR/expected/NAME.out exist: pk_existing KIND DIR IN_SUBDIR IN_EXT NAMES...
pk_existing() {
	local kind=$1 dir=$2 in_sub=$3 in_ext=$4 name
	shift 4
	for name in "$@"; do
		pk_selected "$kind" "$name" || continue
		if [[ -f $dir/$in_sub/$name.$in_ext && -f $dir/expected/$name.out ]]; then
			echo "$name"
		else
			echo "MISSING $kind $name: no $in_sub/$name.$in_ext or expected/$name.out" >&2
		fi
	done
}

# Count per-test results of a pg_regress-style log (PG15 "test x ... ok", PG16+ TAP "ok 1 - x");
# a requested test without a result line (e.g. the instance never started) counts as failed.
pk_count_regress() {
	local kind=$1 log=$2 name status
	shift 2
	for name in "$@"; do
		status=$(awk -v t="$name" '
			# PG <= 15: "test NAME ... ok", "     NAME ... FAILED", "... failed (ignored)"
			$0 ~ /\.\.\. / {
				line = $0; sub(/^test /, "", line); sub(/^ +/, "", line)
				split(line, f, " ")
				if (f[1] == t) {
					if (line ~ /\.\.\. ok/ || line ~ /\.\.\. failed \(ignored\)/) print "ok"; else print "fail"
					exit
				}
			}
			# PG >= 16: "ok 1 - NAME 12 ms", "not ok 2 + NAME", "ok 3 - NAME # SKIP"
			/^(not )?ok +[0-9]+ +[-+] / {
				line = $0; sub(/^(not )?ok +[0-9]+ +[-+] +/, "", line)
				split(line, f, " ")
				if (f[1] == t) { if ($0 ~ /^not ok/) print "fail"; else print "ok"; exit }
			}' "$log")
		[[ -n $status ]] || status=fail
		pk_result "$kind/$name" "$status"
	done
}

# Run pg_regress or pg_isolation_regress as the cluster user: pk_run_regress KIND BINARY OUTDIR OPTIONS... -- TESTS...
pk_run_regress() {
	local kind=$1 bin=$2 outdir=$3 opts=() tests=()
	shift 3
	while [[ $1 != -- ]]; do opts+=("$1"); shift; done
	shift
	tests=("$@")
	if [[ ${#tests[@]} -eq 0 ]]; then
		pk_say "$kind: nothing to run"
		return 0
	fi
	pk_say "$kind: ${tests[*]}"
	local rc=0
	PK_CWD=$PK_SRC pk_as_cluster_user "$bin" --outputdir="$outdir" --bindir="$PK_BINDIR" \
		--temp-config="$PK_SRC/test/regress.conf" "${opts[@]}" \
		"${tests[@]}" 2>&1 | tee "$PK_WORK/$kind.log" || rc=$?
	pk_count_regress "$kind" "$PK_WORK/$kind.log" "${tests[@]}"
	if [[ $rc -ne 0 ]]; then
		if [[ -s $outdir/regression.diffs ]]; then
			echo "---- $kind: $outdir/regression.diffs (first 300 lines) ----"
			head -n 300 "$outdir/regression.diffs"
		fi
		# The server log shows crashes; initdb's log only matters when initdb itself failed.
		local f=$outdir/log/postmaster.log
		if grep -q 'initdb failed' "$PK_WORK/$kind.log"; then f=$outdir/log/initdb.log; fi
		if [[ -f $f ]]; then
			echo "---- $kind: $f (last 40 lines) ----"
			tail -n 40 "$f"
		fi
	fi
}

# Run each TAP file with prove as the cluster user; show its logs when it fails.
pk_run_tap() {
	local files=() f name rc testdir=$PK_WORK/tap
	if [[ -d $PK_SRC/test/t ]]; then
		for f in "$PK_SRC"/test/t/*.pl; do
			[[ -f $f ]] && pk_selected tap "$(basename "$f" .pl)" && files+=("t/${f##*/}")
		done
	fi
	if [[ ${#files[@]} -eq 0 ]]; then
		pk_say "tap: nothing to run"
		return 0
	fi
	pk_say "tap: ${files[*]}"
	PK_CWD=$PK_WORK pk_as_cluster_user mkdir -p "$testdir"
	for f in "${files[@]}"; do
		name=${f#t/}
		name=${name%.pl}
		rc=0
		# TESTDIR: where 15/16's PostgreSQL::Test::Utils keep data and logs, TESTDATADIR/TESTLOGDIR: 17+'s
		PK_CWD=$PK_SRC/test pk_as_cluster_user TESTDIR="$testdir" PG_REGRESS="$PG_REGRESS" \
			TESTDATADIR="$testdir/tmp_check" TESTLOGDIR="$testdir/tmp_check/log" \
			PERL5LIB="$PGXS_DIR/src/test/perl${PERL5LIB:+:$PERL5LIB}" \
			prove --norc "$f" 2>&1 || rc=$?
		if [[ $rc -eq 0 ]]; then
			pk_result "tap/$name" ok
		else
			pk_result "tap/$name" fail
			local log
			for log in "$testdir/tmp_check/log/regress_log_$name" "$testdir"/tmp_check/log/"${name}"_*.log; do
				[[ -f $log ]] || continue
				echo "---- tap: $log (last 60 lines) ----"
				tail -n 60 "$log"
			done
		fi
	done
}

pk_traps
pk_deps
pk_server
# A compiler warning in perfkit's own code fails the run like a failed test (unit build/warnings).
build_log=$(mktemp)
pk_build 2>&1 | tee "$build_log"
if grep -q 'warning:' "$build_log"; then pk_result build/warnings fail; else pk_result build/warnings ok; fi
rm -f "$build_log"
pk_workdir
PK_ASSERTS=1 pk_temp_install
pk_stage_tests

PGXS_DIR=$(realpath "$(dirname "$("$PG_CONFIG" --pgxs)")/../..")   # .../lib/pgxs
PG_REGRESS=$PGXS_DIR/src/test/regress/pg_regress
PG_ISOLATION_REGRESS=$PGXS_DIR/src/test/isolation/pg_isolation_regress
PRINT_TESTS=$(make -C "$PK_ROOT" --no-print-directory -s print-tests PG_CONFIG="$PG_CONFIG")

read -r -a regress_all <<<"$(pk_list REGRESS)"
read -r -a isolation_all <<<"$(pk_list ISOLATION)"
mapfile -t regress < <(pk_existing regress "$PK_SRC" sql sql ${regress_all[@]+"${regress_all[@]}"})
mapfile -t isolation < <(pk_existing isolation "$PK_SRC/test/isolation" specs spec \
	${isolation_all[@]+"${isolation_all[@]}"})
# A listed suite whose files are missing is a failure, never a silent skip.
for name in ${regress_all[@]+"${regress_all[@]}"}; do
	pk_selected regress "$name" || continue
	[[ " ${regress[*]-} " == *" $name "* ]] || pk_result "$name (missing files)" fail
done
for name in ${isolation_all[@]+"${isolation_all[@]}"}; do
	pk_selected isolation "$name" || continue
	[[ " ${isolation[*]-} " == *" $name "* ]] || pk_result "$name (missing files)" fail
done

pk_run_regress regress "$PG_REGRESS" "$PK_WORK/regress_out" \
	--temp-instance="$PK_WORK/tmp_regress" --inputdir="$PK_SRC" \
	-- ${regress[@]+"${regress[@]}"}
pk_run_regress isolation "$PG_ISOLATION_REGRESS" "$PK_WORK/iso_out" \
	--temp-instance="$PK_WORK/tmp_isolation" --inputdir="$PK_SRC/test/isolation" \
	-- ${isolation[@]+"${isolation[@]}"}
pk_run_tap

pk_teardown
echo
if [[ $FAILED -gt 0 ]]; then echo "failed on PostgreSQL $PG_MAJOR: ${FAILED_UNITS[*]}"; fi
[[ $PASSED -gt 0 ]] || echo "nothing passed: no test ran"
echo "$PASSED passed, $FAILED failed"
SUMMARY_PRINTED=1
if [[ $FAILED -eq 0 && $PASSED -gt 0 ]]; then exit 0; fi
exit 1
