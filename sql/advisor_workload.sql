-- Index advisor: the workload's cost as the objective, and a greedy choice that sees interactions.
-- Tables have at most 30,000 rows, so ANALYZE reads every row and the planner's estimates (hence
-- the choices) are the same on every run.  Each part starts from empty statistics.
SET max_parallel_workers_per_gather = 0;
SET perfkit.advisor_sample_rate = 1;

CREATE TABLE wl_customers (id integer PRIMARY KEY, region integer NOT NULL, name text NOT NULL);
INSERT INTO wl_customers SELECT i, i % 1000, md5(i::text) FROM generate_series(1, 30000) AS i;
CREATE TABLE wl_purchases (id integer PRIMARY KEY, customer_id integer NOT NULL,
                           amount integer NOT NULL, note text);
INSERT INTO wl_purchases SELECT i, (i * 7) % 30000 + 1, i % 500, md5(i::text)
  FROM generate_series(1, 30000) AS i;
CREATE TABLE wl_log (id integer PRIMARY KEY, kind integer NOT NULL, payload text);
INSERT INTO wl_log SELECT i, i % 1000, md5(i::text) FROM generate_series(1, 30000) AS i;
CREATE TABLE wl_big (id integer PRIMARY KEY, grp integer NOT NULL, code integer NOT NULL,
                     payload text);
INSERT INTO wl_big SELECT i, i % 20, (i * 7919) % 30000, md5(i::text)
  FROM generate_series(1, 30000) AS i;
ANALYZE wl_customers, wl_purchases, wl_log, wl_big;

-- Start a part of the test: no statistics, nothing collected.
CREATE FUNCTION wl_start() RETURNS void LANGUAGE sql
  AS $$ SELECT perfkit.reset(); SELECT perfkit.reset_index_advisor(); $$;
-- Run a statement n times with the constants 1..n in place of %s (dynamic SQL: no parameters).
CREATE FUNCTION wl_run(sql text, n integer) RETURNS void LANGUAGE plpgsql
  AS $$ BEGIN FOR i IN 1..n LOOP EXECUTE format(sql, i); END LOOP; END $$;

-- (a) A join on an unindexed foreign key, filtered by a column of the parent: the child's join
-- column alone cuts a third, the parent's filter column alone not much more; together they make a
-- parameterized nested loop.  Both are chosen, at the same step.
SELECT wl_start();
SELECT wl_run('SELECT sum(p.amount) FROM wl_customers c JOIN wl_purchases p ON p.customer_id = c.id
                WHERE c.region = %s', 3);
SELECT relation, columns, step, improvement_pct >= 50 AS big_cut,
       jsonb_array_length(statements) AS statements, calls,
       (statements -> 0 ->> 'cost_after')::float8 < (statements -> 0 ->> 'cost_before')::float8
         AS cheaper,
       maintenance_cost = 0 AS no_writes,
       saving_ms_per_hour > 0 AS saves_time
  FROM perfkit.index_recommendations ORDER BY step, relation::text;
-- The pair shares its step; each half alone would not reach the default 50% of
-- create_recommended_indexes(), the pair does.
SELECT count(DISTINCT step) AS steps, count(*) AS indexes,
       sum(workload_pct) > 50 AS most_of_the_workload_saved
  FROM perfkit.index_recommendations;
SELECT definition FROM perfkit.create_recommended_indexes(dry_run => true) ORDER BY definition;
-- A budget of one index cannot take the pair: the better half alone, whose cut is under 50%.
SELECT count(*) AS indexes FROM perfkit.create_recommended_indexes(max_indexes => 1, dry_run => true);
SELECT columns, improvement_pct < 50 AS under_half
  FROM perfkit._index_recommendations(0, 1);

-- (b) A table written far more than it is read gets no index: the maintenance of an index for
-- 10,000 written rows costs more than the two reads would save.
SELECT wl_start();
INSERT INTO wl_log SELECT 100000 + i, i % 1000, 'x' FROM generate_series(1, 10000) AS i;
DELETE FROM wl_log WHERE id > 100000;
SELECT wl_run('SELECT count(*) FROM wl_log WHERE kind = %s', 2);
SELECT count(*) AS recommendations FROM perfkit.index_recommendations;
SELECT count(*) AS recommendations FROM perfkit._index_recommendations(0);
-- Once reads dominate, it gets its index, with the maintenance cost shown.
SELECT wl_run('SELECT count(*) FROM wl_log WHERE kind = %s', 40);
SELECT relation, columns, step, maintenance_cost > 0 AS maintenance_counted,
       maintenance_cost < cost_before - cost_after AS reads_win
  FROM perfkit.index_recommendations;

-- (c) A statement that is most of the workload beats a 99% cut of a rare one: with a budget of
-- one index, the frequent statement's index is built, though its cut is the smaller.
SELECT wl_start();
SELECT wl_run('SELECT count(*), max(payload) FROM wl_big WHERE grp = %s', 20);
SELECT wl_run('SELECT payload FROM wl_big WHERE code = %s', 1);
SELECT columns, step, improvement_pct > 95 AS cut_over_95, workload_pct > 40 AS over_40_pct
  FROM perfkit.index_recommendations ORDER BY step;
SELECT definition
  FROM perfkit.create_recommended_indexes(min_improvement => 0, max_indexes => 1, dry_run => true);

-- Bad input.
SELECT * FROM perfkit._index_recommendations(0, -1);
SET perfkit.advisor_space_cost = -1;

RESET perfkit.advisor_sample_rate;
RESET max_parallel_workers_per_gather;
DROP FUNCTION wl_start(), wl_run(text, integer);
DROP TABLE wl_customers, wl_purchases, wl_log, wl_big;
SELECT perfkit.reset_index_advisor();
