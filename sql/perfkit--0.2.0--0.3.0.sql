-- perfkit 0.2.0 -> 0.3.0.
-- Run by ALTER EXTENSION perfkit UPDATE, and by CREATE EXTENSION perfkit after perfkit--0.1.0.sql
-- and perfkit--0.1.0--0.2.0.sql.  Same rules as the base script: every reference schema-qualified,
-- functions pin search_path.  Each change of this version is one commented block; blocks do not
-- depend on each other.

\echo Use "ALTER EXTENSION perfkit UPDATE" to load this file. \quit

-- ==== Redis push: connection times (begin) ====
-- The Redis push's status says when the pusher last connected and when its last error happened.

-- Raw row of the push's counters and times; see the perfkit.redis_status view.  A new function
-- (the C function behind perfkit._redis_status() keeps its 11 columns for databases not updated
-- yet), so that the view below can be replaced in place.
CREATE FUNCTION perfkit._redis_status_0_3(
    OUT enabled boolean,
    OUT connected boolean,
    OUT pushed bigint,
    OUT invalidated bigint,
    OUT skipped_unsafe bigint,
    OUT skipped_too_big bigint,
    OUT dropped_queue_full bigint,
    OUT dropped_stale bigint,
    OUT errors bigint,
    OUT last_error text,
    OUT queue_bytes bigint,
    OUT last_connected_at timestamp with time zone,
    OUT last_error_at timestamp with time zone)
RETURNS record
AS 'MODULE_PATHNAME', 'perfkit_redis_status_0_3'
LANGUAGE C STRICT VOLATILE PARALLEL SAFE;

-- State of the Redis push: connection, counters since server start, bytes waiting in the queue,
-- when the pusher last connected and when its last error happened.  The columns of 0.2.0 keep
-- their names and order (CREATE OR REPLACE keeps the view's grants and what depends on it); the
-- new ones come last.
CREATE OR REPLACE VIEW perfkit.redis_status AS
SELECT connected,
       pushed,
       invalidated,
       skipped_unsafe,
       dropped_queue_full,
       dropped_stale,
       errors,
       last_error,
       queue_bytes,
       enabled,
       skipped_too_big,
       last_connected_at,
       last_error_at
  FROM perfkit._redis_status_0_3();

DROP FUNCTION perfkit._redis_status();
-- ==== Redis push: connection times (end) ====

-- ==== monitoring: Prometheus (begin) ====
-- Cheap sources for frequent scrapes (contrib/prometheus/perfkit-queries.yaml for
-- postgres_exporter): the top statements without their texts, chosen in one pass over the table
-- with a bounded heap, and one row of server-wide figures that reads no text and sorts nothing.
-- Like the other views they are readable by every role; none of them shows a query text.

-- Raw rows of perfkit.top_statements(): the n entries with the largest total execution time.
CREATE FUNCTION perfkit._top_statements(
    n integer,
    OUT userid oid,
    OUT dbid oid,
    OUT queryid bigint,
    OUT toplevel boolean,
    OUT calls bigint,
    OUT total_exec_time double precision,
    OUT mean_exec_time double precision,
    OUT p50_exec_time double precision,
    OUT p95_exec_time double precision,
    OUT p99_exec_time double precision,
    OUT rows bigint,
    OUT slow_calls bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'perfkit_top_statements'
LANGUAGE C VOLATILE PARALLEL SAFE;

-- The n statements with the largest total execution time, largest first, without their texts
-- (join perfkit.statements on userid, dbid, queryid, toplevel for those).  Cheap enough for
-- every scrape: no text is copied and the table is not sorted.
CREATE FUNCTION perfkit.top_statements(n integer DEFAULT 20)
RETURNS TABLE (
    userid oid,
    rolname name,
    dbid oid,
    datname name,
    queryid bigint,
    toplevel boolean,
    calls bigint,
    total_exec_time double precision,
    mean_exec_time double precision,
    p50_exec_time double precision,
    p95_exec_time double precision,
    p99_exec_time double precision,
    rows bigint,
    slow_calls bigint)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $top$
SELECT s.userid, r.rolname, s.dbid, d.datname, s.queryid, s.toplevel, s.calls, s.total_exec_time,
       s.mean_exec_time, s.p50_exec_time, s.p95_exec_time, s.p99_exec_time, s.rows, s.slow_calls
  FROM perfkit._top_statements(n) AS s
  LEFT JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) s.userid
  LEFT JOIN pg_catalog.pg_database d ON d.oid OPERATOR(pg_catalog.=) s.dbid
$top$;

-- Raw rows of perfkit.top_statements_histogram().
CREATE FUNCTION perfkit._top_statements_histogram(
    n integer,
    bounds double precision[],
    OUT userid oid,
    OUT dbid oid,
    OUT queryid bigint,
    OUT toplevel boolean,
    OUT le_counts bigint[],
    OUT count bigint,
    OUT total_exec_time double precision)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'perfkit_top_statements_histogram'
LANGUAGE C VOLATILE PARALLEL SAFE;

-- The same statements as perfkit.top_statements(n), each with its latency histogram: executions
-- at or below each bound (ms, ascending; cumulative, as Prometheus histograms have them, exact to
-- 6.25%), all executions in the histogram, and the total time.
CREATE FUNCTION perfkit.top_statements_histogram(
    n integer DEFAULT 20,
    bounds double precision[] DEFAULT '{0.1,0.25,0.5,1,2.5,5,10,25,50,100,250,500,1000,2500,5000,10000}')
RETURNS TABLE (
    userid oid,
    rolname name,
    dbid oid,
    datname name,
    queryid bigint,
    toplevel boolean,
    bounds double precision[],
    le_counts bigint[],
    count bigint,
    total_exec_time double precision)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $histogram$
SELECT s.userid, r.rolname, s.dbid, d.datname, s.queryid, s.toplevel, bounds, s.le_counts, s.count,
       s.total_exec_time
  FROM perfkit._top_statements_histogram(n, bounds) AS s
  LEFT JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) s.userid
  LEFT JOIN pg_catalog.pg_database d ON d.oid OPERATOR(pg_catalog.=) s.dbid
