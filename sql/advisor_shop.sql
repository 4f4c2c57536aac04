-- Index advisor on a realistic schema: a shop with customers, orders, order items, products and a
-- tiny lookup table; its workload has point lookups, a join on an unindexed foreign key, sort
-- keys under LIMIT, rare statements, writes and decoys.  The hand-picked index set below was
-- written (and committed) before the advisor ever ran on this workload; the test compares the
-- planned cost of the workload under it and under the recommended set.
-- Tables have at most 30,000 rows, so ANALYZE reads every row and the estimates are stable.
SET max_parallel_workers_per_gather = 0;
SET perfkit.advisor_sample_rate = 1;

CREATE TABLE shop_countries (code text PRIMARY KEY, name text NOT NULL);
INSERT INTO shop_countries SELECT 'c' || i, 'Country ' || i FROM generate_series(0, 19) AS i;
CREATE TABLE shop_customers (
    id         integer PRIMARY KEY,
    email      text NOT NULL,
    country    text NOT NULL,
    segment    integer NOT NULL,
    created_at integer NOT NULL);
INSERT INTO shop_customers
SELECT i, 'user' || i || '@example.com', 'c' || (i % 20), i % 3, i
  FROM generate_series(1, 20000) AS i;
CREATE TABLE shop_products (
    id          integer PRIMARY KEY,
    sku         text NOT NULL,
    category_id integer NOT NULL,
    price       integer NOT NULL,
    title       text NOT NULL);
INSERT INTO shop_products
SELECT i, 'SKU-' || i, i % 200, (i * 7919) % 10000, md5(i::text)
  FROM generate_series(1, 20000) AS i;
CREATE TABLE shop_orders (
    id          integer PRIMARY KEY,
    customer_id integer NOT NULL,
    status      text NOT NULL,
    created_at  integer NOT NULL,
    total       integer NOT NULL);
INSERT INTO shop_orders
SELECT i, (i * 7) % 20000 + 1, CASE WHEN i % 2 = 0 THEN 'shipped' WHEN i % 7 = 0 THEN 'open' ELSE 'paid' END,
       i, (i * 31) % 5000
  FROM generate_series(1, 30000) AS i;
CREATE TABLE shop_order_items (
    id         integer PRIMARY KEY,
    order_id   integer NOT NULL,
    product_id integer NOT NULL,
    qty        integer NOT NULL,
    price      integer NOT NULL);
INSERT INTO shop_order_items
SELECT i, (i * 13) % 30000 + 1, (i * 17) % 20000 + 1, 1 + i % 5, i % 1000
  FROM generate_series(1, 30000) AS i;
ANALYZE shop_countries, shop_customers, shop_products, shop_orders, shop_order_items;

-- The workload: each statement with its executions; %s is replaced by 1, 2, ... calls.
CREATE TABLE shop_workload (q text PRIMARY KEY, calls integer NOT NULL);
INSERT INTO shop_workload VALUES
  -- a customer's latest orders
  ('SELECT id, total FROM shop_orders WHERE customer_id = %s ORDER BY created_at DESC LIMIT 10', 40),
  -- an order's items
  ('SELECT product_id, qty, price FROM shop_order_items WHERE order_id = %s', 40),
  -- a category page, cheapest first
  ('SELECT id, sku, price FROM shop_products WHERE category_id = %s ORDER BY price LIMIT 20', 25),
  -- log-in by e-mail
  ('SELECT id FROM shop_customers WHERE email = ''user%s@example.com''', 30),
  -- revenue of a country's customers: a join on the unindexed foreign key, filtered on the parent
  ('SELECT sum(o.total) FROM shop_customers c JOIN shop_orders o ON o.customer_id = c.id
     WHERE c.country = ''c%s''', 4),
  -- sales of a product (rare)
  ('SELECT sum(qty) FROM shop_order_items WHERE product_id = %s', 3),
  -- decoys: half the orders, a primary key, a tiny table, a filter keeping most rows
  ('SELECT count(*) FROM shop_orders WHERE status = ''shipped'' AND %s > 0', 5),
  ('SELECT title FROM shop_products WHERE id = %s', 30),
  ('SELECT name FROM shop_countries WHERE code = ''c%s''', 10),
  ('SELECT count(*) FROM shop_orders WHERE total > %s', 3);

