#!/usr/bin/env bash
# test/lib.sh — shared helpers for perfkit's test and demo scripts (test/run_tests.sh, test/demo.sh).
#
# Source it (`source test/lib.sh`) to get the pk_* functions, or run `bash test/lib.sh deps` to only
# install/check the Debian packages (`make deps`).
#
# The scripts work both as root (CI: packages are installed, servers run as user "postgres", since
# initdb/postgres refuse to run as root) and as an ordinary user (packages must already be there).
# Everything a server or test touches lives in a private temp directory $PK_WORK, which holds:
#   inst/   a private copy of the PostgreSQL installation under test, with perfkit installed into it
#   src/    a copy of the repo's sql/ expected/ test/ (the checkout may be unreadable for postgres)
#   tmp/    TMPDIR of everything run as the cluster user
#   ...     data directories, sockets, logs and outputs of the suites
# $PK_WORK is removed on exit (also on failure) after stopping any server under it; PK_KEEP=1 keeps it.
# As root, perfkit is also installed into the system PostgreSQL 15 (`make install`); PK_SYSTEM_INSTALL=0
# skips that.
#
# Which PostgreSQL: PG_CONFIG names one explicitly; otherwise PG_MAJOR picks a major (default 15):
# 15 is Debian's (packages postgresql-15, postgresql-server-dev-15), 16 and later are built once from
# ../shared/postgres into a cache outside the checkout by test/pg_build.sh (see there).

set -euo pipefail

# Make variables of an outer `make test` must not leak into our own make calls.
unset MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES

PK_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_CONFIG=${PG_CONFIG:-}                # resolved by pk_server
PG_MAJOR=${PG_MAJOR:-15}
PK_DEBIAN_PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
PK_CLUSTER_USER=postgres                # servers run as this user when we are root
# bison, flex, patch, perl: building the other majors from source (test/pg_build.sh)
PK_PACKAGES=(postgresql-15 postgresql-server-dev-15 libhiredis-dev redis-server redis-tools libipc-run-perl
	python3-psycopg2 python3-django python3-sqlalchemy make gcc libc6-dev
	prometheus prometheus-postgres-exporter bison flex patch perl xz-utils)
# Services that Debian enables, and may start, when it installs these packages (on ports 9090 and
# 9187); the tests run their own on free loopback ports, so pk_deps keeps these from running.
PK_PACKAGED_SERVICES=(prometheus prometheus-postgres-exporter)
export PG_CONFIG PG_MAJOR

# Print a progress line.
pk_say() { printf '==> %s\n' "$*"; }

# Print an error line to stderr.
pk_err() { printf 'ERROR: %s\n' "$*" >&2; }

# Succeed when running as root.
pk_is_root() { [[ $(id -u) -eq 0 ]]; }