$histogram$;

-- Slow executions captured since the last reset of the slow-query ring (it keeps the latest
-- perfkit.slow_max of them).
CREATE FUNCTION perfkit._slow_captured()
RETURNS bigint
AS 'MODULE_PATHNAME', 'perfkit_slow_captured'
LANGUAGE C STRICT VOLATILE PARALLEL SAFE;

-- One row of server-wide figures for monitoring: the statistics table, slow-query capture, N+1
-- patterns and the Redis push.  (Index builds and recommendations are per database: see
-- perfkit.index_builds and perfkit.index_recommendations.)
CREATE VIEW perfkit.metrics AS
SELECT i.statements,
       i.max_statements,
       i.evictions,
       i.dropped,
       i.stats_reset,
       perfkit._slow_captured() AS slow_captured,
       n.nplusone_patterns,
       n.nplusone_repeats,
       n.nplusone_exec_time,
       n.nplusone_last_detected,
       n.repeat_patterns,
       n.repeat_repeats,
       r.enabled AS redis_enabled,
       r.connected AS redis_connected,
       r.pushed AS redis_pushed,
       r.invalidated AS redis_invalidated,
       r.errors AS redis_errors,
       r.dropped_queue_full AS redis_dropped_queue_full,
       r.dropped_stale AS redis_dropped_stale,
       r.queue_bytes AS redis_queue_bytes
  FROM perfkit._info() AS i,
       (SELECT pg_catalog.count(*) FILTER (WHERE p.confirmed) AS nplusone_patterns,
               COALESCE(pg_catalog.sum(p.total_repeats) FILTER (WHERE p.confirmed), 0)::bigint
                 AS nplusone_repeats,
               COALESCE(pg_catalog.sum(p.total_exec_time) FILTER (WHERE p.confirmed), 0)
                 AS nplusone_exec_time,
               pg_catalog.max(p.first_seen) FILTER (WHERE p.confirmed) AS nplusone_last_detected,
               pg_catalog.count(*) FILTER (WHERE NOT p.confirmed) AS repeat_patterns,
               COALESCE(pg_catalog.sum(p.total_repeats) FILTER (WHERE NOT p.confirmed), 0)::bigint
                 AS repeat_repeats
          FROM perfkit._n_plus_one() AS p) AS n,
       perfkit._redis_status_0_3() AS r;