-- The hand-picked set, written before the advisor ran on this workload.
CREATE TABLE shop_handpicked (definition text PRIMARY KEY);
INSERT INTO shop_handpicked VALUES
  ('CREATE INDEX ON shop_orders (customer_id, created_at)'),
  ('CREATE INDEX ON shop_order_items (order_id)'),
  ('CREATE INDEX ON shop_products (category_id, price)'),
  ('CREATE INDEX ON shop_customers (email)'),
  ('CREATE INDEX ON shop_customers (country)'),
  ('CREATE INDEX ON shop_order_items (product_id)');

-- Planned cost of the workload under the indexes that exist: sum of calls x plan cost.
CREATE FUNCTION shop_cost() RETURNS double precision LANGUAGE plpgsql AS $$
DECLARE
    w record;
    plan json;
    total double precision := 0;
BEGIN
    FOR w IN SELECT * FROM shop_workload LOOP
        EXECUTE 'EXPLAIN (FORMAT JSON) ' || format(w.q, 1) INTO plan;
        total := total + w.calls * (plan -> 0 -> 'Plan' ->> 'Total Cost')::double precision;
    END LOOP;
    RETURN total;
END $$;
-- Create indexes from their definitions (CONCURRENTLY left out: this runs in a transaction).
CREATE FUNCTION shop_build(defs text[]) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    d text;
BEGIN
    FOREACH d IN ARRAY defs LOOP
        EXECUTE replace(d, 'CREATE INDEX CONCURRENTLY', 'CREATE INDEX');
    END LOOP;
    RETURN cardinality(defs);
END $$;

SELECT shop_cost() AS no_index \gset
BEGIN;
SELECT shop_build(array_agg(definition)) AS handpicked_indexes FROM shop_handpicked;
SELECT shop_cost() AS handpicked \gset
ROLLBACK;
SELECT :handpicked < 0.2 * :no_index AS handpicked_cuts_80_pct;

-- Run the workload from empty statistics (the load is not the workload), with some writes: new
-- orders and their items, status updates.
SELECT perfkit.reset();
SELECT perfkit.reset_index_advisor();
DO $$
DECLARE
    w record;
BEGIN
    FOR w IN SELECT * FROM shop_workload LOOP
        FOR i IN 1..w.calls LOOP
            EXECUTE format(w.q, i);
        END LOOP;
    END LOOP;
END $$;
INSERT INTO shop_orders SELECT 100000 + i, i, 'open', 100000 + i, i FROM generate_series(1, 500) AS i;
INSERT INTO shop_order_items SELECT 100000 + i, 100000 + i % 500, i, 1, 10
  FROM generate_series(1, 1000) AS i;
UPDATE shop_orders SET status = 'paid' WHERE id BETWEEN 100001 AND 100100;

-- The recommended set, in the order chosen: nothing for the decoys.
SELECT step, relation, columns FROM perfkit.index_recommendations ORDER BY step, definition;

-- Its planned workload cost is within 10% of the hand-picked set's.
BEGIN;
SELECT shop_build(array_agg(definition)) > 0 AS built FROM perfkit.index_recommendations;
SELECT shop_cost() AS recommended \gset
ROLLBACK;
SELECT :recommended <= 1.1 * :handpicked AS within_10_pct_of_handpicked,
       :recommended < 0.2 * :no_index AS cuts_80_pct;

RESET perfkit.advisor_sample_rate;
RESET max_parallel_workers_per_gather;
DROP FUNCTION shop_cost(), shop_build(text[]);
DROP TABLE shop_countries, shop_customers, shop_products, shop_orders, shop_order_items,
           shop_workload, shop_handpicked;
SELECT perfkit.reset_index_advisor();
