/*-------------------------------------------------------------------------
 *
 * redis_internal.h
 *	  Redis push, for the files of src/redis only: shared state, queue item
 *	  layout, the capture of one execution, and the interfaces between the
 *	  files (listed in redis.h).  The design and the locking rules are in
 *	  redis.c's header.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PERFKIT_REDIS_INTERNAL_H
#define PERFKIT_REDIS_INTERNAL_H

#include "redis/redis.h"

#include "access/transam.h"
#include "executor/execdesc.h"
#include "lib/stringinfo.h"
#include "nodes/plannodes.h"
#include "port/atomics.h"
#include "storage/latch.h"
#include "storage/spin.h"
#include "tcop/dest.h"
#include "utils/guc.h"
#include "utils/portal.h"
#include "utils/timestamp.h"

#define PK_REDIS_GEN_SLOTS		8192	/* write generations (power of two) */
#define PK_REDIS_HOT_SLOTS		4096	/* hot-statement counters (power of two) */
#define PK_REDIS_RECENT_SLOTS	16384	/* recently pushed keys (power of two) */
#define PK_REDIS_RECENT_WAYS	4	/* ... in groups of this many (set-associative) */
#define PK_REDIS_MAX_TABLES		32	/* relations one pushed result may depend on */
#define PK_REDIS_ERROR_LEN		256 /* bytes kept of the last error */
#define PK_REDIS_URL_PART		256 /* bytes of one part of a parsed URL */
#define PK_REDIS_NAME_LEN		(2 * NAMEDATALEN + 8)	/* "schema"."table" */
#define PK_REDIS_PARAM_MAX		8192	/* bigger bind parameters: not pushed */
#define PK_REDIS_SHA1_HEX		40	/* hex digits of a SHA-1 */

/* Kinds of queue items; the state word of a complete item is kind | READY */
#define PK_ITEM_PAD				1	/* filler up to the end of the ring */
#define PK_ITEM_PUSH			2	/* SET a result, link it to its tables */
#define PK_ITEM_INVALIDATE		3	/* delete the results of tables, PUBLISH */
#define PK_ITEM_READY			0x10000

/* Why a hot execution is not pushed (for the counters and for debugging) */
typedef enum PkRedisSkip
{
	PK_SKIP_NONE = 0,
	PK_SKIP_UNSAFE,				/* not cacheable: counted in skipped_unsafe */
	PK_SKIP_EXCLUDED,			/* excluded by the user: not counted */
	PK_SKIP_STALE,				/* a concurrent write: counted in dropped_stale */
	PK_SKIP_QUEUE_FULL,			/* no room in the queue: dropped_queue_full */
	PK_SKIP_TOO_BIG				/* over perfkit.redis_max_bytes: skipped_too_big */
} PkRedisSkip;

/*
 * Header of one queue item.  Items start at 8-byte aligned offsets of the
 * ring and their length is a multiple of 8, so a header never wraps.  The
 * producer writes it with state 0 while holding the queue mutex, copies the
 * payload without the lock, and then sets the state after a write barrier;
 * the worker stops at the first item that is not ready.
 */
typedef struct PkRedisItemHeader
{
	uint32		len;			/* bytes of the whole item, header included */
	volatile uint32 state;		/* 0 while being written, then kind | READY */
} PkRedisItemHeader;

/* A relation a result depends on (PUSH) or that was written (INVALIDATE) */
typedef struct PkRedisTableRef
{
	Oid			relid;			/* the relation */
	uint32		slot;			/* its index in pk_redis->gens */
	uint64		gen;			/* PUSH: generation read before execution;
								 * INVALIDATE: generation after the bump */
} PkRedisTableRef;

/*
 * Payload of a PUSH item; followed by ntables PkRedisTableRef, then datname,
 * rolname and the JSON value (lengths below, no terminating NULs), padded.
 */
typedef struct PkRedisPushItem
{
	Oid			dbid;			/* database of the statement */
	int32		ntables;		/* PkRedisTableRef entries that follow */
	uint32		pad;
	uint32		gensum;			/* sum of the generations, for the recent mark */
	uint64		recent_check;	/* identity of the key (pk_redis_ident) */
	int32		datname_len;	/* bytes of the database name */
	int32		rolname_len;	/* bytes of the role name */
	int64		value_len;		/* bytes of the JSON value */
	char		hash[PK_REDIS_SHA1_HEX];	/* hex SHA-1 of text and parameters */
} PkRedisPushItem;

/*
 * Payload of an INVALIDATE item; followed by ntables PkRedisTableRef, then
 * ntables int32 name lengths (padded to 8 bytes), datname, then the
 * qualified table names, padded.
 */
typedef struct PkRedisInvalItem
{
	Oid			dbid;			/* database of the writer */
	int32		ntables;		/* written relations */
	int32		datname_len;	/* bytes of the database name */
	int32		pad;
} PkRedisInvalItem;

/* A recently pushed key: suppresses pushing the same result again and again */
typedef struct PkRedisRecent
{
	pg_atomic_uint64 check;		/* identity of the key, 0 = free */
	pg_atomic_uint64 stamp;		/* gensum << 32 | valid until (unix seconds) */
	pg_atomic_uint64 captured_at;	/* last capture started (ms since 2000) */
} PkRedisRecent;

