#!/usr/bin/env bash
# test/demo.sh — `make demo`: build perfkit, start a throwaway PostgreSQL 15 server with perfkit
# preloaded (unix socket only, in a temp directory), run a small shop-like workload with pgbench and
# an N+1 page loop, print what perfkit recorded, build the index it recommends, and render the page
# again to show the measured effect of the index and of the N+1 fix.  The server and the temp
# directory are removed on exit, also on failure.
# Environment: PG_CONFIG, PK_DEMO_PORT (default 5499), PK_DEMO_SECONDS (default 8), PK_KEEP=1,
# V=1 (show the compiler command lines).

set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PORT=${PK_DEMO_PORT:-5499}   # no TCP listener, so any port works: the socket lives in our temp dir
SECONDS_TO_RUN=${PK_DEMO_SECONDS:-8}

# Run psql against the demo server as the cluster user.
demo_psql() {
	pk_as_cluster_user psql -X -q -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -d postgres "$@"
}

# Print a log file and fail: demo_fail MESSAGE LOGFILE.
demo_fail() {
	pk_err "$1"
	if [[ -f $2 ]]; then tail -n 40 "$2" >&2; fi
	exit 1
}

pk_traps
pk_deps
pk_build
pk_workdir
pk_temp_install

DATA=$PK_WORK/demo_data
SOCK=$PK_WORK/demo_sock
SCRIPTS=$PK_WORK/demo_scripts
LOG=$PK_WORK/demo_server.log

pk_say "creating a throwaway cluster in $DATA"
pk_as_cluster_user mkdir -p "$SOCK" "$SCRIPTS"
pk_init_cluster "$DATA" "$SOCK" "$PORT" <<EOF || demo_fail "initdb failed" "$PK_WORK/initdb.log"
# perfkit demo
shared_preload_libraries = 'perfkit'
perfkit.track = all
perfkit.slow_threshold = 25ms
fsync = off
EOF

pk_say "starting the server (socket $SOCK, port $PORT)"
pk_as_cluster_user pg_ctl -D "$DATA" -l "$LOG" -w -s start || demo_fail "server did not start" "$LOG"

pk_say "creating the shop schema (customers, orders, order_items)"
demo_psql >/dev/null <<'SQL'
CREATE EXTENSION perfkit;
CREATE SCHEMA shop;
CREATE TABLE shop.customers (
    id          int PRIMARY KEY,
    name        text NOT NULL,
    email       text NOT NULL,
    city        text NOT NULL,
    created_at  timestamptz NOT NULL
);
CREATE TABLE shop.orders (
    id          bigserial PRIMARY KEY,
    customer_id int NOT NULL REFERENCES shop.customers,
    status      text NOT NULL,
    created_at  timestamptz NOT NULL,
    total       numeric(10,2) NOT NULL DEFAULT 0
);
CREATE INDEX orders_customer_id_idx ON shop.orders (customer_id);
-- order_items.order_id deliberately has no index.
CREATE TABLE shop.order_items (
    id          bigserial PRIMARY KEY,
    order_id    bigint NOT NULL REFERENCES shop.orders,
    sku         text NOT NULL,
    qty         int NOT NULL,
    price       numeric(10,2) NOT NULL
);
INSERT INTO shop.customers
SELECT g, 'customer ' || g, 'customer' || g || '@example.com',
       (ARRAY['Berlin', 'Paris', 'Lisbon', 'Oslo', 'Rome'])[1 + g % 5],
       now() - g * interval '1 hour'
FROM generate_series(1, 2000) g;
INSERT INTO shop.orders (customer_id, status, created_at)
SELECT 1 + (g * 7919) % 2000, (ARRAY['new', 'paid', 'shipped'])[1 + g % 3],
       now() - g * interval '5 minutes'
FROM generate_series(1, 3000) g;
INSERT INTO shop.order_items (order_id, sku, qty, price)
SELECT 1 + g % 3000, 'SKU-' || g % 500, 1 + g % 4, 5 + (g * 37) % 200
FROM generate_series(1, 300000) g;
UPDATE shop.orders o SET total = s.total
FROM (SELECT order_id, sum(qty * price) AS total FROM shop.order_items GROUP BY order_id) s
WHERE s.order_id = o.id;
VACUUM ANALYZE;
SELECT perfkit.reset();
SQL