GRANT SELECT ON perfkit.metrics TO PUBLIC;
-- ==== monitoring: Prometheus (end) ====

-- ==== report: slow queries grouped by statement (begin) ====
-- perfkit.report()'s slow-query section lists each statement once (per database and role): how
-- many captures the ring holds, the worst and the latest duration, the latest text, and the
-- parameters and first plan lines of the worst execution, newest statement first; `slow` counts
-- statements, no longer captures.  Everything else is unchanged.
CREATE OR REPLACE FUNCTION perfkit.report(top integer DEFAULT 10, slow integer DEFAULT 5)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $report$
DECLARE
    out text;
    s record;
    q record;
    info record;
    n integer := 0;
    shades constant text := ' .:-=+*#@';
    bins bigint[];
    peak bigint;
    sketch text;
    threshold text;
BEGIN
    IF top IS NULL OR top < 0 OR slow IS NULL OR slow < 0 THEN
        RAISE EXCEPTION 'report sizes must be non-negative integers'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Call perfkit.report() or perfkit.report(top => 10, slow => 5).';
    END IF;
    -- the loops below are perfkit's own, not the user's N+1 loops (and this checks the preload)
    PERFORM perfkit._nplusone_quiet();
    threshold := current_setting('perfkit.slow_threshold');
    SELECT * INTO info FROM perfkit.info;

    out := format(E'perfkit report  %s\nstatistics since %s; %s statements tracked (max %s), %s evicted\n',
                  to_char(now(), 'YYYY-MM-DD HH24:MI:SS TZ'),
                  to_char(info.stats_reset, 'YYYY-MM-DD HH24:MI:SS TZ'),
                  info.statements, info.max_statements, info.evictions);

    out := out || format(E'\n== Top %s statements by total time ==\n', top);
    out := out || format(E'%3s %11s %9s %9s %9s %9s %9s  %-10s  %s\n',
                         '#', 'total ms', 'calls', 'mean ms', 'p50 ms', 'p95 ms', 'p99 ms',
                         'latency', 'query');
    out := out || format(E'%3s %11s %9s %9s %9s %9s %9s  %-10s  %s\n',
                         '', '', '', '', '', '', '', '10us..10s', '');
    FOR s IN
        SELECT * FROM perfkit.statements ORDER BY total_exec_time DESC, queryid LIMIT top
    LOOP
        n := n + 1;
        bins := perfkit._latency_bins(s.userid, s.dbid, s.queryid, s.toplevel);
        sketch := '';
        IF bins IS NOT NULL THEN
            SELECT max(b) INTO peak FROM unnest(bins) b;
            FOR i IN 1 .. array_length(bins, 1) LOOP
                sketch := sketch || substr(shades,
                    CASE WHEN bins[i] = 0 THEN 1
                         ELSE 2 + ((bins[i] * 7) / greatest(peak, 1))::int END, 1);
            END LOOP;
        END IF;
        out := out || format(E'%3s %11s %9s %9s %9s %9s %9s  [%-8s]  %s\n',
                             n, round(s.total_exec_time::numeric, 1), s.calls,
                             round(s.mean_exec_time::numeric, 3), round(s.p50_exec_time::numeric, 3),
                             round(s.p95_exec_time::numeric, 3), round(s.p99_exec_time::numeric, 3),
                             sketch,
                             coalesce(left(regexp_replace(s.query, '\s+', ' ', 'g'), 60), '<hidden>'));
    END LOOP;
    IF n = 0 THEN
        out := out || E'    (no statements recorded yet)\n';
    END IF;

    -- one entry per statement (query id, database, role): how often it was captured, the worst and
    -- the latest duration, the latest text, and the parameters and plan of the worst execution
    out := out || format(E'\n== Recent slow queries by statement (threshold %s) ==\n', threshold);
    n := 0;
    FOR q IN
        SELECT sq.queryid, sq.datname, sq.rolname,
               count(*) AS captures,
               max(sq.duration) AS worst,
               max(sq.ts) AS latest_ts,
               (array_agg(sq.duration ORDER BY sq.ts DESC))[1] AS latest,
               (array_agg(sq.query ORDER BY sq.ts DESC))[1] AS query,
               (array_agg(sq.level ORDER BY sq.ts DESC))[1] AS level,
               (array_agg(sq.ts ORDER BY sq.duration DESC, sq.ts DESC))[1] AS worst_ts,
               (array_agg(sq.params ORDER BY sq.duration DESC, sq.ts DESC))[1] AS params,
               (array_agg(sq.plan ORDER BY sq.duration DESC, sq.ts DESC))[1] AS plan
          FROM perfkit.slow_queries AS sq
         GROUP BY sq.queryid, sq.datname, sq.rolname
         ORDER BY max(sq.ts) DESC, sq.queryid
         LIMIT slow
    LOOP
        n := n + 1;
        out := out || format(E'%s x  worst %s ms (%s)  latest %s ms (%s)  %s@%s%s\n    %s\n',
                             q.captures,
                             round(q.worst::numeric, 1), to_char(q.worst_ts, 'YYYY-MM-DD HH24:MI:SS'),
                             round(q.latest::numeric, 1), to_char(q.latest_ts, 'YYYY-MM-DD HH24:MI:SS'),
                             coalesce(q.rolname, '?'), coalesce(q.datname, '?'),
                             CASE WHEN q.level > 0 THEN format(' (nested, level %s)', q.level) ELSE '' END,
                             coalesce(left(regexp_replace(q.query, '\s+', ' ', 'g'), 100), '<hidden>'));
        IF q.params IS NOT NULL THEN
            out := out || format(E'    params of the worst: %s\n', left(q.params, 100));
        END IF;
        IF q.plan IS NOT NULL THEN
            out := out || (SELECT string_agg('    | ' || l, E'\n' ORDER BY o) || E'\n'
                             FROM (SELECT l, o FROM regexp_split_to_table(q.plan, E'\n')
                                   WITH ORDINALITY AS t(l, o) ORDER BY o LIMIT 3) p);
        END IF;
    END LOOP;
    IF n = 0 THEN
        out := out || E'    (none captured)\n';
    END IF;

    out := out || E'\n== N+1 patterns ==\n';
    n := 0;
    FOR q IN SELECT * FROM perfkit.n_plus_one ORDER BY total_exec_time DESC, queryid LIMIT top LOOP
        n := n + 1;
        out := out || format(E'%s  %s x %s (%s loops, longest %s, %s ms)%s\n    after: %s\n    loop:  %s\n    fix:   %s\n',
                             CASE WHEN q.confirmed THEN 'N+1' ELSE 'repeat' END,
                             q.last_repeats,
                             coalesce(q.rolname, '?') || '@' || coalesce(q.datname, '?'),
                             q.detections, q.max_repeats, round(q.total_exec_time::numeric, 1),
                             CASE WHEN q.application_name <> '' THEN ' app ' || q.application_name ELSE '' END,
                             coalesce(left(regexp_replace(q.parent_query, '\s+', ' ', 'g'), 100), '-'),
                             coalesce(left(regexp_replace(q.query, '\s+', ' ', 'g'), 100), '<hidden>'),
                             q.suggestion);
    END LOOP;
    IF n = 0 THEN
        out := out || E'    (none detected)\n';
    END IF;
    out := out || format(E'\n== Index recommendations (planner-estimated cost cut >= %s%%) ==\n',
                         current_setting('perfkit.advisor_min_improvement'));
    n := 0;
    FOR q IN SELECT * FROM perfkit.index_recommendations LIMIT top LOOP
        n := n + 1;
        out := out || format(E'%s\n    -%s%% cost for %s statement(s), %s calls; about %s; writes %s%% of rows\n',
                             q.definition, round(q.improvement_pct::numeric),
                             cardinality(q.queryids), q.calls, pg_size_pretty(q.est_size_bytes),
                             round((q.write_ratio * 100)::numeric));
    END LOOP;
    IF n = 0 THEN
        out := out || E'    (none: no sampled statement would get that much cheaper with a new index)\n';
    END IF;
    -- the advisor's builds: the measured time of their statements before and since the request
    n := 0;
    FOR q IN SELECT * FROM perfkit.index_recommendation_results ORDER BY build_id DESC LIMIT top LOOP
        n := n + 1;
        IF n = 1 THEN
            out := out || E'\n== Recommended indexes built: measured ==\n';
        END IF;
        out := out || format(E'%s (%s)\n    %s\n', q.definition, q.status,
                             CASE WHEN q.calls_since > 0 AND q.speedup IS NOT NULL
                                  THEN format('%s statement(s) %sx as fast over %s calls since the request (%s ms per call before, %s ms since)',
                                              cardinality(q.queryids), round(q.speedup::numeric, 1),
                                              q.calls_since, round(q.mean_ms_before::numeric, 3),
                                              round(q.mean_ms_since::numeric, 3))
                                  ELSE 'no calls of its statements since the request' END);
    END LOOP;
    out := out || E'\n== Redis result cache ==\n';
    SELECT * INTO q FROM perfkit.redis_status;
    IF NOT q.enabled THEN
        out := out || E'    off (set perfkit.redis_url to push hot query results)\n';
    ELSE
        out := out || format(E'    %s; %s pushed, %s invalidated, %s bytes queued\n'
                             '    not pushed: %s unsafe, %s too big, %s queue full, %s stale; %s errors\n',
                             CASE WHEN q.connected THEN 'connected' ELSE 'NOT connected' END,
                             q.pushed, q.invalidated, q.queue_bytes,
                             q.skipped_unsafe, q.skipped_too_big, q.dropped_queue_full,
                             q.dropped_stale, q.errors);
        IF q.last_error IS NOT NULL THEN
            out := out || format(E'    last error: %s\n', q.last_error);
        END IF;
    END IF;
    RETURN out;
