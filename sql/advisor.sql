-- Index advisor: recommendations from the sampled workload, validated by the planner.
-- Tables have at most 30,000 rows, so ANALYZE reads every row and the planner's
-- estimates (hence the recommendations) are the same on every run.
SELECT perfkit.reset_index_advisor();
SET perfkit.advisor_sample_rate = 1;
SET max_parallel_workers_per_gather = 0;

CREATE TABLE adv_orders (
    id          integer PRIMARY KEY,
    customer_id integer NOT NULL,
    status      text NOT NULL,
    amount      integer NOT NULL,
    note        text);
INSERT INTO adv_orders
SELECT i, i % 1000, CASE WHEN i % 2 = 0 THEN 'open' ELSE 'closed' END, i % 5000, md5(i::text)
  FROM generate_series(1, 30000) AS i;

CREATE TABLE adv_events (
    id        integer NOT NULL,
    tenant_id integer NOT NULL,
    ts        integer NOT NULL,
    created   integer NOT NULL,
    payload   text);
INSERT INTO adv_events
SELECT i, i % 10, i, (i * 7919) % 30000, md5(i::text)
  FROM generate_series(1, 30000) AS i;

CREATE TABLE adv_tiny (id integer, code integer);
INSERT INTO adv_tiny SELECT i, i % 7 FROM generate_series(1, 50) AS i;

ANALYZE adv_orders, adv_events, adv_tiny;
-- The load is not the workload: its 30,000-row INSERTs would count as writes that every new
-- index on these tables has to keep up with.
SELECT perfkit.reset();

-- The workload: each statement runs a few times with different constants.
SELECT count(*) FROM adv_orders WHERE customer_id = 42;
SELECT count(*) FROM adv_orders WHERE customer_id = 43;
SELECT count(*) FROM adv_events WHERE tenant_id = 3 AND ts BETWEEN 1000 AND 1100;
SELECT count(*) FROM adv_events WHERE tenant_id = 4 AND ts BETWEEN 2000 AND 2100;
SELECT id FROM adv_events WHERE tenant_id = 5 ORDER BY created DESC LIMIT 3;
SELECT id FROM adv_events WHERE tenant_id = 6 ORDER BY created DESC LIMIT 3;
-- decoys: half the table, a tiny table, a query served by the primary key
SELECT count(*) FROM adv_orders WHERE status = 'open';
SELECT count(*) FROM adv_tiny WHERE code = 3;
SELECT note FROM adv_orders WHERE id = 77;
-- a prepared statement: its parameter values are what the advisor plans with
PREPARE adv_by_amount(integer) AS SELECT count(*) FROM adv_orders WHERE amount = $1;
EXECUTE adv_by_amount(4242);
EXECUTE adv_by_amount(4243);

-- One recommendation per useful index, with a planner-validated cost cut:
-- equality columns before the range column, the sort key after the equality column,
-- nothing for the decoys.
SELECT relation, columns, method, definition,
       cardinality(queryids) >= 1 AS has_statements,
       calls >= 2 AS calls_counted,
       cost_after < cost_before AS cheaper,
       improvement_pct >= 50 AS big_cut,
       est_size_bytes > 8192 AS sized,
       write_ratio BETWEEN 0 AND 1 AS write_ratio_ok,
       score > 0 AS scored
  FROM perfkit.index_recommendations
 ORDER BY definition;

-- The statements each recommendation helps are the ones that ran.
SELECT r.columns, s.query
  FROM perfkit.index_recommendations r, unnest(r.queryids) AS q(id)
  JOIN perfkit.statements s ON s.queryid = q.id AND s.toplevel
 ORDER BY r.definition, s.query;

-- The same analysis for one statement given by the user; never executed.
SELECT columns, definition, improvement_pct >= 50 AS big_cut
  FROM perfkit.recommend_indexes('SELECT * FROM adv_orders WHERE customer_id = 42 AND amount > 10');
SELECT columns, definition
  FROM perfkit.recommend_indexes('SELECT * FROM adv_events WHERE ts > 29990 ORDER BY ts');
SELECT count(*) AS decoy_recommendations
  FROM perfkit.recommend_indexes('SELECT * FROM adv_orders WHERE status = ''open''');
SELECT count(*) AS tiny_recommendations
  FROM perfkit.recommend_indexes('SELECT * FROM adv_tiny WHERE code = 3');
SELECT count(*) AS pk_recommendations
  FROM perfkit.recommend_indexes('SELECT * FROM adv_orders WHERE id = 3');
SELECT count(*) AS recommendations
  FROM perfkit.recommend_indexes('DELETE FROM adv_orders WHERE customer_id = 1');
