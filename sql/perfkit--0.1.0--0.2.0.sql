-- perfkit 0.1.0 -> 0.2.0: the index advisor.
-- Run by ALTER EXTENSION perfkit UPDATE, and by CREATE EXTENSION perfkit after perfkit--0.1.0.sql.
-- Same rules as the base script: every reference schema-qualified, SECURITY DEFINER functions pin
-- search_path.

\echo Use "ALTER EXTENSION perfkit UPDATE" to load this file. \quit

-- Index advisor
--
-- Sampled statements leave their predicates, join columns and sort keys in shared memory
-- (perfkit.advisor_sample_rate, perfkit.advisor_max_quals).  Reading perfkit.index_recommendations
-- derives candidate indexes from them and plans each affected statement again with the candidate
-- as a hypothetical index; nothing is created and nothing is executed.

-- Recommendations whose planner-estimated, call-weighted cost cut reaches min_improvement percent.
CREATE FUNCTION perfkit._index_recommendations(
    min_improvement double precision,
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
    OUT score double precision)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'perfkit_index_recommendations'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- Indexes the observed workload would gain from, best first (threshold perfkit.advisor_min_improvement).
CREATE VIEW perfkit.index_recommendations AS
SELECT *
FROM perfkit._index_recommendations(
        pg_catalog.current_setting('perfkit.advisor_min_improvement', true)::double precision)
ORDER BY score DESC, definition;
GRANT SELECT ON perfkit.index_recommendations TO PUBLIC;

-- The same analysis for one statement given as text (planned, never executed).
CREATE FUNCTION perfkit.recommend_indexes(
    query text,
    OUT relation regclass,
    OUT columns text[],
    OUT method text,
    OUT definition text,
    OUT cost_before double precision,
    OUT cost_after double precision,
    OUT improvement_pct double precision,
    OUT est_size_bytes bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'perfkit_recommend_indexes'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- Forget the statements the advisor collected.
CREATE FUNCTION perfkit.reset_index_advisor()
RETURNS void
AS 'MODULE_PATHNAME', 'perfkit_reset_index_advisor'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
REVOKE ALL ON FUNCTION perfkit.reset_index_advisor() FROM PUBLIC;

-- Request concurrent builds of the best recommendations (or, with dry_run, only list them).
-- Runs inside the caller's transaction, like perfkit.create_index_concurrently(); tables the
-- caller may not index are skipped with a notice.
CREATE FUNCTION perfkit.create_recommended_indexes(
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
        SELECT r.relation, r.definition, c.relowner
        FROM perfkit._index_recommendations(min_improvement) AS r
        JOIN pg_catalog.pg_class AS c ON c.oid OPERATOR(pg_catalog.=) r.relation
        ORDER BY r.score DESC, r.definition
    LOOP
        IF NOT pg_catalog.pg_has_role(rec.relowner, 'USAGE') THEN
            RAISE NOTICE 'skipping the recommended index on %', rec.relation
                USING DETAIL = 'Only the owner of the table can create an index on it.';
            CONTINUE;
        END IF;
        EXIT WHEN max_indexes <= 0;
        max_indexes := max_indexes - 1;
        build_id := CASE WHEN dry_run THEN NULL
                         ELSE perfkit.create_index_concurrently(rec.definition) END;
        definition := rec.definition;
        RETURN NEXT;
    END LOOP;
END
$create$;

-- perfkit.report() gains the index recommendations section, and without the library preloaded
-- fails with the preload error instead of "unrecognized configuration parameter".
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

    out := out || format(E'\n== Recent slow queries (threshold %s) ==\n', threshold);
    n := 0;
    FOR q IN SELECT * FROM perfkit.slow_queries LIMIT slow LOOP
        n := n + 1;
        out := out || format(E'%s  %s ms  %s@%s  pid %s%s\n    %s\n',
                             to_char(q.ts, 'YYYY-MM-DD HH24:MI:SS'),
                             round(q.duration::numeric, 1),
                             coalesce(q.rolname, '?'), coalesce(q.datname, '?'), q.pid,
                             CASE WHEN q.level > 0 THEN format(' (nested, level %s)', q.level) ELSE '' END,
                             coalesce(left(regexp_replace(q.query, '\s+', ' ', 'g'), 100), '<hidden>'));
        IF q.params IS NOT NULL THEN
            out := out || format(E'    params: %s\n', left(q.params, 100));
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

-- ==== hardening: bad input and privileges (begin) ====
-- perfkit.index_builds showed every role the definitions of other roles' requests, which can hold
-- constants of their predicates and expressions: the definition now shows, like the error text,
-- only to the requesting role, its members, pg_read_all_stats and superusers.  Same columns in the
-- same order, so CREATE OR REPLACE keeps the view, its grants and everything depending on it.
CREATE OR REPLACE VIEW perfkit.index_builds AS
SELECT r.id,
       r.relid::pg_catalog.regclass AS relation,
       r.index_name,
       CASE WHEN pg_catalog.pg_has_role(r.requested_by, 'USAGE')
              OR pg_catalog.pg_has_role('pg_read_all_stats', 'USAGE')
            THEN r.definition END AS definition,
       r.status,
       pg_catalog.pg_get_userbyid(r.requested_by) AS requested_by,
       r.requested_at,
       r.started_at,
       r.finished_at,
       r.attempts,
       CASE WHEN pg_catalog.pg_has_role(r.requested_by, 'USAGE')
              OR pg_catalog.pg_has_role('pg_read_all_stats', 'USAGE')
            THEN r.error END AS error,
       p.phase,
       p.blocks_done,
       p.blocks_total,
       r.kind,
       r.worker_pid AS pid,
       r.retry_at
  FROM perfkit.index_build_requests r
  LEFT JOIN perfkit._index_build_progress() p
         ON p.pid OPERATOR(pg_catalog.=) r.worker_pid
        AND r.status OPERATOR(pg_catalog.=) 'running';
-- ==== hardening: bad input and privileges (end) ====