# Install the missing Debian packages (as root), or print the command to do so and fail (non-root).
pk_deps() {
	if ! command -v dpkg-query >/dev/null 2>&1; then
		pk_say "not a Debian system: make sure these are installed: ${PK_PACKAGES[*]}"
		return 0
	fi
	local missing=() p
	for p in "${PK_PACKAGES[@]}"; do
		[[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true) == installed ]] ||
			missing+=("$p")
	done
	if [[ ${#missing[@]} -eq 0 ]]; then
		pk_say "packages: all present"
		return 0
	fi
	if ! pk_is_root; then
		pk_err "missing packages: ${missing[*]}; install them with:"
		echo "sudo apt-get install -y ${missing[*]}"
		return 1
	fi
	pk_say "installing: ${missing[*]}"
	# policy-rc.d answering 101 is Debian's way to keep maintainer scripts from starting services
	# (container images often have one already; then it stays as it is)
	local policy=/usr/sbin/policy-rc.d own_policy=0 rc=0
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\n# perfkit: no service starts while make test/demo installs packages\nexit 101\n' >"$policy"
		chmod 755 "$policy"
		own_policy=1
	fi
	{
		DEBIAN_FRONTEND=noninteractive apt-get update </dev/null &&
			DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" </dev/null
	} || rc=$?
	if [[ $own_policy -eq 1 ]]; then rm -f "$policy"; fi
	pk_quiet_services "${missing[@]}"
	return "$rc"
}

# Stop and disable the packaged services of PK_PACKAGED_SERVICES among the packages just installed:
# pk_quiet_services PACKAGES...
pk_quiet_services() {
	local s p
	for s in "${PK_PACKAGED_SERVICES[@]}"; do
		for p in "$@"; do
			[[ $p == "$s" ]] || continue
			if command -v systemctl >/dev/null 2>&1; then
				if [[ -d /run/systemd/system ]]; then
					systemctl disable --now "$s" >/dev/null 2>&1 || true
				else
					systemctl disable "$s" >/dev/null 2>&1 || true   # no systemd running: links only
				fi
			fi
			if [[ -x /etc/init.d/$s ]]; then
				/etc/init.d/"$s" stop >/dev/null 2>&1 || true
				update-rc.d "$s" disable >/dev/null 2>&1 || true
			fi
			pk_say "packaged service $s stopped and disabled (the tests start their own)"
		done
	done
}

# Choose the PostgreSQL under test (see the top of this file): sets PG_CONFIG and PG_MAJOR, building
# the major from source first when it is not cached yet.
pk_server() {
	if [[ -z $PG_CONFIG ]]; then
		if [[ $PG_MAJOR == 15 ]]; then
			PG_CONFIG=$PK_DEBIAN_PG_CONFIG
		else
			PG_CONFIG=$(bash "$PK_ROOT/test/pg_build.sh" "$PG_MAJOR")/bin/pg_config
		fi
	fi
	if [[ ! -x $PG_CONFIG ]]; then
		pk_err "no pg_config at $PG_CONFIG"
		return 1
	fi
	PG_MAJOR=$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
	export PG_CONFIG PG_MAJOR
}

# Build perfkit in the repo root against PG_CONFIG: warnings and errors only, compiler command lines
# with V=1.  Objects built for another installation are cleaned first.
pk_build() {
	pk_server
	pk_say "building perfkit for $("$PG_CONFIG" --version)"
	local quiet=(-s) stamp=$PK_ROOT/.built-for
	if [[ ${V:-0} == 1 ]]; then quiet=(); fi
	if [[ $(cat "$stamp" 2>/dev/null) != "$PG_CONFIG" ]]; then
		make -C "$PK_ROOT" --no-print-directory -s clean PG_CONFIG="$PG_CONFIG"
		echo "$PG_CONFIG" >"$stamp"
	fi
	make -C "$PK_ROOT" --no-print-directory ${quiet[@]+"${quiet[@]}"} -j2 PG_CONFIG="$PG_CONFIG"
}

# Create $PK_WORK (readable by the cluster user) and arrange for pk_cleanup to run on exit.
pk_workdir() {
	PK_WORK=$(mktemp -d /tmp/perfkit.XXXXXX)
	chmod 755 "$PK_WORK"
	mkdir "$PK_WORK/tmp"   # TMPDIR of the cluster user: socket dirs of pg_regress and TAP nodes
	if pk_is_root; then chown "$PK_CLUSTER_USER:" "$PK_WORK" "$PK_WORK/tmp"; fi
	export PK_WORK
	pk_traps
}

# Install the EXIT/signal traps that run pk_cleanup (safe to call more than once).
pk_traps() {
	trap 'pk_cleanup $?' EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM HUP
}

# Stop every server whose data directory is under $PK_WORK, then remove $PK_WORK (unless PK_KEEP=1).
pk_teardown() {
	local pidfile pg_ctl
	[[ -n ${PK_WORK:-} && -d $PK_WORK ]] || return 0
	pg_ctl=${PK_BINDIR:-/nonexistent}/pg_ctl
	[[ -x $pg_ctl ]] || pg_ctl=$("$PG_CONFIG" --bindir)/pg_ctl
	while IFS= read -r pidfile; do
		pk_say "stopping leftover server in ${pidfile%/postmaster.pid}"
		pk_as_cluster_user "$pg_ctl" stop -s -m immediate -D "${pidfile%/postmaster.pid}" >/dev/null 2>&1 || true
	done < <(find "$PK_WORK" -name postmaster.pid -not -path "$PK_WORK/inst/*" 2>/dev/null || true)
	if [[ ${PK_KEEP:-0} == 1 ]]; then
		pk_say "keeping $PK_WORK (PK_KEEP=1)"
	else
		rm -rf "$PK_WORK" || true
	fi
	PK_WORK=
}

# EXIT trap: pk_teardown, then the caller's optional pk_exit_hook RC, then exit with the original status.
pk_cleanup() {
	local rc=${1:-$?}
	set +e
	trap - EXIT INT TERM HUP
	pk_teardown
	if declare -F pk_exit_hook >/dev/null; then pk_exit_hook "$rc"; fi
	exit "$rc"
}

# Copy the installation under test to $PK_WORK/inst (the same absolute paths below it) and install
# perfkit into the copy (and, as root unless PK_SYSTEM_INSTALL=0, into the system PostgreSQL 15).
# PK_ASSERTS=1: the copy gets an assertion-enabled build.
pk_temp_install() {
	local inst=$PK_WORK/inst got want bindir sharedir home
	bindir=$("$PG_CONFIG" --bindir)
	sharedir=$("$PG_CONFIG" --sharedir)
	home=$(dirname "$bindir")   # /usr/lib/postgresql/15, or the prefix of a built major
	pk_say "installing perfkit into a private copy of PostgreSQL $PG_MAJOR ($inst)"
	# Real copies, not symlinks: postgres and pg_config locate lib/ and share/ relative to the real
	# path of their own binary.
	mkdir -p "$inst$(dirname "$home")"
	cp -a "$home" "$inst$(dirname "$home")/"
	if [[ $sharedir != "$home"/* ]]; then
		mkdir -p "$inst$(dirname "$sharedir")"
		cp -a "$sharedir" "$inst$(dirname "$sharedir")/"
	fi
	if pk_is_root && [[ ${PK_SYSTEM_INSTALL:-1} == 1 && $PG_CONFIG == "$PK_DEBIAN_PG_CONFIG" ]]; then
		pk_say "installing perfkit into the system PostgreSQL 15"
		make -C "$PK_ROOT" --no-print-directory -s install PG_CONFIG="$PG_CONFIG"
	fi
	if [[ ${PK_ASSERTS:-0} == 1 ]]; then
		# the tests exercise perfkit's Assert()s; the build is cleaned afterwards so that no
		# assertion-enabled object is left for a later plain `make install`
		pk_say "rebuilding perfkit with -DUSE_ASSERT_CHECKING for the private copy"
		make -C "$PK_ROOT" --no-print-directory -s clean PG_CONFIG="$PG_CONFIG"
		make -C "$PK_ROOT" --no-print-directory -s -j2 PERFKIT_ASSERTS=1 PG_CONFIG="$PG_CONFIG"
	fi
	make -C "$PK_ROOT" --no-print-directory -s install DESTDIR="$inst" PG_CONFIG="$PG_CONFIG"
	if [[ ${PK_ASSERTS:-0} == 1 ]]; then make -C "$PK_ROOT" --no-print-directory -s clean PG_CONFIG="$PG_CONFIG"; fi
	PK_BINDIR=$inst$bindir
	export PK_BINDIR
	got=$("$PK_BINDIR/pg_config" --pkglibdir)
	want=$inst$("$PG_CONFIG" --pkglibdir)
	if [[ $(realpath -m "$got") != $(realpath -m "$want") ]]; then
		pk_err "the copied installation is not relocatable: pg_config --pkglibdir says $got, expected $want"
		return 1
	fi
}

# Create a throwaway cluster in DATA that listens only on a unix socket in SOCK (PORT names the
# socket), with the extra postgresql.conf lines given on stdin; initdb's log is $PK_WORK/initdb.log.
# pk_init_cluster DATA SOCK PORT <<EOF ... EOF
pk_init_cluster() {
	local data=$1 sock=$2 port=$3
	pk_as_cluster_user mkdir -p "$sock"
	pk_as_cluster_user initdb -D "$data" -A trust --no-sync --no-instructions -E UTF8 \
		>"$PK_WORK/initdb.log" 2>&1 || return 1
	{
		printf "\nlisten_addresses = ''\nunix_socket_directories = '%s'\nport = %s\n" "$sock" "$port"
		cat
	} | pk_as_cluster_user tee -a "$data/postgresql.conf" >/dev/null
}

# Copy the test material (sql/ expected/ test/ contrib/) to $PK_WORK/src, owned by the cluster user; sets PK_SRC.
pk_stage_tests() {
	PK_SRC=$PK_WORK/src
	export PK_SRC
	mkdir -p "$PK_SRC"
	local d
	for d in sql expected test contrib; do
		if [[ -d $PK_ROOT/$d ]]; then cp -a "$PK_ROOT/$d" "$PK_SRC/"; fi
	done
	if pk_is_root; then chown -R "$PK_CLUSTER_USER:" "$PK_SRC"; fi
}

# Run CMD (optionally preceded by VAR=value words) as the cluster user, with $PK_BINDIR first in
# PATH, in directory $PK_CWD (default $PK_WORK).  TMPDIR=$PK_WORK/tmp, so socket directories of
# pg_regress and TAP nodes go away with $PK_WORK.  The locale is pinned to C.UTF-8 (always present
# on Debian 12) so that clusters, and thus expected outputs, do not depend on the caller's locale.
pk_as_cluster_user() {
	local dir=${PK_CWD:-$PK_WORK}
	local path=${PK_BINDIR:+$PK_BINDIR:}$PATH
	local envs=(PATH="$path" LANG=C.UTF-8 LC_ALL=C.UTF-8 TMPDIR="$PK_WORK/tmp" PK_WORK="$PK_WORK"
		PK_BINDIR="${PK_BINDIR:-}" PG_CONFIG="$PG_CONFIG")
	if pk_is_root; then
		runuser -u "$PK_CLUSTER_USER" -- env -u LANGUAGE -C "$dir" "${envs[@]}" "$@"
	else
		env -u LANGUAGE -C "$dir" "${envs[@]}" "$@"
	fi
}

# `bash test/lib.sh deps` (make deps).
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
	case ${1:-} in
	deps) pk_deps ;;
	*)
		echo "usage: bash test/lib.sh deps   (or: source test/lib.sh)" >&2
		exit 2
		;;
	esac
fi
