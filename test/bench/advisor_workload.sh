#!/usr/bin/env bash
# test/bench/advisor_workload.sh — does the advisor's index set make a realistic workload as fast as
# a hand-picked one?
#
# Method
#   - Build perfkit, install it into a private copy of PostgreSQL (test/lib.sh), one throwaway
#     cluster (unix socket only) with perfkit preloaded.
#   - The shop schema of the regression test advisor_shop, larger: $CUSTOMERS customers, $PRODUCTS
#     products, $ORDERS orders, $ITEMS order items and a 20-row country table, ANALYZEd, no index
#     but the primary keys.
#   - The workload: the same ten statement shapes with the same call counts as advisor_shop (point
#     lookups, a customer's latest orders, a category page, a join on an unindexed foreign key
#     filtered on the parent, a rare product report, four decoys), each call with its own
#     constant, plus the writes (500 new orders, 1,000 items, 100 status updates), in one psql
#     script; the writes are undone after each timed run, outside the timing.
#   - The recommended set: statistics reset after the load, the workload run once with
#     perfkit.advisor_sample_rate = 1, then perfkit.index_recommendations (default threshold).
#     The hand-picked set is advisor_shop's, written before the advisor ever ran on the workload.
#   - Timed: the whole workload script (wall clock, one psql), $RUNS rounds interleaved
#     none / hand-picked / recommended, the indexes of each configuration built before its run;
#     reported: every time, the lower quartile per configuration and the speed ratios against no
#     index, plus the planned workload cost under each set.
#
# Environment (defaults in parentheses): CUSTOMERS (100000), PRODUCTS (50000), ORDERS (500000),
# ITEMS (1000000), RUNS (9), BENCH_PORT (5497), PG_MAJOR / PG_CONFIG, PK_KEEP=1 (see test/lib.sh).

set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

CUSTOMERS=${CUSTOMERS:-100000}
PRODUCTS=${PRODUCTS:-50000}
ORDERS=${ORDERS:-500000}
ITEMS=${ITEMS:-1000000}
RUNS=${RUNS:-9}
PORT=${BENCH_PORT:-5497}

# Run psql on the bench server as the cluster user (unaligned, tuples only, stop on error).
wl_psql() {
	pk_as_cluster_user psql -X -q -At -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -d postgres "$@"
}

# The workload's statements, each "calls<TAB>text with %s"; the same as sql/advisor_shop.sql.
wl_shapes() {
	cat <<'EOF'
40	SELECT id, total FROM shop_orders WHERE customer_id = %s ORDER BY created_at DESC LIMIT 10;
40	SELECT product_id, qty, price FROM shop_order_items WHERE order_id = %s;
25	SELECT id, sku, price FROM shop_products WHERE category_id = %s ORDER BY price LIMIT 20;
30	SELECT id FROM shop_customers WHERE email = 'user%s@example.com';
4	SELECT sum(o.total) FROM shop_customers c JOIN shop_orders o ON o.customer_id = c.id WHERE c.country = 'c%s';
3	SELECT sum(qty) FROM shop_order_items WHERE product_id = %s;
5	SELECT count(*) FROM shop_orders WHERE status = 'shipped' AND %s > 0;
30	SELECT title FROM shop_products WHERE id = %s;
10	SELECT name FROM shop_countries WHERE code = 'c%s';
3	SELECT count(*) FROM shop_orders WHERE total > %s;
EOF
}

# Print the workload script: every call with its own constant (spread over the key ranges), then the writes.
wl_script() {
	wl_shapes | while IFS=$'\t' read -r calls sql; do
		for ((i = 1; i <= calls; i++)); do
			# shellcheck disable=SC2059  # the shape is the format
			printf "$sql\n" $(((i * 7919) % 19 + i))
		done
	done
	echo "INSERT INTO shop_orders SELECT 10000000 + i, i, 'open', 10000000 + i, i FROM generate_series(1, 500) i;"
	echo "INSERT INTO shop_order_items SELECT 10000000 + i, 10000000 + i % 500, i, 1, 10 FROM generate_series(1, 1000) i;"
	echo "UPDATE shop_orders SET status = 'paid' WHERE id BETWEEN 10000001 AND 10000100;"
}