END
$report$;
-- ==== report: slow queries grouped by statement (end) ====

-- ==== index advisor v2: the workload's cost, greedy choice with interactions (begin) ====
-- _index_recommendations() gains a max_indexes argument (the budget of the greedy search) and six
-- trailing columns.  The new function is created next to the old one (an overload), the view is
-- replaced on top of it with the same twelve leading columns (CREATE OR REPLACE VIEW keeps its
-- grants and the objects that depend on it), then the old function, on which nothing depends
-- any more, is dropped.  create_recommended_indexes() keeps its signature.

-- The chosen configuration, one row per index, in the order the search chose them.
CREATE FUNCTION perfkit._index_recommendations(
    min_improvement double precision,
    max_indexes integer DEFAULT NULL,
    OUT relation regclass,
    OUT columns text[],
    OUT method text,
    OUT definition text,
    OUT queryids bigint[],
    OUT calls bigint,
    OUT cost_before double precision,
    OUT cost_after double precision,
    OUT improvement_pct double precision,
    OUT est_size_bytes bigint,
    OUT write_ratio double precision,
    OUT score double precision,
    OUT step integer,
    OUT statements jsonb,
    OUT workload_pct double precision,
    OUT maintenance_cost double precision,
    OUT maintenance_ms_per_hour double precision,
    OUT saving_ms_per_hour double precision)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'perfkit_index_recommendations'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- Indexes the observed workload would gain from, in the order chosen (threshold
-- perfkit.advisor_min_improvement).
CREATE OR REPLACE VIEW perfkit.index_recommendations AS
SELECT *
FROM perfkit._index_recommendations(
        pg_catalog.current_setting('perfkit.advisor_min_improvement', true)::double precision,
        NULL::integer)
