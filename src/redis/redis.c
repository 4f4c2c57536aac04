/*-------------------------------------------------------------------------
 *
 * redis.c
 *	  Push the results of hot read-only statements to Redis, where any
 *	  application can GET them, and delete them when a table they read
 *	  changes: settings, set-up, and the executor hook glue that decides
 *	  what to capture.  Write tracking and the commit callback are in
 *	  redis_writes.c.
 *
 * Locking: the queue's spinlock is held only to reserve room; generations,
 * maxxid, hot counters, recent marks and the pusher's "connected" flag are
 * atomics; no LWLock is taken and no backend ever waits for the worker or
 * Redis.  While the pusher is not connected, hot executions are counted
 * but nothing is captured.  Backend state (open
 * captures, the transaction's writes) is process-local; captures live in
 * the query's memory and are forgotten by a memory context callback, so an
 * error that aborts the query cannot leave a dangling pointer.
 *
 * The design in full: docs/design.md, "Redis push".
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <time.h>

#include "access/parallel.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "tcop/pquery.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "core/compat.h"
#include "redis/redis_internal.h"

#define PK_REDIS_OPEN			4	/* captures open at once (portals) */
#define PK_REDIS_UNSAFE_CACHE	64	/* statements remembered as not pushable */

/* Settings */
char	   *pk_redis_url = NULL;
char	   *pk_redis_prefix = NULL;
int			pk_redis_ttl = 300;
int			pk_redis_hot_calls = 10;
int			pk_redis_max_bytes = 1024 * 1024;
int			pk_redis_queue_size = 8192;
int			pk_redis_timeout = 1000;
int			pk_redis_ping_interval = 1000;
int			pk_redis_min_push_interval = 1000;
char	   *pk_redis_exclude_tables = NULL;
char	   *pk_redis_exclude_queries = NULL;

/* A statement recently found not pushable (plan, relations, snapshot), per backend */
typedef struct PkUnsafeVerdict
{
	uint64		check;			/* identity (pk_redis_ident) */
	time_t		until;			/* trusted until then */
	PkRedisSkip reason;			/* what to count meanwhile */
} PkUnsafeVerdict;

static PkRedisCapture *pk_open[PK_REDIS_OPEN];
static int	pk_open_count = 0;	/* non-NULL slots of pk_open */
static PkUnsafeVerdict pk_unsafe_cache[PK_REDIS_UNSAFE_CACHE];

/* Check hook of perfkit.redis_url */
static bool
pk_redis_check_url(char **newval, void **extra, GucSource source)
{
	PkRedisUrl	url;
	const char *error;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	if (!pk_redis_parse_url(*newval, &url, &error))
	{
		GUC_check_errdetail("%s", error);
		GUC_check_errhint("Use redis://[[user]:password@]host[:port][/database], or '' to turn the push off.");
		return false;
	}
	return true;
}

/* Check hook of perfkit.redis_prefix */
static bool
pk_redis_check_prefix(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL || (*newval)[0] == '\0')
	{
		GUC_check_errdetail("The key prefix must not be empty.");
		return false;
	}
	return true;
}

