#!/usr/bin/env bash
# test/pg_build.sh MAJOR — print the prefix of a PostgreSQL MAJOR (16 and later) built from the
# source archive ../shared/postgres/postgresql-MAJOR.tar.xz beside the checkout, building it first
# when the cache does not hold it yet.
#
# The cache lives outside the checkout: $PK_PG_CACHE, default /var/cache/perfkit/pg as root and
# ~/.cache/perfkit/pg otherwise.  An installation is keyed by the archive's checksum and by the
# patches applied to it (test/pg_patches/MAJOR-*.patch), so a new archive or patch builds anew and an
# unchanged one is reused; a `.complete` file marks a finished build (an interrupted one is redone),
# and a lock serialises concurrent runs wanting the same major.  The build log stays beside it.
# Environment: PK_PG_SOURCES (default ../shared/postgres beside the checkout), PK_PG_CACHE.
# Build: about 3-5 minutes on 2 cores; needs bison, flex, perl, gcc, make (make test installs them).

set -euo pipefail

major=${1:?usage: test/pg_build.sh MAJOR}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
sources=${PK_PG_SOURCES:-$root/../shared/postgres}
if [[ $(id -u) -eq 0 ]]; then default_cache=/var/cache/perfkit/pg; else default_cache=${XDG_CACHE_HOME:-$HOME/.cache}/perfkit/pg; fi
cache=${PK_PG_CACHE:-$default_cache}
archive=$sources/postgresql-$major.tar.xz

if [[ ! $major =~ ^[0-9]+$ ]]; then
	echo "pg_build.sh: MAJOR must be a number, not '$major'" >&2
	exit 2
fi
if [[ ! -f $archive ]]; then
	echo "pg_build.sh: no source archive $archive (PK_PG_SOURCES names the directory that holds postgresql-$major.tar.xz)" >&2
	exit 1
fi

# The key: the archive's checksum, combined with the checksum of each patch when there are any.
shopt -s nullglob
patches=("$root"/test/pg_patches/"$major"-*.patch)
key=$(sha256sum "$archive" | cut -c1-64)
if [[ ${#patches[@]} -gt 0 ]]; then
	key=$({
		echo "$key"
		sha256sum "${patches[@]}" | cut -c1-64
	} | sha256sum | cut -c1-64)
fi
prefix=$cache/$major-${key:0:12}

mkdir -p "$cache"
exec 9>"$cache/.$major.lock"
flock 9
if [[ -f $prefix/.complete ]]; then
	echo "$prefix"
	exit 0
fi

build=$(mktemp -d "$cache/.$major-build.XXXXXX")
log=$build/build.log
trap 'rm -rf "$build"' EXIT
# Run a build step with its output in the log; on failure show the end of the log and stop.
step() {
	local what=$1
	shift
	printf '\n==== %s: %s\n' "$what" "$*" >>"$log"
	if ! "$@" >>"$log" 2>&1; then
		echo "pg_build.sh: PostgreSQL $major: $what failed; end of $log:" >&2
		tail -n 40 "$log" >&2
		cp "$log" "$cache/$major-failed-build.log" 2>/dev/null || true
		exit 1
	fi
}

start=$(date +%s)
echo "==> building PostgreSQL $major from $archive into $prefix (a few minutes; log: $cache/$major-*/build.log)" >&2
mkdir -p "$build/src"
step unpacking tar -xJf "$archive" -C "$build/src" --strip-components=1
for p in "${patches[@]}"; do
	step "applying ${p#"$root"/}" patch -d "$build/src" -p1 --forward --batch -i "$p"
done
rm -rf "$prefix"
step configuring env -C "$build/src" ./configure --prefix="$prefix" --enable-tap-tests \
	--without-icu --without-readline --without-zlib --without-llvm
step compiling make -C "$build/src" -j2 -s
step installing make -C "$build/src" -s install
# what the tests load or run besides the server: pgss, auto_explain, the isolation tester
for dir in contrib/pg_stat_statements contrib/auto_explain src/test/isolation; do
	step "installing $dir" make -C "$build/src/$dir" -j2 -s install
done
echo $(($(date +%s) - start)) >"$prefix/build-seconds"
cp "$log" "$prefix/build.log"
date -u +%Y-%m-%dT%H:%M:%SZ >"$prefix/.complete"
echo "==> PostgreSQL $major built in $(cat "$prefix/build-seconds") s" >&2
echo "$prefix"