# The hand-picked set (advisor_shop's).
HANDPICKED=(
	"CREATE INDEX ON shop_orders (customer_id, created_at)"
	"CREATE INDEX ON shop_order_items (order_id)"
	"CREATE INDEX ON shop_products (category_id, price)"
	"CREATE INDEX ON shop_customers (email)"
	"CREATE INDEX ON shop_customers (country)"
	"CREATE INDEX ON shop_order_items (product_id)"
)

# Drop every index but the primary keys, then create the given definitions (CONCURRENTLY left out).
wl_configure() {
	{
		echo "DO \$\$ DECLARE r record; BEGIN FOR r IN SELECT i.indexrelid::regclass AS idx FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid WHERE c.relname LIKE 'shop\\_%' AND NOT i.indisprimary LOOP EXECUTE 'DROP INDEX ' || r.idx; END LOOP; END \$\$;"
		for def in "$@"; do echo "${def/CONCURRENTLY /};"; done
		echo "VACUUM ANALYZE shop_orders, shop_order_items;"
	} | wl_psql >/dev/null
}

# Planned cost of the workload under the current indexes: sum of calls x plan cost (constant 1).
wl_planned() {
	wl_shapes | while IFS=$'\t' read -r calls sql; do
		# shellcheck disable=SC2059
		cost=$(printf "EXPLAIN (FORMAT JSON) $sql\n" 1 | wl_psql | tr -d '\n' |
			sed -n 's/.*"Total Cost": \([0-9.]*\).*/\1/p' | head -n 1)
		echo "$calls $cost"
	done | awk '{ s += $1 * $2 } END { printf "%.0f\n", s }'
}

