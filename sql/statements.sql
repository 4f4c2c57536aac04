-- Per-statement statistics: normalized text, counts, rows and sane timings.
-- statements_1.out is 18+'s output, where SET's constants are normalized
-- ("SET perfkit.track = $1"), as by pg_stat_statements there.
SELECT perfkit.reset();
SET perfkit.track = 'top';

CREATE TABLE items (id int PRIMARY KEY, name text, price numeric);
INSERT INTO items SELECT g, 'item ' || g, g * 1.5 FROM generate_series(1, 200) g;

SELECT name FROM items WHERE id = 7;
SELECT name FROM items WHERE id = 8;
SELECT name FROM items WHERE id = -9;
SELECT count(*) FROM items WHERE price > 10.5 AND name <> 'x';
SELECT count(*) FROM items WHERE price > 99 AND name <> 'yy';
UPDATE items SET price = price + 1 WHERE id <= 20;
DELETE FROM items WHERE id > 190;
SELECT 'it''s' AS q, E'esc\n' AS e, $$dollar$$ AS d, B'101' AS b, X'1F' AS x;
-- two statements in one query string: each is its own entry with its own text
SELECT 1 AS one \; SELECT 2 AS two, 3 AS three;

SELECT query, calls, rows, toplevel,
       rolname = current_user AS my_role,
       datname = current_database() AS my_db
  FROM perfkit.statements
 ORDER BY query COLLATE "C";

-- Timings are consistent with each other.
SELECT count(*) AS entries,
       bool_and(total_exec_time >= 0) AS total_ok,
       bool_and(min_exec_time <= mean_exec_time AND mean_exec_time <= max_exec_time) AS mean_ok,
       bool_and(min_exec_time <= p50_exec_time AND p50_exec_time <= p95_exec_time
                AND p95_exec_time <= p99_exec_time AND p99_exec_time <= max_exec_time) AS percentiles_ok,
       bool_and(abs(total_exec_time - mean_exec_time * calls) < 0.001 * greatest(total_exec_time, 1)) AS total_ok2,
       bool_and(stddev_exec_time >= 0) AS stddev_ok,
       bool_and(first_seen <= last_seen) AS seen_ok,
       bool_and(queryid <> 0) AS queryid_ok,
       bool_and(slow_calls = 0) AS slow_ok
  FROM perfkit.statements;

-- Buffer counters move for statements that read tables.
SELECT shared_blks_hit + shared_blks_read > 0 AS touched_buffers
  FROM perfkit.statements WHERE query = 'SELECT name FROM items WHERE id = $1';

-- The fingerprint is the core query id, the one pg_stat_statements shows.
SELECT count(*) AS same_queryid
  FROM perfkit.statements p JOIN pg_stat_statements s USING (userid, dbid, queryid, toplevel)
 WHERE p.query = 'SELECT name FROM items WHERE id = $1';

-- perfkit.enabled = off records nothing.
SET perfkit.enabled = off;
SELECT name FROM items WHERE id = 10;
SET perfkit.enabled = on;
SELECT calls FROM perfkit.statements WHERE query = 'SELECT name FROM items WHERE id = $1';

-- perfkit.track = none records nothing either.
SET perfkit.track = 'none';
SELECT name FROM items WHERE id = 11;
RESET perfkit.track;
SELECT calls FROM perfkit.statements WHERE query = 'SELECT name FROM items WHERE id = $1';

-- A statement that fails is not counted.
SELECT 1 / (id - 1) FROM items WHERE id = 1;
SELECT count(*) AS failed_recorded FROM perfkit.statements WHERE query LIKE 'SELECT $1 / (id%';
