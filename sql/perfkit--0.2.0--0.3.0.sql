-- perfkit 0.2.0 -> 0.3.0.
-- Run by ALTER EXTENSION perfkit UPDATE, and by CREATE EXTENSION perfkit after perfkit--0.1.0.sql
-- and perfkit--0.1.0--0.2.0.sql.  Same rules as the base script: every reference schema-qualified,
-- functions pin search_path.  Each change of this version is one commented block; blocks do not
-- depend on each other.

\echo Use "ALTER EXTENSION perfkit UPDATE" to load this file. \quit

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
       perfkit._redis_status() AS r;
GRANT SELECT ON perfkit.metrics TO PUBLIC;
-- ==== monitoring: Prometheus (end) ====
