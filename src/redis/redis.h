/*-------------------------------------------------------------------------
 *
 * redis.h
 *	  Optional push of hot query results to Redis, invalidated at commit
 *	  when their tables change (perfkit.redis_url; off when empty).
 *
 * Backends never talk to Redis: the statement hooks capture the result of
 * a hot, cacheable SELECT into a bounded shared queue (drop, never block),
 * and commits of writes bump per-table generations and queue
 * invalidations; one background worker, the pusher, drains the queue with
 * hiredis.  A result whose tables changed after it was computed is never
 * pushed (the generation guard).
 *
 * Files: redis.c (settings, set-up, hook glue, what to capture),
 * redis_writes.c (write tracking, invalidation at commit), redis_safe.c
 * (what may be pushed), redis_queue.c (shared memory: queue, generations,
 * hot counters), redis_json.c (capture and JSON encoding), redis_funcs.c
 * (SQL functions), redis_conn.c and redis_worker.c (the pusher).
 *
 * Locking: see redis.c's header; the statement side takes no LWLock.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PERFKIT_REDIS_H
#define PERFKIT_REDIS_H

#include "core/core.h"

#include "executor/execdesc.h"
#include "nodes/plannodes.h"
#include "tcop/dest.h"

/* Set-up, called from src/perfkit.c */
extern void pk_redis_init(void);
extern Size pk_redis_shmem_size(void);
extern void pk_redis_shmem_init(void);

/* Statement side, called from src/hooks.c */
extern void pk_redis_executor_start(QueryDesc *queryDesc, int eflags);
extern DestReceiver *pk_redis_tap(QueryDesc *queryDesc);
extern void pk_redis_executor_end(QueryDesc *queryDesc);
extern void pk_redis_utility(PlannedStmt *pstmt);

#endif							/* PERFKIT_REDIS_H */
