-- Slow queries: executions at or above perfkit.slow_threshold are captured with
-- their own text, bind parameters and plan; fast ones are not.
SET perfkit.track = 'top';
SET perfkit.slow_threshold = 100;
SELECT perfkit.reset(), perfkit.reset_slow_queries();

-- The plan without its cost figures (they are not what these tests are about).
CREATE FUNCTION slow_plan(plan text) RETURNS text LANGUAGE sql IMMUTABLE
AS $$ SELECT regexp_replace(plan, '  \(cost=[^)]*\)', '', 'g') $$;

SELECT pg_sleep(0.12);
SELECT 1 AS fast;
SELECT query, params, slow_plan(plan) AS plan, level, rows, application_name
  FROM perfkit.slow_queries;
SELECT query, calls, slow_calls FROM perfkit.statements
 WHERE query IN ('SELECT pg_sleep($1)', 'SELECT $1 AS fast') ORDER BY query;

-- Bind parameters of a prepared statement.
PREPARE slow_p(int, text) AS SELECT pg_sleep(0.11), $1 AS id, $2 AS name;
EXECUTE slow_p(42, 'abc');
SET perfkit.slow_params_max_length = 3;
EXECUTE slow_p(7, 'abcdefghij');
SET perfkit.slow_params_max_length = 0;
EXECUTE slow_p(8, 'not kept');
RESET perfkit.slow_params_max_length;
SELECT query, params FROM perfkit.slow_queries LIMIT 3;

-- The plan that ran, with its node names; a multi-statement string keeps only
-- the slow statement's own text.
CREATE TABLE slow_t AS SELECT g AS id, g % 10 AS grp FROM generate_series(1, 1000) g;
ANALYZE slow_t;
SELECT 1 AS first \; SELECT count(*) FROM slow_t, pg_sleep(0.11) WHERE grp = 3;
SELECT query, slow_plan(plan) AS plan FROM perfkit.slow_queries LIMIT 1;

-- perfkit.slow_analyze adds actual rows and times.
SET perfkit.slow_analyze = on;
SELECT count(*) FROM slow_t, pg_sleep(0.11) WHERE grp = 4;
SET perfkit.slow_analyze = off;
-- (18+ prints rows=100.00)
SELECT plan ~ 'actual time=[^)]* rows=100(\.00)? loops=1\)' AS has_actual_rows
  FROM perfkit.slow_queries LIMIT 1;

-- Nested statements are captured with their level when perfkit.track = all.
CREATE FUNCTION slow_inner() RETURNS void LANGUAGE plpgsql
AS $$ BEGIN PERFORM pg_sleep(0.11); END $$;
SET perfkit.track = 'all';
SELECT slow_inner();
SET perfkit.track = 'top';
SELECT slow_inner();
SELECT query, level, slow_plan(plan) AS plan FROM perfkit.slow_queries LIMIT 3;

-- A statement that fails is not captured, however long it ran.
SELECT perfkit.reset_slow_queries();
SELECT 1 / 0 FROM pg_sleep(0.11);
SELECT count(*) AS captured FROM perfkit.slow_queries;

-- -1 disables capture and slow_calls.
SET perfkit.slow_threshold = -1;
SELECT pg_sleep(0.11);
SELECT count(*) AS captured FROM perfkit.slow_queries;
SELECT calls, slow_calls FROM perfkit.statements WHERE query = 'SELECT pg_sleep($1)' AND toplevel;

-- A huge plan is truncated with a marker, within the entry's fixed size.
SET perfkit.slow_threshold = 0;
SET perfkit.track = 'all';
DO $$
BEGIN
  EXECUTE (SELECT 'SELECT count(*) FROM (' ||
                  string_agg(format('SELECT id FROM slow_t WHERE id = %s', g), ' UNION ALL ') || ') u'
             FROM generate_series(1, 400) g);
END $$;
SET perfkit.track = 'top';
SET perfkit.slow_threshold = 100;
SELECT level, octet_length(query) <= 8192 AS query_bounded, query LIKE '%[... truncated]' AS query_marked,
       octet_length(plan) < 32768 AS plan_bounded, plan LIKE '%[... truncated]' AS plan_marked,
       plan LIKE '%Aggregate%Append%' AS plan_nodes
  FROM perfkit.slow_queries WHERE query LIKE 'SELECT count(*) FROM (SELECT id FROM slow_t WHERE id = 1 UNION ALL%';

-- Other roles' texts, parameters and plans are hidden without pg_read_all_stats.
CREATE ROLE slow_alice;
CREATE ROLE slow_bob;
SELECT perfkit.reset_slow_queries();
SET ROLE slow_alice;
PREPARE slow_a(text) AS SELECT pg_sleep(0.11), $1 AS secret;
EXECUTE slow_a('s3cr3t');
RESET ROLE;
SET ROLE slow_bob;
SELECT rolname, query, params, plan FROM perfkit.slow_queries;
SELECT perfkit.reset_slow_queries();
RESET ROLE;
GRANT pg_read_all_stats TO slow_bob;
SET ROLE slow_bob;
SELECT rolname, query, params, plan IS NOT NULL AS has_plan FROM perfkit.slow_queries;
RESET ROLE;
DEALLOCATE slow_a;
DROP ROLE slow_alice;
DROP ROLE slow_bob;

-- The report shows both sections, and rejects bad sizes.
SELECT perfkit.report() LIKE '%== Top 10 statements by total time ==%== Recent slow queries by statement (threshold 100ms) ==%' AS report_ok;
-- Its slow-query section lists each statement once: captures, worst and latest duration, the
-- latest text, the parameters and plan of the worst ($1 = '0.3'), the newest statement first
-- (times and durations masked).
SELECT perfkit.reset_slow_queries();
PREPARE slow_r(float8, int) AS SELECT pg_sleep($1), $2 AS n;
EXECUTE slow_r(0.11, 1);
EXECUTE slow_r(0.3, 2);
EXECUTE slow_r(0.12, 3);
SELECT 'other' AS x, pg_sleep(0.11);
DEALLOCATE slow_r;
SELECT regexp_replace(regexp_replace(regexp_replace(
         substring(perfkit.report(slow => 2) FROM '== Recent slow queries[^\n]*\n(.*?)\n\n== N\+1'),
         '\d{4}-\d\d-\d\d \d\d:\d\d:\d\d', 'TIME', 'g'),
         '\d+\.\d ms', 'N ms', 'g'),
         '  \(cost=[^)]*\)|  \S+@\S+$', '', 'gn') AS slow_section;
SELECT perfkit.report(top => -1);
SELECT perfkit.report(NULL, 1);
