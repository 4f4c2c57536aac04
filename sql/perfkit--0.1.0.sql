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