/* Per-fingerprint execution counter of the current and the previous minute */
typedef struct PkRedisHot
{
	pg_atomic_uint64 tag;		/* hash of (database, query id), 0 = free */
	pg_atomic_uint64 cur;		/* minute << 32 | executions in that minute */
	pg_atomic_uint64 prev;		/* minute << 32 | executions in that minute */
} PkRedisHot;

/* Shared state: counters, generations, queue; see redis.c for locking */
typedef struct PkRedisShared
{
	slock_t		mutex;			/* protects head, tail, worker_latch, last_error,
								 * last_error_at, last_connected_at */
	uint64		head;			/* bytes ever reserved in the ring */
	uint64		tail;			/* bytes ever released by the worker */
	uint64		size;			/* bytes of the ring (multiple of 8) */
	uint64		push_limit;		/* pushes may fill the ring up to this many bytes */
	Latch	   *worker_latch;	/* set to wake the pusher, NULL when none runs */
	pg_atomic_uint32 enabled;	/* the pusher runs with a URL: queue items */
	pg_atomic_uint32 connected; /* the pusher is connected to Redis; while it
								 * is not, backends capture nothing */
	pg_atomic_uint32 flush_all; /* an invalidation was lost: delete every key */
	pg_atomic_uint32 flush_epoch;	/* bumped by each flush (voids recent marks) */
	pg_atomic_uint32 full;		/* a push did not fit: skip capturing for now */
	pg_atomic_uint64 pushed;	/* results written to Redis */
	pg_atomic_uint64 invalidated;	/* keys deleted because a table changed */
	pg_atomic_uint64 skipped_unsafe;	/* hot executions not cacheable */
	pg_atomic_uint64 skipped_too_big;	/* hot results over perfkit.redis_max_bytes */
	pg_atomic_uint64 dropped_queue_full;	/* items not queued: queue full */
	pg_atomic_uint64 dropped_stale; /* results dropped: a table changed meanwhile */
	pg_atomic_uint64 errors;	/* failed Redis commands and connections */
	char		last_error[PK_REDIS_ERROR_LEN]; /* latest error, "" if none */
	TimestampTz last_error_at;	/* when it happened, 0 if never */
	TimestampTz last_connected_at;	/* latest successful connection, 0 if none */
	pg_atomic_uint64 gens[PK_REDIS_GEN_SLOTS];	/* write generation per slot */
	pg_atomic_uint64 maxxid[PK_REDIS_GEN_SLOTS];	/* newest writer per slot
													 * (FullTransactionId) */
	PkRedisRecent recent[PK_REDIS_RECENT_SLOTS];	/* recently pushed keys */
	PkRedisHot	hot[PK_REDIS_HOT_SLOTS];	/* hot-statement counters */
	uint64		ring[FLEXIBLE_ARRAY_MEMBER];	/* the queue's bytes */
} PkRedisShared;

/* Parts of a perfkit.redis_url */
typedef struct PkRedisUrl
{
	char		host[PK_REDIS_URL_PART];
	int			port;
	int			db;
	char		user[PK_REDIS_URL_PART];
	char		password[PK_REDIS_URL_PART];
} PkRedisUrl;

/* How one result column is written as JSON */
typedef struct PkRedisColumn
{
	Oid			type;			/* base type of the column */
	int			kind;			/* PK_JSON_* in redis_json.c */
	bool		varlena;		/* typlen == -1: size checked before output */
	FmgrInfo	out;			/* output function */
} PkRedisColumn;

/*
 * The capture of one top-level execution whose result may be pushed.  It
 * lives in a child context of the execution's es_query_cxt, so an error
 * that aborts the query frees it; a reset callback of that context removes
 * it from the backend's list of open captures (redis.c).
 */
typedef struct PkRedisCapture
{
	QueryDesc  *queryDesc;		/* owner; compared by address, never followed */
	MemoryContext cxt;			/* holds this struct and its buffers */
	bool		valid;			/* still pushable */
	bool		too_big;		/* gave up: over perfkit.redis_max_bytes */
	int			runs;			/* ExecutorRun calls seen */
	Portal		portal;			/* the portal running it, checked at the end */
	uint64		queryid;		/* fingerprint */
	char		hash[PK_REDIS_SHA1_HEX + 1];	/* hex SHA-1 of text and parameters */
	char	   *rolname;		/* role of the key */
	int			ntables;		/* relations the result depends on */
	PkRedisTableRef tables[PK_REDIS_MAX_TABLES];
	uint64		recent_check;	/* identity of the key (pk_redis_ident) */
	uint32		gensum;			/* sum of the generations read */
	int64		max_bytes;		/* cap of the value */
	int			natts;			/* result columns */
	PkRedisColumn *cols;		/* their encoders */
	StringInfoData value;		/* the JSON value so far: columns, then rows */
	uint64		nrows;			/* rows captured */
} PkRedisCapture;

extern PkRedisShared *pk_redis;