ORDER BY step, definition;

DROP FUNCTION perfkit._index_recommendations(double precision);

-- Request concurrent builds of the best recommendations (or, with dry_run, only list them).
-- Runs inside the caller's transaction, like perfkit.create_index_concurrently(); tables the
-- caller may not index are skipped with a notice.  max_indexes is the budget of the search: a pair
-- chosen together is built together or not at all.
CREATE OR REPLACE FUNCTION perfkit.create_recommended_indexes(
    min_improvement double precision DEFAULT 50,
    max_indexes integer DEFAULT 10,
    dry_run boolean DEFAULT false)
RETURNS TABLE (build_id bigint, definition text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $create$
DECLARE
    rec record;
BEGIN
    IF min_improvement IS NULL OR min_improvement = 'NaN' OR min_improvement < 0
       OR min_improvement > 100 THEN
        RAISE EXCEPTION 'min_improvement must be between 0 and 100'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'It is the smallest planner-estimated cost cut, in percent.';
    END IF;
    IF max_indexes IS NULL OR max_indexes < 0 THEN
        RAISE EXCEPTION 'max_indexes must be a non-negative integer'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF dry_run IS NULL THEN
        RAISE EXCEPTION 'dry_run must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- the loop below is perfkit's own, not an N+1 loop of the user's
    PERFORM perfkit._nplusone_quiet();
    FOR rec IN
        SELECT r.relation, r.definition, r.queryids, c.relowner
        FROM perfkit._index_recommendations(min_improvement, max_indexes) AS r
        JOIN pg_catalog.pg_class AS c ON c.oid OPERATOR(pg_catalog.=) r.relation
        ORDER BY r.step, r.definition
    LOOP
        IF NOT pg_catalog.pg_has_role(rec.relowner, 'USAGE') THEN
            RAISE NOTICE 'skipping the recommended index on %', rec.relation
                USING DETAIL = 'Only the owner of the table can create an index on it.';
            CONTINUE;
        END IF;
        build_id := CASE WHEN dry_run THEN NULL
                         ELSE perfkit.create_index_concurrently(rec.definition) END;
        IF NOT dry_run THEN
            PERFORM perfkit._note_index_advice(build_id, rec.queryids);
        END IF;
        definition := rec.definition;
        RETURN NEXT;
    END LOOP;
END
$create$;

-- What each build requested by create_recommended_indexes() was chosen for: its statements with
-- their calls and total time at the request, as [{"queryid", "calls", "total"}].  Rolled back with
-- the request; private to the extension's owner like perfkit.index_build_requests.
CREATE TABLE perfkit.index_advice (
    build_id bigint PRIMARY KEY,
    baseline jsonb NOT NULL);
REVOKE ALL ON TABLE perfkit.index_advice FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('perfkit.index_advice', '');

-- Record the baseline of a build the caller's session just requested.
CREATE FUNCTION perfkit._note_index_advice(build_id bigint, queryids bigint[])
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $note$
    INSERT INTO perfkit.index_advice (build_id, baseline)
    SELECT r.id,
           coalesce((SELECT jsonb_agg(jsonb_build_object('queryid', s.queryid, 'calls', s.calls,
                                                         'total', s.total) ORDER BY s.queryid)
                       FROM (SELECT st.queryid, sum(st.calls) AS calls,
                                    sum(st.total_exec_time) AS total
                               FROM perfkit.statements st
                              WHERE st.queryid = ANY (queryids)
                                AND st.dbid = (SELECT d.oid FROM pg_database d
                                                WHERE d.datname = current_database())
                              GROUP BY st.queryid) s), '[]'::jsonb)
      FROM perfkit.index_build_requests r
     WHERE r.id = build_id AND r.status = 'pending'
       AND pg_has_role(session_user, r.requested_by, 'USAGE')
    ON CONFLICT DO NOTHING;
$note$;
REVOKE ALL ON FUNCTION perfkit._note_index_advice(bigint, bigint[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION perfkit._note_index_advice(bigint, bigint[]) TO PUBLIC;

-- The advisor's builds with the measured time of their statements: mean per call up to the request
-- and since; speedup = the time the calls since would have taken at the earlier mean / the time
-- they took.  A reset of perfkit.statements after the request makes the comparison meaningless.
CREATE VIEW perfkit.index_recommendation_results AS
SELECT a.build_id,
       b.definition,
       b.status,
       b.requested_at,
       pg_catalog.array_agg(x.queryid ORDER BY x.queryid) AS queryids,
       pg_catalog.sum(x.calls_before)::bigint AS calls_before,
       pg_catalog.sum(x.total_before) OPERATOR(pg_catalog./)
         NULLIF(pg_catalog.sum(x.calls_before), 0) AS mean_ms_before,
       pg_catalog.sum(x.calls_since)::bigint AS calls_since,
       pg_catalog.sum(x.total_since) OPERATOR(pg_catalog./)
         NULLIF(pg_catalog.sum(x.calls_since), 0) AS mean_ms_since,
       pg_catalog.sum(x.expected_since) OPERATOR(pg_catalog./)
         NULLIF(pg_catalog.sum(x.total_since), 0) AS speedup
  FROM perfkit.index_advice a
  JOIN perfkit.index_builds b ON b.id OPERATOR(pg_catalog.=) a.build_id
  LEFT JOIN LATERAL (
       SELECT (e OPERATOR(pg_catalog.->>) 'queryid')::bigint AS queryid,
              (e OPERATOR(pg_catalog.->>) 'calls')::double precision AS calls_before,
              (e OPERATOR(pg_catalog.->>) 'total')::double precision AS total_before,
              GREATEST(COALESCE(n.calls, 0) OPERATOR(pg_catalog.-)
                       (e OPERATOR(pg_catalog.->>) 'calls')::double precision, 0) AS calls_since,
              GREATEST(COALESCE(n.total, 0) OPERATOR(pg_catalog.-)
                       (e OPERATOR(pg_catalog.->>) 'total')::double precision, 0) AS total_since,
              CASE WHEN (e OPERATOR(pg_catalog.->>) 'calls')::double precision OPERATOR(pg_catalog.>) 0
                   THEN GREATEST(COALESCE(n.calls, 0) OPERATOR(pg_catalog.-)
                                 (e OPERATOR(pg_catalog.->>) 'calls')::double precision, 0)
                        OPERATOR(pg_catalog.*) (e OPERATOR(pg_catalog.->>) 'total')::double precision
                        OPERATOR(pg_catalog./) (e OPERATOR(pg_catalog.->>) 'calls')::double precision
              END AS expected_since
         FROM pg_catalog.jsonb_array_elements(a.baseline) AS e
         LEFT JOIN LATERAL (
              SELECT pg_catalog.sum(s.calls)::double precision AS calls,
                     pg_catalog.sum(s.total_exec_time) AS total
                FROM perfkit.statements s
               WHERE s.queryid OPERATOR(pg_catalog.=) (e OPERATOR(pg_catalog.->>) 'queryid')::bigint
                 AND s.dbid OPERATOR(pg_catalog.=)
                     (SELECT d.oid FROM pg_catalog.pg_database d
                       WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())) AS n
           ON true) AS x ON true
 GROUP BY a.build_id, b.definition, b.status, b.requested_at;
GRANT SELECT ON perfkit.index_recommendation_results TO PUBLIC;
-- ==== index advisor v2 (end) ====