SELECT count(*) AS not_deleted FROM adv_orders WHERE customer_id = 1;

-- A function the planner evaluates plans its own queries without the hypothetical index.
CREATE FUNCTION adv_lookup(k integer) RETURNS integer STABLE LANGUAGE plpgsql
  AS $$ BEGIN RETURN (SELECT amount FROM adv_orders WHERE id = k); END $$;
SELECT columns FROM perfkit.recommend_indexes('SELECT count(*) FROM adv_orders WHERE amount = adv_lookup(7)');
SELECT adv_lookup(7);
DROP FUNCTION adv_lookup(integer);

-- Bad input: clear errors.
SELECT * FROM perfkit.recommend_indexes(NULL);
SELECT * FROM perfkit.recommend_indexes('SELECT 1; SELECT 2');
SELECT * FROM perfkit.recommend_indexes('CREATE TABLE adv_x (a int)');
SELECT * FROM perfkit.recommend_indexes('INSERT INTO adv_tiny VALUES (1, 1)');
SELECT * FROM perfkit.recommend_indexes('SELECT * FROM adv_missing WHERE a = 1');
SELECT * FROM perfkit.recommend_indexes('SELECT * FROM adv_orders WHERE id = $1');
SELECT * FROM perfkit.recommend_indexes('SELEC oops');
SELECT * FROM perfkit._index_recommendations('NaN'::float8);
SELECT * FROM perfkit.create_recommended_indexes(min_improvement => 101);
SELECT * FROM perfkit.create_recommended_indexes(max_indexes => -1);
SELECT * FROM perfkit.create_recommended_indexes(dry_run => NULL);
SELECT to_regclass('adv_x') AS not_created;

-- Privileges: a role without SELECT on the table cannot have its statements analyzed.
CREATE ROLE adv_stranger;
SET ROLE adv_stranger;
SELECT * FROM perfkit.recommend_indexes('SELECT * FROM adv_orders WHERE customer_id = 42');
-- statements of other roles are not used without pg_read_all_stats
SELECT count(*) AS visible FROM perfkit.index_recommendations;
SELECT * FROM perfkit.reset_index_advisor();
RESET ROLE;
DROP ROLE adv_stranger;

-- dry_run only lists the DDL; the real call requests the builds (inside a transaction block).
SELECT build_id IS NULL AS no_build, definition
  FROM perfkit.create_recommended_indexes(dry_run => true) ORDER BY definition;
SELECT count(*) AS requested FROM perfkit.index_build_requests WHERE status = 'pending';
BEGIN;
SELECT build_id IS NOT NULL AS requested, definition
  FROM perfkit.create_recommended_indexes(max_indexes => 5) ORDER BY definition;
COMMIT;
CALL perfkit.wait_for_index_builds('2 minutes');
SELECT c.relname AS tbl, pg_get_indexdef(i.indexrelid) AS index, i.indisvalid
  FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
 WHERE c.relname IN ('adv_orders', 'adv_events') AND NOT i.indisprimary
 ORDER BY 2;

-- The statements are served now: nothing is recommended for them any more.
SELECT count(*) FROM adv_orders WHERE customer_id = 44;
SELECT count(*) FROM adv_events WHERE tenant_id = 6 AND ts BETWEEN 3000 AND 3100;
SELECT count(*) AS recommendations FROM perfkit.index_recommendations;
SELECT * FROM perfkit.create_recommended_indexes();

-- The report has the section.
SELECT regexp_replace(substring(perfkit.report() FROM '== Index recommendations[^\n]*\n[^\n]*'),
                      '\d+', 'N', 'g') AS report_section;

-- The builds remember their statements' measured figures at the request; the statements run since
-- are compared with them (time figures vary: only their presence is shown).
SELECT definition, status, cardinality(queryids) AS statements, calls_before >= 2 AS had_calls,
       calls_since, speedup IS NOT NULL AS measured, mean_ms_since IS NOT NULL AS timed
  FROM perfkit.index_recommendation_results ORDER BY definition;
SELECT substring(perfkit.report() FROM '== Recommended indexes built[^\n]*') AS report_section;
SELECT regexp_replace(substring(perfkit.report()
                                FROM 'CREATE INDEX CONCURRENTLY ON public.adv_orders USING btree \(customer_id\)[^\n]*\n[^\n]*'),
                      '\d+', 'N', 'g') AS report_entry;

RESET perfkit.advisor_sample_rate;
RESET max_parallel_workers_per_gather;
DROP TABLE adv_orders, adv_events, adv_tiny;
SELECT perfkit.reset_index_advisor();