# pgbench scripts, one per kind of request, with weights below.
pk_as_cluster_user tee "$SCRIPTS/customer_by_id.sql" >/dev/null <<'EOF'
\set cid random(1, 2000)
SELECT id, name, email, city FROM shop.customers WHERE id = :cid;
EOF
pk_as_cluster_user tee "$SCRIPTS/orders_of_customer.sql" >/dev/null <<'EOF'
\set cid random(1, 2000)
SELECT id, status, created_at, total FROM shop.orders WHERE customer_id = :cid ORDER BY created_at DESC LIMIT 20;
EOF
pk_as_cluster_user tee "$SCRIPTS/place_order.sql" >/dev/null <<'EOF'
\set cid random(1, 2000)
\set qty random(1, 5)
BEGIN;
INSERT INTO shop.orders (customer_id, status, created_at) VALUES (:cid, 'new', now()) RETURNING id AS order_id \gset
INSERT INTO shop.order_items (order_id, sku, qty, price) VALUES (:order_id, 'SKU-42', :qty, 19.99);
UPDATE shop.orders SET total = :qty * 19.99 WHERE id = :order_id;
COMMIT;
EOF
pk_as_cluster_user tee "$SCRIPTS/ship_order.sql" >/dev/null <<'EOF'
\set oid random(1, 3000)
UPDATE shop.orders SET status = 'shipped' WHERE id = :oid AND status <> 'shipped';
EOF
pk_as_cluster_user tee "$SCRIPTS/items_of_order.sql" >/dev/null <<'EOF'
\set oid random(1, 3000)
SELECT sku, qty, price FROM shop.order_items WHERE order_id = :oid;
EOF
pk_as_cluster_user tee "$SCRIPTS/revenue_report.sql" >/dev/null <<'EOF'
SELECT c.city, count(DISTINCT o.id) AS orders, sum(i.qty * i.price) AS revenue
FROM shop.customers c
JOIN shop.orders o ON o.customer_id = c.id
JOIN shop.order_items i ON i.order_id = o.id
WHERE o.created_at > now() - interval '3 days'
GROUP BY c.city ORDER BY revenue DESC;
EOF

pk_say "running pgbench for ${SECONDS_TO_RUN}s (2 clients)"
pk_as_cluster_user pgbench -n -T "$SECONDS_TO_RUN" -c 2 -j 2 -h "$SOCK" -p "$PORT" \
	-f "$SCRIPTS/customer_by_id.sql@10" -f "$SCRIPTS/orders_of_customer.sql@5" \
	-f "$SCRIPTS/place_order.sql@2" -f "$SCRIPTS/ship_order.sql@2" \
	-f "$SCRIPTS/items_of_order.sql@1" -f "$SCRIPTS/revenue_report.sql@1" postgres \
	>"$PK_WORK/pgbench.log" 2>&1 || demo_fail "pgbench failed" "$PK_WORK/pgbench.log"
grep -E '^(number of transactions actually processed|number of failed transactions|latency average|tps)' \
	"$PK_WORK/pgbench.log" | sed 's/^/    /'

# A "recent orders" page written the way ORMs often do it: a page of orders, then one query per
# order for its items (an N+1 loop), with psycopg2 interpolating the values; and the same page with
# the fix perfkit suggests (one query with = ANY over the page's order ids).  Prints the mean time
# of a page in ms and the queries it took.
pk_as_cluster_user tee "$SCRIPTS/recent_orders_page.py" >/dev/null <<'PY'
import sys
import time

import psycopg2

host, port, mode, pages = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
conn = psycopg2.connect(host=host, port=port, dbname="postgres", application_name="recent-orders-page")
cur = conn.cursor()
total_ms = 0.0
for page in range(pages):
    start = time.perf_counter()
    queries = 1
    cur.execute("SELECT id, status, total FROM shop.orders ORDER BY created_at DESC LIMIT 10 OFFSET %s",
                (page * 10,))
    orders = cur.fetchall()
    if mode == "loop":
        for (order_id, _status, _total) in orders:
            cur.execute("SELECT sku, qty FROM shop.order_items WHERE order_id = %s", (order_id,))
            cur.fetchall()
            queries += 1
    else:
        cur.execute("SELECT order_id, sku, qty FROM shop.order_items WHERE order_id = ANY(%s)",
                    ([o[0] for o in orders],))
        cur.fetchall()
        queries += 1
    conn.commit()
    total_ms += (time.perf_counter() - start) * 1000
