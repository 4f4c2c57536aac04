-- perfkit 0.1.0: per-statement statistics with latency percentiles.
--
-- Every object lives in schema perfkit (perfkit.control) and every reference
-- is schema-qualified, so the script is safe whatever the caller's search_path.

\echo Use "CREATE EXTENSION perfkit" to load this file. \quit

-- Raw rows of the statistics table (shared memory); see the perfkit.statements view.
CREATE FUNCTION perfkit._statements(
    OUT userid oid,
    OUT dbid oid,
    OUT queryid bigint,
    OUT toplevel boolean,
    OUT query text,
    OUT calls bigint,
    OUT total_exec_time double precision,
    OUT min_exec_time double precision,
    OUT max_exec_time double precision,
    OUT mean_exec_time double precision,
    OUT stddev_exec_time double precision,
    OUT p50_exec_time double precision,
    OUT p95_exec_time double precision,
    OUT p99_exec_time double precision,
    OUT rows bigint,
    OUT shared_blks_hit bigint,
    OUT shared_blks_read bigint,
    OUT temp_blks_written bigint,
    OUT slow_calls bigint,
    OUT first_seen timestamptz,
    OUT last_seen timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'perfkit_statements'
LANGUAGE C STRICT VOLATILE PARALLEL SAFE;

-- One row per (role, database, fingerprint, top level) with timing and I/O figures.
CREATE VIEW perfkit.statements AS
SELECT s.userid,
       r.rolname,
       s.dbid,
       d.datname,
       s.queryid,
       s.toplevel,
       s.query,
       s.calls,
       s.total_exec_time,
       s.min_exec_time,
       s.max_exec_time,
       s.mean_exec_time,
       s.stddev_exec_time,
       s.p50_exec_time,
       s.p95_exec_time,
       s.p99_exec_time,
       s.rows,
       s.shared_blks_hit,
       s.shared_blks_read,
       s.temp_blks_written,
       s.slow_calls,
       s.first_seen,
       s.last_seen
  FROM perfkit._statements() s
  LEFT JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) s.userid
  LEFT JOIN pg_catalog.pg_database d ON d.oid OPERATOR(pg_catalog.=) s.dbid;

-- Capacity and housekeeping counters of the statistics table.
CREATE FUNCTION perfkit._info(
    OUT max_statements integer,
    OUT statements bigint,
    OUT evictions bigint,
    OUT dropped bigint,
    OUT stats_reset timestamptz)
RETURNS record
AS 'MODULE_PATHNAME', 'perfkit_info'
LANGUAGE C STRICT VOLATILE PARALLEL SAFE;

CREATE VIEW perfkit.info AS
SELECT * FROM perfkit._info();

-- Forget all statement statistics.
CREATE FUNCTION perfkit.reset()
RETURNS void
AS 'MODULE_PATHNAME', 'perfkit_reset'
LANGUAGE C STRICT VOLATILE PARALLEL SAFE;

REVOKE ALL ON FUNCTION perfkit.reset() FROM PUBLIC;

GRANT USAGE ON SCHEMA perfkit TO PUBLIC;
GRANT SELECT ON perfkit.statements, perfkit.info TO PUBLIC;

-- Executions per latency decade (<0.01 ms ... >= 10 s) of one entry; used by perfkit.report().
CREATE FUNCTION perfkit._latency_bins(userid oid, dbid oid, queryid bigint, toplevel boolean)
RETURNS bigint[]
AS 'MODULE_PATHNAME', 'perfkit_latency_bins'
LANGUAGE C STRICT VOLATILE PARALLEL SAFE;

-- Raw rows of the slow-query ring; see the perfkit.slow_queries view.
CREATE FUNCTION perfkit._slow_queries(
    OUT ts timestamptz,
    OUT pid integer,
    OUT userid oid,
    OUT dbid oid,
    OUT application_name text,
    OUT queryid bigint,
    OUT level integer,
    OUT duration double precision,
    OUT rows bigint,
    OUT query text,
    OUT params text,
    OUT plan text,
    OUT visible boolean)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'perfkit_slow_queries'
LANGUAGE C STRICT VOLATILE PARALLEL SAFE;

-- The latest executions at or above perfkit.slow_threshold, newest first.
CREATE VIEW perfkit.slow_queries AS
SELECT s.ts,
       s.pid,
       d.datname,
       r.rolname,
       s.application_name,
       s.queryid,
       s.duration,
       s.rows,
       s.query,
       s.params,
       s.plan,
       s.level
  FROM perfkit._slow_queries() s
  LEFT JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) s.userid
  LEFT JOIN pg_catalog.pg_database d ON d.oid OPERATOR(pg_catalog.=) s.dbid;

-- Forget every captured slow execution.
CREATE FUNCTION perfkit.reset_slow_queries()
RETURNS void
AS 'MODULE_PATHNAME', 'perfkit_reset_slow_queries'
LANGUAGE C STRICT VOLATILE PARALLEL SAFE;

REVOKE ALL ON FUNCTION perfkit.reset_slow_queries() FROM PUBLIC;
GRANT SELECT ON perfkit.slow_queries TO PUBLIC;

