-- With pg_stat_statements loaded too, both must report identical calls and
-- rows for every (role, database, query id, top level) after a varied
-- workload: DML with literals, prepared statements, PL/pgSQL loops with
-- track = all, utility statements, multi-statement strings, cursors, errors.
SET perfkit.track = 'all';
SET pg_stat_statements.track = 'all';
-- (in FROM: 17's pg_stat_statements_reset() returns a timestamp, 15's and 16's void)
SELECT 'both reset' AS done FROM perfkit.reset(), pg_stat_statements_reset();

CREATE TABLE par_orders (id serial PRIMARY KEY, customer int, amount numeric, note text);
INSERT INTO par_orders (customer, amount, note)
  SELECT g % 50, g * 0.25, 'order ' || g FROM generate_series(1, 500) g;
CREATE INDEX par_orders_customer ON par_orders (customer);
ANALYZE par_orders;

SELECT count(*) FROM par_orders WHERE customer = 3;
SELECT count(*) FROM par_orders WHERE customer = 4;
SELECT sum(amount) FROM par_orders WHERE amount BETWEEN 1.5 AND 20 AND note LIKE 'order%';
UPDATE par_orders SET amount = amount + 1 WHERE customer IN (1, 2, 3);
DELETE FROM par_orders WHERE id > 490 RETURNING id;
INSERT INTO par_orders (customer, amount) VALUES (7, 1.0), (8, 2.0) ON CONFLICT DO NOTHING;
WITH big AS (SELECT customer, sum(amount) s FROM par_orders GROUP BY customer)
  SELECT count(*) FROM big WHERE s > 100;
SELECT 1 \; SELECT 2 \; UPDATE par_orders SET note = 'x' WHERE id = 1;

PREPARE par_q(int) AS SELECT count(*) FROM par_orders WHERE customer = $1;
EXECUTE par_q(1);
EXECUTE par_q(2);
EXECUTE par_q(3);
DEALLOCATE par_q;

CREATE FUNCTION par_loop(n int) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE total bigint := 0; r record;
BEGIN
  FOR i IN 1..n LOOP
    SELECT count(*) AS c INTO r FROM par_orders WHERE customer = i;
    total := total + r.c;
  END LOOP;
  UPDATE par_orders SET note = 'looped' WHERE customer < n;
  RETURN total;
END $$;
SELECT par_loop(12);
SELECT par_loop(3);
DO $$ BEGIN PERFORM par_loop(2); END $$;

BEGIN;
DECLARE par_c CURSOR FOR SELECT id FROM par_orders ORDER BY id;
FETCH 5 FROM par_c;
FETCH 3 FROM par_c;
CLOSE par_c;
COMMIT;

COPY (SELECT id FROM par_orders WHERE id <= 5) TO stdout;
CREATE TEMP TABLE par_tmp AS SELECT * FROM par_orders WHERE customer = 9;
EXPLAIN (COSTS OFF) SELECT * FROM par_orders WHERE customer = 9;
CREATE VIEW par_v AS SELECT customer, count(*) FROM par_orders GROUP BY customer;
SELECT count(*) FROM par_v;
VACUUM ANALYZE par_orders;
TRUNCATE par_tmp;
SET work_mem = '8MB';
RESET work_mem;
SELECT 1 / 0;
SELECT count(*) FROM par_orders WHERE customer = 5;

-- Every queryid that either extension knows, with differing figures.
SELECT coalesce(p.query, s.query) AS query, p.calls AS perfkit_calls, s.calls AS pgss_calls,
       p.rows AS perfkit_rows, s.rows AS pgss_rows
  FROM perfkit.statements p
  FULL JOIN pg_stat_statements s USING (userid, dbid, queryid, toplevel)
 WHERE p.calls IS DISTINCT FROM s.calls OR p.rows IS DISTINCT FROM s.rows;

-- ... and a count showing the comparison covered the workload.
-- (38 statements on 15 and 16; 17+'s pgss also records DEALLOCATE, 18's SET with its constants
-- normalized: the listing above shows any entry that differs)
SELECT count(*) >= 38 AS whole_workload, sum(p.calls) = sum(s.calls) AS same_total_calls,
       count(*) FILTER (WHERE NOT toplevel) > 3 AS nested_ones
  FROM perfkit.statements p
  JOIN pg_stat_statements s USING (userid, dbid, queryid, toplevel);

-- The normalized texts agree too.
SELECT count(*) AS differing_texts
  FROM perfkit.statements p
  JOIN pg_stat_statements s USING (userid, dbid, queryid, toplevel)
 WHERE p.query <> s.query;