/* Register the perfkit.redis_* settings */
static void
pk_redis_define_settings(void)
{
	DefineCustomStringVariable("perfkit.redis_url",
							   "Redis server to push hot query results to, as redis://[[user]:password@]host[:port][/db]; empty turns the push off.",
							   NULL, &pk_redis_url, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY, pk_redis_check_url, NULL, NULL);
	DefineCustomStringVariable("perfkit.redis_prefix",
							   "First part of every Redis key and of the invalidation channel.",
							   NULL, &pk_redis_prefix, "perfkit",
							   PGC_SIGHUP, 0, pk_redis_check_prefix, NULL, NULL);
	DefineCustomIntVariable("perfkit.redis_ttl",
							"Lifetime of a pushed result in Redis; bounds the staleness of writes perfkit cannot see.",
							NULL, &pk_redis_ttl, 300, 1, 30 * 24 * 3600,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("perfkit.redis_hot_calls",
							"Executions within a minute that make a statement hot, so that its results are pushed.",
							NULL, &pk_redis_hot_calls, 10, 1, INT_MAX,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("perfkit.redis_max_bytes",
							"Largest JSON value pushed; capturing a bigger result stops at this size.",
							NULL, &pk_redis_max_bytes, 1024 * 1024, 1024, 256 * 1024 * 1024,
							PGC_SUSET, GUC_UNIT_BYTE, NULL, NULL, NULL);
	DefineCustomIntVariable("perfkit.redis_queue_size",
							"Shared memory for results and invalidations waiting for the pusher; when full they are dropped.",
							NULL, &pk_redis_queue_size, 8192, 64, 1024 * 1024,
							PGC_POSTMASTER, GUC_UNIT_KB, NULL, NULL, NULL);
	DefineCustomIntVariable("perfkit.redis_min_push_interval",
							"Shortest time between two captures of the same key; a key whose tables are written more often stays out of Redis in between.",
							NULL, &pk_redis_min_push_interval, 1000, 0, 3600 * 1000,
							PGC_SUSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("perfkit.redis_timeout",
							"Connect and command timeout of the pusher's Redis connection.",
							NULL, &pk_redis_timeout, 1000, 10, 60000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("perfkit.redis_ping_interval",
							"Time without a reply from Redis after which the idle pusher checks its connection with PING.",
							NULL, &pk_redis_ping_interval, 1000, 100, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomStringVariable("perfkit.redis_exclude_tables",
							   "Tables (table or schema.table, comma-separated) whose readers are never pushed.",
							   NULL, &pk_redis_exclude_tables, "",
							   PGC_SUSET, GUC_LIST_INPUT,
							   pk_redis_check_exclude_tables, pk_redis_assign_exclude_tables, NULL);
	DefineCustomStringVariable("perfkit.redis_exclude_queries",
							   "Query ids (as in perfkit.statements, comma-separated) that are never pushed.",
							   NULL, &pk_redis_exclude_queries, "",
							   PGC_SUSET, GUC_LIST_INPUT,
							   pk_redis_check_exclude_queries, pk_redis_assign_exclude_queries, NULL);
}

/* Memory context callback: a capture's memory is going away */
static void
pk_capture_forget(void *arg)
{
	for (int i = 0; i < PK_REDIS_OPEN; i++)
		if (pk_open[i] == arg)
		{
			pk_open[i] = NULL;
			pk_open_count--;
		}
}

/* The open capture of an execution, or NULL */
static inline PkRedisCapture *
pk_capture_of(QueryDesc *queryDesc)
{
	if (pk_open_count == 0)
		return NULL;
	for (int i = 0; i < PK_REDIS_OPEN; i++)
		if (pk_open[i] != NULL && pk_open[i]->queryDesc == queryDesc)
			return pk_open[i];
	return NULL;
}

/* Remember for a second that a statement (by identity) cannot be pushed */
static void
pk_unsafe_remember(PkUnsafeVerdict *uc, uint64 check, PkRedisSkip reason)
{
	uc->check = check;
	uc->until = time(NULL) + 1;
	uc->reason = reason;
}

/* Count a hot execution that is not pushed, and say why at DEBUG1 */
static void
pk_skip(PkRedisSkip reason, uint64 queryid, const char *why)
{
	pk_redis_count_local(reason);
	elog(DEBUG1, "perfkit: result of query " INT64_FORMAT " not pushed to Redis: %s",
		 (int64) queryid, why);
}

/* The text and identity of a plain SELECT whose key can be computed; counted as unsafe otherwise */
static bool
pk_consider_identity(QueryDesc *queryDesc, const char **text, int *len,
					 Oid *relids, int *nrelids, uint64 *check)
{
	PlannedStmt *pstmt = queryDesc->plannedstmt;

	if (!pk_redis_statement_text(queryDesc->sourceText, pstmt->stmt_location, pstmt->stmt_len,
								 text, len) ||
		pstmt->rowMarks != NIL || pstmt->hasModifyingCTE || pstmt->utilityStmt != NULL ||
		pk_redis_collect_tables(pstmt, false, relids, nrelids) != PK_SKIP_NONE ||
		!pk_redis_ident(*text, *len, queryDesc->params, check))
	{
		pk_skip(PK_SKIP_UNSAFE, pstmt->queryId,
				"not a single plain SELECT with usable parameters");
		return false;
	}
	return true;
}

/* The flush epoch plus the generations of the relations: what recent marks are stamped with */
static uint32
pk_consider_gensum(const Oid *relids, int nrelids)
{
	uint32		gensum = pk_redis_flush_epoch();

	for (int i = 0; i < nrelids; i++)
		gensum += (uint32) pk_redis_read_gen(pk_redis_gen_slot(MyDatabaseId, relids[i]));
	return gensum;
}

/*
 * True when the statement may be pushed: cacheable plan, relations that are
 * neither excluded nor special (relids is refilled by the strict check), none
 * written by this transaction.  A refusal is counted, and remembered for a
 * second unless it depends on this transaction.
 */
static bool
pk_consider_safe(PlannedStmt *pstmt, PkUnsafeVerdict *uc, uint64 check,
				 Oid *relids, int *nrelids)
{
	PkRedisSkip verdict;

	if (pk_redis_wrote_any(relids, *nrelids))
	{
		pk_skip(PK_SKIP_UNSAFE, pstmt->queryId, "this transaction wrote a table it reads");
		return false;
	}
	verdict = pk_redis_plan_safe(pstmt);
	if (verdict != PK_SKIP_NONE)
	{
		pk_unsafe_remember(uc, check, verdict);
		pk_skip(verdict, pstmt->queryId,
				"not cacheable (locking, writing, or a function that is not immutable)");
		return false;
	}
	verdict = pk_redis_collect_tables(pstmt, true, relids, nrelids);
	if (verdict != PK_SKIP_NONE)
	{
		pk_unsafe_remember(uc, check, verdict);
		pk_skip(verdict, pstmt->queryId, verdict == PK_SKIP_EXCLUDED ? "excluded" :
				"reads a temporary, unlogged, foreign, catalog or row-secured relation");
		return false;
	}
	if (pk_redis_wrote_any(relids, *nrelids))
	{
		pk_skip(PK_SKIP_UNSAFE, pstmt->queryId, "this transaction wrote a table it reads");
		return false;
	}
	return true;
}

/* A free slot of pk_open, or -1 */
static int
pk_open_slot(void)
{
	for (int i = 0; i < PK_REDIS_OPEN; i++)
		if (pk_open[i] == NULL)
			return i;
	return -1;
}

/*
 * Open the capture of an execution in pk_open[slot], with the generations
 * of its relations read now (after its snapshot was taken), unless a
 * writer of one of them may be invisible to that snapshot (counted stale).
 */
static void
pk_capture_start(QueryDesc *queryDesc, int slot, const char *hex, const char *rolname,
				 uint64 check, uint32 gensum, const Oid *relids, int nrelids,
				 PkUnsafeVerdict *uc)
{
	PlannedStmt *pstmt = queryDesc->plannedstmt;
	PkRedisCapture *cap;
	MemoryContextCallback *cb;

	cap = pk_redis_capture_create(queryDesc);
	cap->queryid = pstmt->queryId;
	memcpy(cap->hash, hex, sizeof(cap->hash));
	cap->rolname = MemoryContextStrdup(cap->cxt, rolname);
	cap->recent_check = check;
	cap->gensum = gensum;
	cap->ntables = nrelids;
	/* generations after the snapshot, then the writers (see the header comment) */
	for (int i = 0; i < nrelids; i++)
	{
		cap->tables[i].relid = relids[i];
		cap->tables[i].slot = pk_redis_gen_slot(MyDatabaseId, relids[i]);
		cap->tables[i].gen = pk_redis_read_gen(cap->tables[i].slot);
	}
	if (!pk_redis_writers_visible(cap->tables, nrelids, queryDesc->snapshot))
	{
		/* this backend's snapshot (say, REPEATABLE READ) stays too old for a moment */
		MemoryContextDelete(cap->cxt);
		pk_unsafe_remember(uc, check, PK_SKIP_STALE);
		pk_skip(PK_SKIP_STALE, pstmt->queryId,
				"a table it reads was written by a transaction its snapshot may not see");
		return;
	}

	cb = MemoryContextAlloc(cap->cxt, sizeof(MemoryContextCallback));
	cb->func = pk_capture_forget;
	cb->arg = cap;
	MemoryContextRegisterResetCallback(cap->cxt, cb);
	pk_open[slot] = cap;
	pk_open_count++;
	/* other executions of the same key leave it to this one */
	pk_redis_mark_pending(check, gensum);
}

/*
 * A hot top-level SELECT: unless its result was pushed at the current
 * generations lately, check it and start capturing its result.
 */
static void
pk_redis_consider(QueryDesc *queryDesc)
{
	PlannedStmt *pstmt = queryDesc->plannedstmt;
	const char *text;
	int			len;
	Oid			relids[PK_REDIS_MAX_TABLES];
	int			nrelids;
	uint32		gensum;
	char		hex[PK_REDIS_SHA1_HEX + 1];
	uint64		check;
	PkUnsafeVerdict *uc;
	int			slot;
	char	   *rolname;

	if (RecoveryInProgress())
		return;					/* a standby never pushes */
	if (!pk_consider_identity(queryDesc, &text, &len, relids, &nrelids, &check))
		return;
	/* found unsafe a moment ago: skip the checks */
	uc = &pk_unsafe_cache[check % PK_REDIS_UNSAFE_CACHE];
	if (uc->check == check && uc->until > time(NULL))
	{
		pk_redis_count_local(uc->reason);
		return;
	}

	/* the steady state of a hot statement: already pushed at these generations */
	gensum = pk_consider_gensum(relids, nrelids);
	if (pk_redis_recently_pushed(check, gensum))
		return;
	if (pg_atomic_read_u32(&pk_redis->full) != 0)
	{
		/* no room: do not capture at all; try again in a moment */
		pk_redis_mark_pending(check, gensum);
		pk_skip(PK_SKIP_QUEUE_FULL, pstmt->queryId, "the queue is full");
		return;
	}

	if (!pk_consider_safe(pstmt, uc, check, relids, &nrelids))
		return;
	if (!pk_redis_key_hash(text, len, queryDesc->params, hex))
	{
		pk_skip(PK_SKIP_UNSAFE, pstmt->queryId, "a parameter cannot be part of a key");
		return;
	}
	slot = pk_open_slot();
	rolname = GetUserNameFromId(GetUserId(), true);
	if (slot < 0 || rolname == NULL || pk_redis_datname()[0] == '\0')
		return;
	pk_capture_start(queryDesc, slot, hex, rolname, check, gensum, relids, nrelids, uc);
}

/* ExecutorStart: note writes; count hot SELECTs and maybe start a capture */
void
pk_redis_executor_start(QueryDesc *queryDesc, int eflags)
{
	PlannedStmt *pstmt = queryDesc->plannedstmt;

	if (!pk_redis_tracking() || (eflags & EXEC_FLAG_EXPLAIN_ONLY) != 0)
		return;

	if (pstmt->commandType != CMD_SELECT || pstmt->hasModifyingCTE)
	{
		pk_redis_note_dml(pstmt);
		return;
	}

	/* only statements a client runs in a portal (not SPI, not a DECLAREd cursor) */
	if (pk_nesting_level != 0 || pstmt->queryId == UINT64CONST(0) ||
		ActivePortal == NULL || ActivePortal->strategy != PORTAL_ONE_SELECT ||
		(ActivePortal->visible && ActivePortal->cplan == NULL) ||
		CurrentResourceOwner == NULL ||
		pk_redis_url == NULL || pk_redis_url[0] == '\0' ||
		pg_atomic_read_u32(&pk_redis->enabled) == 0 ||
		pk_redis_query_excluded(pstmt->queryId) ||
		!pk_redis_is_hot(MyDatabaseId, pstmt->queryId))
		return;
	/* Redis is known to be unreachable: no capture, no encoding (hotness still counts) */
	if (pg_atomic_read_u32(&pk_redis->connected) == 0)
		return;
	pk_redis_consider(queryDesc);
}

/* ExecutorRun: the capture tap for an execution being captured, or NULL */
DestReceiver *
pk_redis_tap(QueryDesc *queryDesc)
{
	PkRedisCapture *cap;
	Portal		portal = ActivePortal;

	if (pk_redis == NULL || (cap = pk_capture_of(queryDesc)) == NULL)
		return NULL;
	/*
	 * Only a protocol-level portal (simple query: not visible; Bind: a cached
	 * plan; a DECLAREd cursor has neither) run once, from its start, to the
	 * client.
	 */
	if (!cap->valid || cap->runs > 0 || queryDesc->dest == NULL ||
		(queryDesc->dest->mydest != DestRemote &&
		 queryDesc->dest->mydest != DestRemoteExecute) ||
		portal == NULL || portal->queryDesc != queryDesc ||
		(portal->visible && portal->cplan == NULL) ||
		portal->strategy != PORTAL_ONE_SELECT || !portal->atStart)
	{
		elog(DEBUG1, "perfkit: result of query " INT64_FORMAT " not pushed to Redis: %s",
			 (int64) cap->queryid, "not a single complete run of a protocol-level portal");
		MemoryContextDelete(cap->cxt);
		return NULL;
	}
	cap->portal = portal;
	return pk_redis_capture_tap(cap, queryDesc);
}

/* ExecutorEnd: queue the result of a complete captured run */
void
pk_redis_executor_end(QueryDesc *queryDesc)
{
	PkRedisCapture *cap;

	if (pk_redis == NULL || (cap = pk_capture_of(queryDesc)) == NULL)
		return;
	/* the portal still exists: it is being dropped, and runs this */
	if (cap->valid && cap->runs == 1 && cap->portal != NULL && cap->portal->atEnd &&
		IsTransactionState() && PK_STATEMENT_ROWS(queryDesc->estate) == cap->nrows)
		(void) pk_redis_capture_finish(cap, pk_redis_datname());
	else if (!cap->too_big)
		elog(DEBUG1, "perfkit: result of query " INT64_FORMAT " not pushed to Redis: %s",
			 (int64) cap->queryid, "not fetched completely in one run");
	if (cap->too_big)
		pk_skip(PK_SKIP_TOO_BIG, cap->queryid, "over perfkit.redis_max_bytes");
	MemoryContextDelete(cap->cxt);
}

/* Module load (postmaster): the settings, the worker, and the write tracking's callbacks */
void
pk_redis_init(void)
{
	pk_redis_define_settings();
	pk_redis_register_worker();
	pk_redis_writes_init();
}
