-- perfkit 0.1.0 -> 0.2.0: the index advisor.
-- Run by ALTER EXTENSION perfkit UPDATE, and by CREATE EXTENSION perfkit after perfkit--0.1.0.sql.
-- Same rules as the base script: every reference schema-qualified, SECURITY DEFINER functions pin
-- search_path.

\echo Use "ALTER EXTENSION perfkit UPDATE" to load this file. \quit

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
