-- perfkit 0.2.0 -> 0.3.0: the Redis push's status says when the pusher last connected and when
-- its last error happened.
-- Run by ALTER EXTENSION perfkit UPDATE, and by CREATE EXTENSION perfkit after perfkit--0.1.0.sql
-- and perfkit--0.1.0--0.2.0.sql.  Same rules as the base script: every reference
-- schema-qualified, SECURITY DEFINER functions pin search_path.

\echo Use "ALTER EXTENSION perfkit UPDATE" to load this file. \quit

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