-- Raw rows of the N+1 pattern table; see the perfkit.n_plus_one view.
CREATE FUNCTION perfkit._n_plus_one(
    OUT userid oid,
    OUT dbid oid,
    OUT application_name text,
    OUT parent_queryid bigint,
    OUT queryid bigint,
    OUT detections bigint,
    OUT last_repeats integer,
    OUT max_repeats integer,
    OUT total_repeats bigint,
    OUT total_exec_time double precision,
    OUT confirmed boolean,
    OUT sample_params text,
    OUT first_seen timestamptz,
    OUT last_seen timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'perfkit_n_plus_one'
LANGUAGE C STRICT VOLATILE PARALLEL SAFE;

-- One row per N+1 pattern: the loop, its parent query and the fix.
CREATE VIEW perfkit.n_plus_one AS
WITH texts AS MATERIALIZED (SELECT userid, dbid, queryid, toplevel, query FROM perfkit._statements())
SELECT d.datname,
       r.rolname,
       n.application_name,
       n.parent_queryid,
       pq.query AS parent_query,
       n.queryid,
       q.query,
       n.detections,
       n.last_repeats,
       n.max_repeats,
       n.total_repeats,
       n.total_exec_time,
       n.confirmed,
       n.sample_params,
       CASE
         WHEN NOT n.confirmed THEN
           pg_catalog.format('The same statement ran %s times in a row with the same parameters: '
                             'cache its result or hoist it out of the loop.', n.max_repeats)
         WHEN q.query OPERATOR(pg_catalog.~) '=\s*\$[0-9]+' THEN
           pg_catalog.format('Load all rows at once: %s with an array of the parent''s keys, '
                             'or JOIN it onto the parent query.',
                             pg_catalog.regexp_replace(q.query, '=\s*(\$[0-9]+)', '= ANY(\1)'))
         ELSE
           'Load all rows at once with one IN (...) / = ANY($1) query over the parent''s keys, '
           'or JOIN this statement onto the parent query.'
       END AS suggestion,
       n.first_seen,
       n.last_seen
  FROM perfkit._n_plus_one() n
  LEFT JOIN LATERAL (SELECT t.query FROM texts t
                      WHERE t.userid OPERATOR(pg_catalog.=) n.userid AND t.dbid OPERATOR(pg_catalog.=) n.dbid
                        AND t.queryid OPERATOR(pg_catalog.=) n.queryid
                      ORDER BY t.toplevel DESC LIMIT 1) q ON true
  LEFT JOIN LATERAL (SELECT t.query FROM texts t
                      WHERE t.userid OPERATOR(pg_catalog.=) n.userid AND t.dbid OPERATOR(pg_catalog.=) n.dbid
                        AND t.queryid OPERATOR(pg_catalog.=) n.parent_queryid
                      ORDER BY t.toplevel DESC LIMIT 1) pq ON true
  LEFT JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) n.userid
  LEFT JOIN pg_catalog.pg_database d ON d.oid OPERATOR(pg_catalog.=) n.dbid;

-- Forget every detected pattern.
CREATE FUNCTION perfkit.reset_n_plus_one()
RETURNS void
AS 'MODULE_PATHNAME', 'perfkit_reset_n_plus_one'
LANGUAGE C STRICT VOLATILE PARALLEL SAFE;

REVOKE ALL ON FUNCTION perfkit.reset_n_plus_one() FROM PUBLIC;
GRANT SELECT ON perfkit.n_plus_one TO PUBLIC;

-- Tells the N+1 detector that the loops of the running client statement are perfkit's own.
CREATE FUNCTION perfkit._nplusone_quiet()
RETURNS void
AS 'MODULE_PATHNAME', 'perfkit_nplusone_quiet'
LANGUAGE C STRICT VOLATILE PARALLEL SAFE;

-- One page a person can read in a terminal: top statements with their latency
-- distribution, recent slow queries with the first lines of their plans, and
-- the sections later releases fill.
CREATE FUNCTION perfkit.report(top integer DEFAULT 10, slow integer DEFAULT 5)
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
    threshold text := current_setting('perfkit.slow_threshold');
BEGIN
    IF top IS NULL OR top < 0 OR slow IS NULL OR slow < 0 THEN
        RAISE EXCEPTION 'report sizes must be non-negative integers'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Call perfkit.report() or perfkit.report(top => 10, slow => 5).';
    END IF;
    -- the loops below are perfkit's own, not the user's N+1 loops
    PERFORM perfkit._nplusone_quiet();
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
    out := out || E'\n== Index recommendations ==\n    (the index advisor is not in this release)\n';
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

-- Concurrent index builds
--
-- A migration calls perfkit.create_index_concurrently() inside its transaction; the request is a
-- row of perfkit.index_build_requests, visible to perfkit's background builder when the migration
-- commits and gone if it rolls back.  The builder runs CREATE INDEX CONCURRENTLY as a top-level
-- statement, as the requesting role.  Roles use the functions and the perfkit.index_builds view;
-- the table itself is private to the extension's owner.