print(f"{total_ms / pages:.1f} {queries}")
PY

# Mean time of a recent-orders page over 3 pages, into variables: demo_page loop|any MS_VAR QUERIES_VAR.
demo_page() {
	local out
	out=$(pk_as_cluster_user /usr/bin/python3 "$SCRIPTS/recent_orders_page.py" "$SOCK" "$PORT" "$1" 3) ||
		demo_fail "the recent-orders page ($1) failed" "$LOG"
	read -r "$2" "$3" <<<"$out"
}

pk_say "rendering recent-orders pages with an N+1 loop (python3-psycopg2), and with the fix"
demo_page loop LOOP_BEFORE LOOP_QUERIES
demo_page any ANY_BEFORE ANY_QUERIES
printf '    N+1 loop: %s ms a page (%s queries); one = ANY query: %s ms a page (%s queries)\n' \
	"$LOOP_BEFORE" "$LOOP_QUERIES" "$ANY_BEFORE" "$ANY_QUERIES"

echo
pk_say "top statements recorded by perfkit (perfkit.statements)"
demo_psql -P footer=off <<'SQL'
SELECT left(query, 60) AS query, calls,
       round(total_exec_time::numeric, 2) AS total_ms,
       round(mean_exec_time::numeric, 3) AS mean_ms,
       round(p50_exec_time::numeric, 3) AS p50_ms,
       round(p95_exec_time::numeric, 3) AS p95_ms,
       round(p99_exec_time::numeric, 3) AS p99_ms,
       rows
FROM perfkit.statements
ORDER BY total_exec_time DESC
LIMIT 10;
SQL

pk_say "perfkit.info"
demo_psql -P footer=off -c 'SELECT * FROM perfkit.info;'

pk_say "perfkit.report()"
demo_psql -At -c 'SELECT perfkit.report();'

pk_say "index advisor: build the recommended indexes (perfkit.create_recommended_indexes)"
demo_psql -P footer=off <<'SQL'
SELECT definition, round(improvement_pct) AS improvement_pct, calls,
       pg_size_pretty(est_size_bytes) AS est_size
FROM perfkit.index_recommendations;
SELECT * FROM perfkit.create_recommended_indexes();
CALL perfkit.wait_for_index_builds('5 minutes');
SELECT id, status, definition FROM perfkit.index_builds ORDER BY id;
SQL

pk_say "the recent-orders page again, after the index build: the measured effect"
BUILT=$(demo_psql -At -c "SELECT count(*) FROM perfkit.index_builds WHERE status = 'succeeded'")
demo_page loop LOOP_AFTER _
demo_page any ANY_AFTER _
awk -v lb="$LOOP_BEFORE" -v ab="$ANY_BEFORE" -v la="$LOOP_AFTER" -v aa="$ANY_AFTER" \
	-v lq="$LOOP_QUERIES" -v aq="$ANY_QUERIES" -v built="$BUILT" 'BEGIN {
	printf "    mean time of one page (3 pages, 10 orders each)\n"
	printf "    %-30s %14s %14s %8s\n", "", "before index", "after index", "speedup"
	printf "    %-30s %11.1f ms %11.1f ms %7.1fx\n", "N+1 loop (" lq " queries)", lb, la, lb / la
	printf "    %-30s %11.1f ms %11.1f ms %7.1fx\n", "N+1 fixed, = ANY (" aq " queries)", ab, aa, ab / aa
	printf "    fixing the N+1 alone: %.1fx; the index alone: %.1fx; both: %.1fx\n", lb / ab, lb / la, lb / aa
	if (built == 0) printf "    (no index was built: the advisor recommended none)\n"
}'

pk_say "stopping the server"
pk_as_cluster_user pg_ctl -D "$DATA" -w -s -m fast stop
pk_teardown
pk_say "demo done"
