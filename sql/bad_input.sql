-- Bad input to every SQL-callable function of perfkit: NULLs, wrong types, unknown objects, huge
-- values, 1 MB strings and injection attempts in every text argument.  Each call must fail with a
-- clear error (an SQLSTATE that is not internal, a message starting in lower case) and nothing may
-- be created or dropped: pg_class and perfkit.index_build_requests are counted before and after,
-- once the background builder has run whatever was recorded.
--
-- The calls run through bi_try(), which returns 'ok' or "SQLSTATE: message" (first 110
-- characters); a call that unexpectedly succeeds commits like any other statement would.
\set VERBOSITY default
SET perfkit.track = 'none';
CALL perfkit.wait_for_index_builds('5 minutes');

CREATE TABLE bi_t (a int PRIMARY KEY, b text, c jsonb);
CREATE INDEX bi_t_b_idx ON bi_t (b);
CREATE VIEW bi_v AS SELECT * FROM bi_t;
CREATE TEMP TABLE bi_temp (a int);
CREATE INDEX bi_temp_a_idx ON bi_temp (a);
CREATE TABLE bi_parted (a int) PARTITION BY RANGE (a);
CREATE INDEX bi_parted_a_idx ON bi_parted (a);

CREATE FUNCTION bi_try(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    st text;
    msg text;
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
    RETURN st || ': ' || left(msg, 110);
END $$;

-- Injection attempts, used in every text argument below.
CREATE TEMP TABLE bi_inj (n int, s text);
INSERT INTO bi_inj VALUES
  (1, 'x); DROP TABLE bi_t; --'),
  (2, 'x''); DROP TABLE bi_t; --'),
  (3, 'x"); DROP TABLE bi_t; --'),
  (4, 'a; DROP TABLE bi_t'),
  (5, 'a /* ; DROP TABLE bi_t'),
  (6, 'a */ DROP TABLE bi_t; /*'),
  (7, '$$); DROP TABLE bi_t; $$'),
  (8, '$q$ ) ; DROP TABLE bi_t ; SELECT $q'),
  (9, 'U&"\0061"); DROP TABLE bi_t; --'),
  (10, 'a\''); DROP TABLE bi_t; --'),
  (11, E'a\n); DROP TABLE bi_t;\n--'),
  (12, 'a); CREATE TABLE bi_evil (x int); --');

CREATE TEMP TABLE bi_cases (n serial, label text, sql text);
INSERT INTO bi_cases (label, sql) VALUES
  -- create_index_concurrently(definition text)
  ('def null', 'SELECT perfkit.create_index_concurrently(NULL::text)'),
  ('def empty', 'SELECT perfkit.create_index_concurrently('''')'),
  ('def blank', 'SELECT perfkit.create_index_concurrently(''  ;  '')'),
  ('def wrong type', 'SELECT perfkit.create_index_concurrently(42)'),
  ('def two statements', 'SELECT perfkit.create_index_concurrently(''CREATE INDEX bi_x ON bi_t (a); CREATE INDEX bi_y ON bi_t (b)'')'),
  ('def other ddl', 'SELECT perfkit.create_index_concurrently(''CREATE TABLE bi_evil (x int)'')'),
  ('def drop', 'SELECT perfkit.create_index_concurrently(''DROP INDEX bi_t_b_idx'')'),
  ('def reindex', 'SELECT perfkit.create_index_concurrently(''REINDEX INDEX bi_t_b_idx'')'),
  ('def create schema', 'SELECT perfkit.create_index_concurrently(''CREATE SCHEMA bi_s CREATE INDEX bi_x ON bi_t (a)'')'),
  ('def do', 'SELECT perfkit.create_index_concurrently(''DO $x$ BEGIN DROP TABLE bi_t; END $x$'')'),
  ('def unknown table', 'SELECT perfkit.create_index_concurrently(''CREATE INDEX bi_x ON bi_nope (a)'')'),
  ('def unknown schema', 'SELECT perfkit.create_index_concurrently(''CREATE INDEX bi_x ON nope.bi_t (a)'')'),
  ('def other database', 'SELECT perfkit.create_index_concurrently(''CREATE INDEX bi_x ON nope.public.bi_t (a)'')'),
  ('def view', 'SELECT perfkit.create_index_concurrently(''CREATE INDEX bi_x ON bi_v (a)'')'),
  ('def temp table', 'SELECT perfkit.create_index_concurrently(''CREATE INDEX bi_x ON bi_temp (a)'')'),
  ('def partitioned', 'SELECT perfkit.create_index_concurrently(''CREATE INDEX bi_x ON bi_parted (a)'')'),
  ('def catalog', 'SELECT perfkit.create_index_concurrently(''CREATE INDEX bi_x ON pg_class (relname)'')'),
  ('def unknown column', 'SELECT perfkit.create_index_concurrently(''CREATE INDEX bi_x ON bi_t (nope)'')'),
  ('def system column', 'SELECT perfkit.create_index_concurrently(''CREATE INDEX bi_x ON bi_t (ctid)'')'),
  ('def system column expr', 'SELECT perfkit.create_index_concurrently(''CREATE INDEX bi_x ON bi_t ((ctid))'')'),
  ('def system column pred', 'SELECT perfkit.create_index_concurrently(''CREATE INDEX bi_x ON bi_t (a) WHERE xmin <> ''''0'''''')'),
  ('def system column include', 'SELECT perfkit.create_index_concurrently(''CREATE INDEX bi_x ON bi_t (a) INCLUDE (tableoid)'')'),
  ('def pg_global', 'SELECT perfkit.create_index_concurrently(''CREATE INDEX bi_x ON bi_t (a) TABLESPACE pg_global'')'),
  ('def unknown tablespace', 'SELECT perfkit.create_index_concurrently(''CREATE INDEX bi_x ON bi_t (a) TABLESPACE nope'')'),
  ('def unknown method', 'SELECT perfkit.create_index_concurrently(''CREATE INDEX bi_x ON bi_t USING nope (a)'')'),
  ('def table method', 'SELECT perfkit.create_index_concurrently(''CREATE INDEX bi_x ON bi_t USING heap (a)'')'),
  ('def unknown opclass', 'SELECT perfkit.create_index_concurrently(''CREATE INDEX bi_x ON bi_t (a nope_ops)'')'),
  ('def unknown collation', 'SELECT perfkit.create_index_concurrently(''CREATE INDEX bi_x ON bi_t (b COLLATE "nope")'')'),
  ('def bad option', 'SELECT perfkit.create_index_concurrently(''CREATE INDEX bi_x ON bi_t (a) WITH (fillfactor = 1000)'')'),
  ('def subquery', 'SELECT perfkit.create_index_concurrently(''CREATE INDEX bi_x ON bi_t (a) WHERE a > (SELECT 1)'')'),
  ('def other table', 'SELECT perfkit.create_index_concurrently(''CREATE INDEX bi_x ON bi_t (a) WHERE pg_class.oid > 0'')'),
  ('def volatile', 'SELECT perfkit.create_index_concurrently(''CREATE INDEX bi_x ON bi_t (a) WHERE pg_catalog.pg_sleep(1) IS NULL'')'),
  ('def parameter', 'SELECT perfkit.create_index_concurrently(''CREATE INDEX bi_x ON bi_t (a) WHERE a = $1'')'),
  ('def not boolean', 'SELECT perfkit.create_index_concurrently(''CREATE INDEX bi_x ON bi_t (a) WHERE a'')'),
  ('def division by zero', 'SELECT perfkit.create_index_concurrently(''CREATE INDEX bi_x ON bi_t ((a + 1 / 0))'')'),
  ('def existing name', 'SELECT perfkit.create_index_concurrently(''CREATE INDEX bi_t ON bi_t (a)'')'),
  ('def same name other def', 'SELECT perfkit.create_index_concurrently(''CREATE INDEX bi_t_b_idx ON bi_t (a)'')'),
  ('def quote in name', 'SELECT perfkit.create_index_concurrently(''CREATE INDEX "bi""x" ON bi_t (a)'')'),
  ('def semicolon in name', 'SELECT perfkit.create_index_concurrently(''CREATE INDEX "bi;x" ON bi_t (a)'')'),
  ('def newline in name', E'SELECT perfkit.create_index_concurrently(''CREATE INDEX "bi\nx" ON bi_t (a)'')'),
  ('def unicode escape', 'SELECT perfkit.create_index_concurrently(''CREATE INDEX U&"bi\0000" ON bi_t (a)'')'),
  ('def 1 MB unterminated', 'SELECT perfkit.create_index_concurrently(''CREATE INDEX bi_x ON bi_t (a) WHERE b = '''''' || repeat(''x'', 1048576))'),
  ('def 1 MB garbage', 'SELECT perfkit.create_index_concurrently(repeat(''(;'', 524288))'),
  ('def deep parentheses', 'SELECT perfkit.create_index_concurrently(''CREATE INDEX bi_x ON bi_t (a) WHERE '' || repeat(''('', 100000) || ''true'' || repeat('')'', 100000))'),
  ('def deep expression', 'SELECT perfkit.create_index_concurrently(''CREATE INDEX bi_x ON bi_t ((a'' || repeat('' + a'', 200000) || ''))'')'),
  -- create_index_concurrently(tbl, columns, name, method, predicate, include, is_unique)
  ('cols null table', 'SELECT perfkit.create_index_concurrently(NULL::regclass, ARRAY[''a''])'),
  ('cols null columns', 'SELECT perfkit.create_index_concurrently(''bi_t'', NULL)'),
  ('cols null element', 'SELECT perfkit.create_index_concurrently(''bi_t'', ARRAY[NULL]::text[])'),
  ('cols empty', 'SELECT perfkit.create_index_concurrently(''bi_t'', ''{}'')'),
  ('cols two dimensions', 'SELECT perfkit.create_index_concurrently(''bi_t'', ''{{a},{b}}'')'),
  ('cols include two dimensions', 'SELECT perfkit.create_index_concurrently(''bi_t'', ARRAY[''a''], include => ''{{b},{c}}'')'),
  ('cols null method', 'SELECT perfkit.create_index_concurrently(''bi_t'', ARRAY[''a''], method => NULL)'),
  ('cols null unique', 'SELECT perfkit.create_index_concurrently(''bi_t'', ARRAY[''a''], is_unique => NULL)'),
  ('cols unknown table', 'SELECT perfkit.create_index_concurrently(''bi_nope'', ARRAY[''a''])'),
  ('cols table oid 0', 'SELECT perfkit.create_index_concurrently(0, ARRAY[''a''])'),
  ('cols table huge oid', 'SELECT perfkit.create_index_concurrently(4294967295, ARRAY[''a''])'),
  ('cols table not a number', 'SELECT perfkit.create_index_concurrently(''bi_t; DROP TABLE bi_t'', ARRAY[''a''])'),
  ('cols view', 'SELECT perfkit.create_index_concurrently(''bi_v'', ARRAY[''a''])'),
  ('cols index', 'SELECT perfkit.create_index_concurrently(''bi_t_b_idx'', ARRAY[''b''])'),
  ('cols catalog', 'SELECT perfkit.create_index_concurrently(''pg_class'', ARRAY[''relname''])'),
  ('cols unknown column', 'SELECT perfkit.create_index_concurrently(''bi_t'', ARRAY[''nope''])'),
  ('cols system column', 'SELECT perfkit.create_index_concurrently(''bi_t'', ARRAY[''ctid''])'),
  ('cols unknown include', 'SELECT perfkit.create_index_concurrently(''bi_t'', ARRAY[''a''], include => ARRAY[''nope''])'),
  ('cols unknown method', 'SELECT perfkit.create_index_concurrently(''bi_t'', ARRAY[''a''], method => ''nope'')'),
  ('cols table method', 'SELECT perfkit.create_index_concurrently(''bi_t'', ARRAY[''a''], method => ''heap'')'),
  ('cols empty name', 'SELECT perfkit.create_index_concurrently(''bi_t'', ARRAY[''a''], name => '''')'),
  ('cols existing name', 'SELECT perfkit.create_index_concurrently(''bi_t'', ARRAY[''a''], name => ''bi_v'')'),
  ('cols empty predicate', 'SELECT perfkit.create_index_concurrently(''bi_t'', ARRAY[''a''], predicate => '''')'),
  ('cols predicate clause', 'SELECT perfkit.create_index_concurrently(''bi_t'', ARRAY[''a''], predicate => ''true ORDER BY 1'')'),
  ('cols predicate two', 'SELECT perfkit.create_index_concurrently(''bi_t'', ARRAY[''a''], predicate => ''true, false'')'),
  ('cols predicate union', 'SELECT perfkit.create_index_concurrently(''bi_t'', ARRAY[''a''], predicate => ''true UNION SELECT false'')'),
  ('cols predicate from', 'SELECT perfkit.create_index_concurrently(''bi_t'', ARRAY[''a''], predicate => ''true FROM bi_t'')'),
  ('cols predicate alias', 'SELECT perfkit.create_index_concurrently(''bi_t'', ARRAY[''a''], predicate => ''true AS x'')'),
  ('cols predicate into', 'SELECT perfkit.create_index_concurrently(''bi_t'', ARRAY[''a''], predicate => ''true INTO bi_evil'')'),
  ('cols predicate volatile', 'SELECT perfkit.create_index_concurrently(''bi_t'', ARRAY[''a''], predicate => ''random() > 0.5'')'),
  ('cols predicate system column', 'SELECT perfkit.create_index_concurrently(''bi_t'', ARRAY[''a''], predicate => ''ctid > ''''(0,1)'''''')'),
  ('cols 1 MB column', 'SELECT perfkit.create_index_concurrently(''bi_t'', ARRAY[repeat(''x'', 1048576)])'),
  ('cols 1 MB include', 'SELECT perfkit.create_index_concurrently(''bi_t'', ARRAY[''a''], include => ARRAY[repeat(''x'', 1048576)])'),
  ('cols 1 MB name', 'SELECT perfkit.create_index_concurrently(''bi_t'', ARRAY[''a''], name => repeat(''x'', 1048576))'),
  ('cols 1 MB multibyte name', 'SELECT perfkit.create_index_concurrently(''bi_t'', ARRAY[''a''], name => repeat(''é'', 524288))'),
  ('cols 1 MB method', 'SELECT perfkit.create_index_concurrently(''bi_t'', ARRAY[''a''], method => repeat(''x'', 1048576))'),
  ('cols 1 MB predicate', 'SELECT perfkit.create_index_concurrently(''bi_t'', ARRAY[''a''], predicate => repeat(''x'', 1048576))'),
  ('cols 100000 columns', 'SELECT perfkit.create_index_concurrently(''bi_t'', array_fill(''a''::text, ARRAY[100000]))'),
  ('cols 33 columns', 'SELECT perfkit.create_index_concurrently(''bi_t'', array_fill(''a''::text, ARRAY[33]))'),
  -- drop_index_concurrently(idx regclass)
  ('drop null', 'SELECT perfkit.drop_index_concurrently(NULL)'),
  ('drop oid 0', 'SELECT perfkit.drop_index_concurrently(0)'),
  ('drop huge oid', 'SELECT perfkit.drop_index_concurrently(4294967295)'),
  ('drop negative', 'SELECT perfkit.drop_index_concurrently(-1)'),
  ('drop unknown', 'SELECT perfkit.drop_index_concurrently(''bi_nope'')'),
  ('drop table', 'SELECT perfkit.drop_index_concurrently(''bi_t'')'),
  ('drop view', 'SELECT perfkit.drop_index_concurrently(''bi_v'')'),
  ('drop constraint index', 'SELECT perfkit.drop_index_concurrently(''bi_t_pkey'')'),
  ('drop temp index', 'SELECT perfkit.drop_index_concurrently(''bi_temp_a_idx'')'),
  ('drop partitioned index', 'SELECT perfkit.drop_index_concurrently(''bi_parted_a_idx'')'),
  ('drop catalog index', 'SELECT perfkit.drop_index_concurrently(''pg_class_oid_index'')'),
  ('drop 1 MB name', 'SELECT perfkit.drop_index_concurrently(repeat(''x'', 1048576))'),
  ('drop wrong type', 'SELECT perfkit.drop_index_concurrently(now())'),
  -- cancel_index_build(id bigint)
  ('cancel null', 'SELECT perfkit.cancel_index_build(NULL)'),
  ('cancel zero', 'SELECT perfkit.cancel_index_build(0)'),
  ('cancel negative', 'SELECT perfkit.cancel_index_build(-9223372036854775808)'),
  ('cancel huge', 'SELECT perfkit.cancel_index_build(9223372036854775807)'),
  ('cancel too huge', 'SELECT perfkit.cancel_index_build(9223372036854775808)'),
  ('cancel text', 'SELECT perfkit.cancel_index_build(''1; DROP TABLE bi_t'')'),
  -- wait_for_index_builds(timeout, finished): only as CALL outside a function
  ('wait in a function', 'CALL perfkit.wait_for_index_builds(''1 second'')'),
  ('wait as a function', 'SELECT perfkit.wait_for_index_builds(''1 second'')'),
  -- report(top, slow)
  ('report null top', 'SELECT perfkit.report(NULL)'),
  ('report null slow', 'SELECT perfkit.report(slow => NULL)'),
  ('report negative', 'SELECT perfkit.report(-1, 5)'),
  ('report min int', 'SELECT perfkit.report(10, -2147483648)'),
  ('report bigint', 'SELECT perfkit.report(2147483648)'),
  ('report text', 'SELECT perfkit.report(''ten'')'),
  ('report max int', 'SELECT perfkit.report(2147483647, 2147483647)'),
  -- redis_key(query, params)
  ('key null', 'SELECT perfkit.redis_key(NULL)'),
  ('key empty', 'SELECT perfkit.redis_key('''')'),
  ('key two statements', 'SELECT perfkit.redis_key(''SELECT 1; DROP TABLE bi_t'')'),
  ('key not select', 'SELECT perfkit.redis_key(''DROP TABLE bi_t'')'),
  ('key syntax', 'SELECT perfkit.redis_key(''SELECT (1'')'),
  ('key comment after', 'SELECT perfkit.redis_key(''SELECT 1 -- x'')'),
  ('key params two dimensions', 'SELECT perfkit.redis_key(''SELECT $1'', ''{{a},{b}}'')'),
  ('key 1 MB blank', 'SELECT perfkit.redis_key(repeat('' '', 1048576))'),
  ('key deep parentheses', 'SELECT perfkit.redis_key(''SELECT '' || repeat(''('', 100000) || ''1'' || repeat('')'', 100000))'),
  ('key 1 MB select', 'SELECT perfkit.redis_key(''SELECT '''''' || repeat(''x'', 1048576) || '''''''')'),
  ('key 1 MB params', 'SELECT perfkit.redis_key(''SELECT $1'', ARRAY[repeat(''x'', 1048576), NULL])'),
  ('key wrong type', 'SELECT perfkit.redis_key(42)'),
  -- functions behind the views, and the resets: no arguments, or no such signature
  ('statements args', 'SELECT * FROM perfkit._statements(1)'),
  ('info args', 'SELECT * FROM perfkit._info(1, 2)'),
  ('slow args', 'SELECT * FROM perfkit._slow_queries(NULL, NULL)'),
  ('n_plus_one args', 'SELECT * FROM perfkit._n_plus_one(0)'),
  ('redis status args', 'SELECT * FROM perfkit._redis_status(true)'),
  ('progress args', 'SELECT * FROM perfkit._index_build_progress(1)'),
  ('quiet args', 'SELECT perfkit._nplusone_quiet(1)'),
  ('reset args', 'SELECT perfkit.reset(true)'),
  ('reset slow args', 'SELECT perfkit.reset_slow_queries(''all'')'),
  ('reset n_plus_one args', 'SELECT perfkit.reset_n_plus_one(NULL)'),
  ('bins nulls', 'SELECT perfkit._latency_bins(NULL, NULL, NULL, NULL) IS NULL OR NULL'),
  ('bins text', 'SELECT perfkit._latency_bins(''x'', 0, 0, true)'),
  ('bins huge', 'SELECT perfkit._latency_bins(4294967296, 0, 0, true)'),
  ('bins unknown entry', 'SELECT perfkit._latency_bins(4294967295, 4294967295, -9223372036854775808, false) IS NULL OR NULL');

-- Every text argument, with every injection attempt.
INSERT INTO bi_cases (label, sql)
SELECT format('%s inj %s', t.label, i.n), format(t.template, i.s)
  FROM (VALUES
    (1, 'def name', 'SELECT perfkit.create_index_concurrently(''CREATE INDEX '' || %L || '' ON bi_t (a)'')'),
    (2, 'def table', 'SELECT perfkit.create_index_concurrently(''CREATE INDEX bi_x ON '' || %L || '' (a)'')'),
    (3, 'def column', 'SELECT perfkit.create_index_concurrently(''CREATE INDEX bi_x ON bi_t ('' || %L || '')'')'),
    (4, 'def predicate', 'SELECT perfkit.create_index_concurrently(''CREATE INDEX bi_x ON bi_t (a) WHERE '' || %L)'),
    (5, 'def whole', 'SELECT perfkit.create_index_concurrently(%L)'),
    (6, 'cols table', 'SELECT perfkit.create_index_concurrently(%L, ARRAY[''a''])'),
    (7, 'cols column', 'SELECT perfkit.create_index_concurrently(''bi_t'', ARRAY[%L])'),
    (8, 'cols name', 'SELECT perfkit.create_index_concurrently(''bi_t'', ARRAY[''a''], name => %L)'),
    (9, 'cols method', 'SELECT perfkit.create_index_concurrently(''bi_t'', ARRAY[''a''], method => %L)'),
    (10, 'cols predicate', 'SELECT perfkit.create_index_concurrently(''bi_t'', ARRAY[''a''], predicate => %L)'),
    (11, 'cols include', 'SELECT perfkit.create_index_concurrently(''bi_t'', ARRAY[''a''], include => ARRAY[%L])'),
    (12, 'drop', 'SELECT perfkit.drop_index_concurrently(%L)'),
    (13, 'key', 'SELECT perfkit.redis_key(%L)')
  ) AS t(n, label, template)
  CROSS JOIN bi_inj i
 ORDER BY t.n, i.n;

-- Added in 0.3.0 (after the others, so that their numbers stay).
INSERT INTO bi_cases (label, sql) VALUES
  -- top_statements(n)
  ('top null', 'SELECT * FROM perfkit.top_statements(NULL)'),
  ('top negative', 'SELECT * FROM perfkit.top_statements(-1)'),
  ('top min int', 'SELECT * FROM perfkit.top_statements(-2147483648)'),
  ('top too many', 'SELECT * FROM perfkit.top_statements(10001)'),
  ('top max int', 'SELECT * FROM perfkit.top_statements(2147483647)'),
  ('top bigint', 'SELECT * FROM perfkit.top_statements(2147483648)'),
  ('top text', 'SELECT * FROM perfkit.top_statements(''ten'')'),
  ('top raw null', 'SELECT * FROM perfkit._top_statements(NULL)'),
  ('top raw negative', 'SELECT * FROM perfkit._top_statements(-5)'),
  ('slow captured args', 'SELECT perfkit._slow_captured(1)'),
  -- top_statements_histogram(n, bounds)
  ('hist null n', 'SELECT * FROM perfkit.top_statements_histogram(NULL)'),
  ('hist negative n', 'SELECT * FROM perfkit.top_statements_histogram(-1)'),
  ('hist null bounds', 'SELECT * FROM perfkit.top_statements_histogram(5, NULL)'),
  ('hist empty bounds', 'SELECT * FROM perfkit.top_statements_histogram(5, ''{}'')'),
  ('hist null bound', 'SELECT * FROM perfkit.top_statements_histogram(5, ''{1,NULL}'')'),
  ('hist descending', 'SELECT * FROM perfkit.top_statements_histogram(5, ''{10,1}'')'),
  ('hist repeated', 'SELECT * FROM perfkit.top_statements_histogram(5, ''{1,1}'')'),
  ('hist zero', 'SELECT * FROM perfkit.top_statements_histogram(5, ''{0,1}'')'),
  ('hist negative', 'SELECT * FROM perfkit.top_statements_histogram(5, ''{-1}'')'),
  ('hist nan', 'SELECT * FROM perfkit.top_statements_histogram(5, ''{1,NaN}'')'),
  ('hist infinity', 'SELECT * FROM perfkit.top_statements_histogram(5, ''{1,Infinity}'')'),
  ('hist two dimensions', 'SELECT * FROM perfkit.top_statements_histogram(5, ''{{1},{2}}'')'),
  ('hist 65 bounds', 'SELECT * FROM perfkit.top_statements_histogram(5, ARRAY(SELECT g::float8 FROM generate_series(1, 65) g))'),
  ('hist text bounds', 'SELECT * FROM perfkit.top_statements_histogram(5, ''{a}'')'),
  ('hist raw null', 'SELECT * FROM perfkit._top_statements_histogram(5, NULL)');

CREATE TEMP TABLE bi_results (n int, label text, result text);

SELECT count(*) AS classes_before FROM pg_class \gset
SELECT count(*) AS requests_before FROM perfkit.index_build_requests \gset

-- (PostgreSQL's NOTICEs about truncated 1 MB identifiers would repeat them in full)
SET client_min_messages = warning;
INSERT INTO bi_results SELECT n, label, bi_try(sql) FROM bi_cases ORDER BY n;
RESET client_min_messages;
SELECT n, label, result FROM bi_results ORDER BY n;

-- The procedure, called the only way it can run.
CALL perfkit.wait_for_index_builds(NULL);
CALL perfkit.wait_for_index_builds('-1 second');
CALL perfkit.wait_for_index_builds('-178000000 years');
CALL perfkit.wait_for_index_builds('1 day -100 hours');
CALL perfkit.wait_for_index_builds('1; DROP TABLE bi_t');
-- (terse: 19 moved the text of this error's hint to a detail)
\set VERBOSITY terse
CALL perfkit.wait_for_index_builds(42);
\set VERBOSITY default
-- huge timeouts are no error (nothing is pending, so these return at once)
CALL perfkit.wait_for_index_builds('1000000 years');
CALL perfkit.wait_for_index_builds('178000000 years', NULL);
BEGIN;
CALL perfkit.wait_for_index_builds('1 second');
ROLLBACK;

-- Shown in full: where the parser stopped, and the hint.
SELECT perfkit.create_index_concurrently('CREATE INDEX bi_x ON bi_t (a); DROP TABLE bi_t; --');
SELECT perfkit.create_index_concurrently('bi_t', ARRAY['a'], predicate => 'a > 0); DROP TABLE bi_t; --');
SELECT perfkit.create_index_concurrently('bi_t', ARRAY['a'], name => 'x"; DROP TABLE bi_t; --');

-- Every call failed with a clear error: none internal, messages in lower case.
SELECT count(*) AS calls,
       count(*) FILTER (WHERE result = 'ok') AS succeeded,
       count(*) FILTER (WHERE result LIKE 'XX%') AS internal_errors
  FROM bi_results;
-- the calls that succeed do so by design: report(), redis_key() of one SELECT (it only hashes
-- the text) and _latency_bins() of no entry (NULL)
SELECT label FROM bi_results WHERE result = 'ok' ORDER BY n;
-- the only capitalized message is PostgreSQL's own (oidin)
SELECT label, result FROM bi_results WHERE result ~ '^.{5}: [A-Z]' ORDER BY n;

-- Nothing was created, dropped or requested, also after the builder ran what was recorded.
CALL perfkit.wait_for_index_builds('5 minutes');
SELECT (SELECT count(*) FROM pg_class) - :classes_before AS new_relations,
       (SELECT count(*) FROM perfkit.index_build_requests) - :requests_before AS new_requests;
SELECT to_regclass('bi_t') IS NOT NULL AS bi_t_exists, to_regclass('bi_evil') IS NULL AS no_bi_evil;

-- A hostile-looking text that is a valid predicate is accepted as what it is: one string
-- constant inside one CREATE INDEX, which the builder runs as such.
SELECT perfkit.create_index_concurrently('bi_t', ARRAY['a'], name => 'bi_t_a_quoted',
         predicate => $$b <> 'x''); DROP TABLE bi_t; --'$$) > 0 AS requested;
CALL perfkit.wait_for_index_builds('5 minutes');
SELECT index_name, status, definition FROM perfkit.index_builds WHERE index_name = 'bi_t_a_quoted';
SELECT pg_get_indexdef('bi_t_a_quoted'::regclass);
SELECT (SELECT count(*) FROM pg_class) - :classes_before AS new_relations;

DROP FUNCTION bi_try(text);
DROP TABLE bi_t, bi_parted, bi_temp, bi_inj, bi_cases, bi_results CASCADE;