-- One row per requested build (or drop); statuses: pending, running, succeeded, failed, skipped,
-- cancelled.
CREATE TABLE perfkit.index_build_requests (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind          text NOT NULL,
    relid         oid NOT NULL,
    indexrelid    oid,
    index_name    name NOT NULL,
    definition    text NOT NULL,
    search_path   text NOT NULL,
    status        text NOT NULL DEFAULT 'pending',
    requested_by  oid NOT NULL,
    requested_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    started_at    timestamptz,
    finished_at   timestamptz,
    attempts      integer NOT NULL DEFAULT 0,
    retry_at      timestamptz,
    worker_pid    integer,
    error         text,
    CONSTRAINT index_build_requests_kind_check
        CHECK (kind OPERATOR(pg_catalog.=) ANY (ARRAY['create', 'drop']::text[])),
    CONSTRAINT index_build_requests_status_check
        CHECK (status OPERATOR(pg_catalog.=) ANY (ARRAY['pending', 'running', 'succeeded', 'failed',
                                                        'skipped', 'cancelled']::text[]))
);
REVOKE ALL ON TABLE perfkit.index_build_requests FROM PUBLIC;

-- Request CREATE INDEX CONCURRENTLY from a single CREATE [UNIQUE] INDEX statement; returns the id.
CREATE FUNCTION perfkit.create_index_concurrently(definition text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'perfkit_create_index_concurrently'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- The same without writing DDL: identifiers are quoted, the predicate must be one expression.
CREATE FUNCTION perfkit.create_index_concurrently(
    tbl regclass,
    columns text[],
    name text DEFAULT NULL,
    method text DEFAULT 'btree',
    predicate text DEFAULT NULL,
    include text[] DEFAULT NULL,
    is_unique boolean DEFAULT false)
RETURNS bigint
AS 'MODULE_PATHNAME', 'perfkit_create_index_concurrently_columns'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- Request DROP INDEX CONCURRENTLY; returns the id.
CREATE FUNCTION perfkit.drop_index_concurrently(idx regclass)
RETURNS bigint
AS 'MODULE_PATHNAME', 'perfkit_drop_index_concurrently'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- Cancel a pending build or interrupt a running one; false when it had already ended.
CREATE FUNCTION perfkit.cancel_index_build(id bigint)
RETURNS boolean
AS 'MODULE_PATHNAME', 'perfkit_cancel_index_build'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- CALL it outside any transaction block: waits, holding no snapshot, until this database has no
-- pending or running build (finished = true) or the timeout passes (finished = false).
CREATE PROCEDURE perfkit.wait_for_index_builds(
    timeout interval DEFAULT '1 hour',
    INOUT finished boolean DEFAULT NULL)
AS 'MODULE_PATHNAME', 'perfkit_wait_for_index_builds'
LANGUAGE C;

-- Live progress of running builds (pg_stat_progress_create_index shows it only to the builder's
-- role and pg_read_all_stats); limited to perfkit's builders in this database.
CREATE FUNCTION perfkit._index_build_progress(
    OUT pid integer,
    OUT phase text,
    OUT blocks_done bigint,
    OUT blocks_total bigint)
RETURNS SETOF record
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $progress$
SELECT p.pid, p.phase, p.blocks_done, p.blocks_total
  FROM pg_catalog.pg_stat_progress_create_index p
 WHERE p.datid OPERATOR(pg_catalog.=) (SELECT d.oid FROM pg_catalog.pg_database d
                                       WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
   AND p.pid OPERATOR(pg_catalog.=) ANY (SELECT r.worker_pid FROM perfkit.index_build_requests r
                                         WHERE r.status OPERATOR(pg_catalog.=) 'running')
$progress$;

-- Requested builds of this database with their status and, while running, their progress.  The
-- error text shows only to the requesting role, its members, pg_read_all_stats and superusers.
CREATE VIEW perfkit.index_builds AS
SELECT r.id,
       r.relid::pg_catalog.regclass AS relation,
       r.index_name,
       r.definition,
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

GRANT SELECT ON perfkit.index_builds TO PUBLIC;

-- Redis result push
--
-- With perfkit.redis_url set, the results of hot read-only statements are pushed to Redis by a
-- background worker and deleted there when a table they read changes; see doc/redis.md.

-- The Redis key under which the result of a statement text (with its bind parameters, as text;
-- NULL elements for SQL NULLs) is pushed, for the current database and role.
CREATE FUNCTION perfkit.redis_key(query text, params text[] DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'perfkit_redis_key'
LANGUAGE C STABLE PARALLEL SAFE;

-- Raw row of the push's counters; see the perfkit.redis_status view.
CREATE FUNCTION perfkit._redis_status(
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
    OUT queue_bytes bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'perfkit_redis_status'
LANGUAGE C STRICT VOLATILE PARALLEL SAFE;

-- State of the Redis push: connection, counters since server start, bytes waiting in the queue.
CREATE VIEW perfkit.redis_status AS
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
       skipped_too_big
  FROM perfkit._redis_status();

GRANT SELECT ON perfkit.redis_status TO PUBLIC;