# Time one run of the workload script in ms, then undo its writes (outside the timing).
wl_time() {
	local start end
	start=$(date +%s%N)
	wl_psql -f "$PK_WORK/workload.sql" >/dev/null
	end=$(date +%s%N)
	wl_psql -c "DELETE FROM shop_order_items WHERE id > 10000000; DELETE FROM shop_orders WHERE id > 10000000;" >/dev/null
	echo $(((end - start) / 1000000))
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
perfkit.advisor_sample_rate = 0
max_parallel_workers_per_gather = 0
fsync = off
autovacuum = off
shared_buffers = 256MB
EOF
pk_as_cluster_user pg_ctl -D "$DATA" -l "$LOG" -w -s start || { tail -n 30 "$LOG"; exit 1; }

pk_say "loading the shop: $CUSTOMERS customers, $PRODUCTS products, $ORDERS orders, $ITEMS items"
wl_psql <<SQL >/dev/null
CREATE EXTENSION perfkit;
CREATE TABLE shop_countries (code text PRIMARY KEY, name text NOT NULL);
INSERT INTO shop_countries SELECT 'c' || i, 'Country ' || i FROM generate_series(0, 19) AS i;
CREATE TABLE shop_customers (id integer PRIMARY KEY, email text NOT NULL, country text NOT NULL,
                             segment integer NOT NULL, created_at integer NOT NULL);
INSERT INTO shop_customers SELECT i, 'user' || i || '@example.com', 'c' || (i % 20), i % 3, i
  FROM generate_series(1, $CUSTOMERS) AS i;
CREATE TABLE shop_products (id integer PRIMARY KEY, sku text NOT NULL, category_id integer NOT NULL,
                            price integer NOT NULL, title text NOT NULL);
INSERT INTO shop_products SELECT i, 'SKU-' || i, i % 200, (i * 7919) % 10000, md5(i::text)
  FROM generate_series(1, $PRODUCTS) AS i;
CREATE TABLE shop_orders (id integer PRIMARY KEY, customer_id integer NOT NULL, status text NOT NULL,
                          created_at integer NOT NULL, total integer NOT NULL);
INSERT INTO shop_orders
SELECT i, (i * 7) % $CUSTOMERS + 1,
       CASE WHEN i % 2 = 0 THEN 'shipped' WHEN i % 7 = 0 THEN 'open' ELSE 'paid' END, i, (i * 31) % 5000
  FROM generate_series(1, $ORDERS) AS i;
CREATE TABLE shop_order_items (id integer PRIMARY KEY, order_id integer NOT NULL,
                               product_id integer NOT NULL, qty integer NOT NULL, price integer NOT NULL);
INSERT INTO shop_order_items SELECT i, (i * 13) % $ORDERS + 1, (i * 17) % $PRODUCTS + 1, 1 + i % 5, i % 1000
  FROM generate_series(1, $ITEMS) AS i;
VACUUM ANALYZE;
SQL
wl_script >"$PK_WORK/workload.sql"
chmod a+r "$PK_WORK/workload.sql"

pk_say "collecting the workload once for the advisor"
wl_psql -c "SELECT perfkit.reset(); SELECT perfkit.reset_index_advisor();" >/dev/null
{ echo "SET perfkit.advisor_sample_rate = 1;"; cat "$PK_WORK/workload.sql"; } | wl_psql >/dev/null
wl_psql -c "DELETE FROM shop_order_items WHERE id > 10000000; DELETE FROM shop_orders WHERE id > 10000000;" >/dev/null
advisor_ms=$(wl_psql <<'SQL' | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p'
\timing on
SELECT count(*) FROM perfkit.index_recommendations;
SQL
)
mapfile -t RECOMMENDED < <(wl_psql -c "SELECT definition FROM perfkit.index_recommendations")
pk_say "recommended (${advisor_ms} ms):"
printf '    %s\n' "${RECOMMENDED[@]}"

# Give the tables the indexes of one configuration: none, handpicked or recommended.
wl_use() {
	case $1 in
		none) wl_configure ;;
		handpicked) wl_configure "${HANDPICKED[@]}" ;;
		recommended) wl_configure "${RECOMMENDED[@]}" ;;
	esac
}

declare -A planned
for config in none handpicked recommended; do
	wl_use "$config"
	planned[$config]=$(wl_planned)
done

declare -A times last
for ((r = 1; r <= RUNS; r++)); do
	for config in none handpicked recommended; do
		wl_use "$config"
		wl_time >/dev/null   # warm the caches for this configuration
		last[$config]=$(wl_time)
		times[$config]+="${last[$config]} "
	done
	pk_say "round $r (ms): none ${last[none]}, hand-picked ${last[handpicked]}, recommended ${last[recommended]}"
done
pk_as_cluster_user pg_ctl -D "$DATA" -w -s -m fast stop

# Lower quartile of a list of numbers.
q1() { tr ' ' '\n' | sed '/^$/d' | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 3) / 4)] }'; }
none=$(q1 <<<"${times[none]}")
hand=$(q1 <<<"${times[handpicked]}")
rec=$(q1 <<<"${times[recommended]}")
echo
echo "advisor workload: $ORDERS orders, $ITEMS items; advisor took ${advisor_ms} ms, ${#RECOMMENDED[@]} indexes"
for config in none handpicked recommended; do
	echo "  $config (ms): ${times[$config]}"
done
echo "planned workload cost: none ${planned[none]}, hand-picked ${planned[handpicked]}, recommended ${planned[recommended]}"
awk -v n="$none" -v h="$hand" -v r="$rec" 'BEGIN {
	printf "lower quartile (ms): none %d, hand-picked %d, recommended %d\n", n, h, r
	printf "speed vs no index: hand-picked %.1fx, recommended %.1fx (recommended reaches %.0f%% of the hand-picked speed-up)\n",
		n / h, n / r, 100 * (n / r - 1) / (n / h - 1)
}'