/* Settings, defined in redis.c */
extern char *pk_redis_url;
extern char *pk_redis_prefix;
extern int	pk_redis_ttl;
extern int	pk_redis_hot_calls;
extern int	pk_redis_max_bytes;
extern int	pk_redis_queue_size;
extern int	pk_redis_timeout;
extern int	pk_redis_ping_interval;
extern int	pk_redis_min_push_interval;
extern char *pk_redis_exclude_tables;
extern char *pk_redis_exclude_queries;

/* redis_writes.c */
/* True when writes must be tracked: the push is on here or in the worker */
static inline bool
pk_redis_tracking(void)
{
	return pk_redis != NULL && !IsParallelWorker() &&
		((pk_redis_url != NULL && pk_redis_url[0] != '\0') ||
		 pg_atomic_read_u32(&pk_redis->enabled) != 0);
}
extern const char *pk_redis_datname(void);
extern bool pk_redis_wrote_any(const Oid *relids, int n);
extern void pk_redis_note_dml(PlannedStmt *pstmt);
extern void pk_redis_writes_init(void);

/* redis_safe.c */
extern bool pk_redis_statement_text(const char *source, int location, int len,
									const char **start, int *length);
extern bool pk_redis_query_excluded(uint64 queryid);
extern PkRedisSkip pk_redis_plan_safe(PlannedStmt *pstmt);
extern PkRedisSkip pk_redis_collect_tables(PlannedStmt *pstmt, bool check,
										   Oid *relids, int *nrelids);
extern bool pk_redis_check_exclude_queries(char **newval, void **extra, GucSource source);
extern void pk_redis_assign_exclude_queries(const char *newval, void *extra);
extern bool pk_redis_check_exclude_tables(char **newval, void **extra, GucSource source);
extern void pk_redis_assign_exclude_tables(const char *newval, void *extra);

/* redis_queue.c: statement side */
extern bool pk_redis_is_hot(Oid dbid, uint64 queryid);
extern uint32 pk_redis_gen_slot(Oid dbid, Oid relid);
extern uint64 pk_redis_read_gen(uint32 slot);
extern bool pk_redis_writers_visible(const PkRedisTableRef *tables, int ntables,
									 Snapshot snapshot);
extern uint32 pk_redis_flush_epoch(void);
extern bool pk_redis_recently_pushed(uint64 check, uint32 gensum);
extern void pk_redis_mark_pending(uint64 check, uint32 gensum);
extern void pk_redis_bump(const Oid *relids, int nrelids, FullTransactionId fxid,
						  PkRedisTableRef *out);
extern void pk_redis_bump_all(FullTransactionId fxid);
extern bool pk_redis_enqueue_push(const PkRedisCapture *cap, const char *datname,
								  const char *value, int64 value_len);
extern void pk_redis_enqueue_invalidate(Oid dbid, const char *datname,
										const PkRedisTableRef *tables,
										const char *const *names, int ntables);
extern void pk_redis_request_flush(void);
extern void pk_redis_count_local(PkRedisSkip reason);
extern void pk_redis_flush_local_counts(void);

/* redis_queue.c: worker side */
extern void pk_redis_queue_bounds(uint64 *tail, uint64 *head);
extern PkRedisItemHeader *pk_redis_queue_peek(uint64 pos, uint64 head, uint64 *next);
extern void pk_redis_queue_release(uint64 upto);
extern void pk_redis_mark_pushed(uint64 check, uint32 gensum, uint32 seconds);
extern void pk_redis_set_error(const char *fmt,...) pg_attribute_printf(1, 2);
extern void pk_redis_set_connected(bool connected);

/* redis_json.c */
extern PkRedisCapture *pk_redis_capture_create(QueryDesc *queryDesc);
extern DestReceiver *pk_redis_capture_tap(PkRedisCapture *cap, QueryDesc *queryDesc);
extern bool pk_redis_capture_finish(PkRedisCapture *cap, const char *datname);
extern bool pk_redis_ident(const char *text, int len, ParamListInfo params, uint64 *ident);
extern bool pk_redis_key_hash(const char *text, int len, ParamListInfo params,
							  char *hex);
extern bool pk_redis_key_hash_texts(const char *text, int len, char **params, int nparams,
									char *hex);

/* redis_funcs.c: nothing exported but the SQL-callable functions */

/* redis_conn.c: the pusher's connection (worker only) */
extern struct redisContext *pk_redis_conn;
extern TimestampTz pk_redis_next_connect;
extern TimestampTz pk_redis_last_reply;
extern bool pk_redis_parse_url(const char *url, PkRedisUrl *out, const char **error);
extern void pk_redis_connect(const PkRedisUrl *url);
extern void pk_redis_disconnect(bool failed);
extern void pk_redis_reset_backoff(void);
extern bool pk_redis_ping(void);
extern const char *pk_redis_conn_error(struct redisContext *c);
extern void pk_redis_worker_error(const char *what, const char *detail);
extern bool pk_redis_flush(void);

/* redis_worker.c */
extern void pk_redis_register_worker(void);
extern PGDLLEXPORT void pk_redis_worker_main(Datum main_arg);

#endif							/* PERFKIT_REDIS_INTERNAL_H */
