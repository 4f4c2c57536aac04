/*-------------------------------------------------------------------------
 *
 * redis_worker.c
 *	  The pusher: a background worker that drains the shared queue into
 *	  Redis with hiredis.  It is the only process that talks to Redis.
 *
 * One worker is registered at server start (BgWorkerStart_RecoveryFinished,
 * so a standby never runs it) and lives even while perfkit.redis_url is
 * empty, so that setting it takes effect at a reload.  It needs no
 * database connection.  Each pass of its loop (memory context reset every
 * pass):
 *	- SIGHUP: reload the configuration; a new URL drops the connection;
 *	- connect when needed (redis_conn.c: timeouts, AUTH, SELECT, PING,
 *	  reconnect with backoff);
 *	- flush when needed: at start, after a URL change, and when a backend
 *	  could not queue an invalidation (flush_all), delete every key under
 *	  the prefix (SCAN + DEL, interruptible, redis_conn.c);
 *	- take up to PK_BATCH complete items from the queue, send their
 *	  commands in one pipeline, then read the replies in order, checking
 *	  for SIGTERM between them; the room of an item is given back once all
 *	  its replies arrived.  After a connection error, unfinished items are
 *	  sent again on the next connection (all commands are idempotent); an
 *	  item that failed three connections in a row is dropped.
 *	- when idle and perfkit.redis_ping_interval passed without a reply, or
 *	  when the idle socket turns readable (Redis closed it), PING: a closed,
 *	  refusing or stalled Redis clears "connected" within about that
 *	  interval (plus the timeout for a stall), counted with last_error;
 *	- WaitLatchOrSocket(PG_WAIT_EXTENSION) until a backend queues something,
 *	  the socket turns readable, the next PING or the next connection
 *	  attempt is due.
 *
 * A PUSH is dropped as stale when a generation it was read at has changed
 * (redis.c); otherwise a Lua script SETs the value with the TTL,
 * unless a fence of one of its tables is newer than what it was read at,
 * and adds the key to one set per table.  An INVALIDATE raises the
 * table's fence, deletes the keys in the table's set and PUBLISHes the
 * table on <prefix>:invalidate.  Keys: <prefix>:<db>:<role>:<sha1> for
 * values, <prefix>#tables:<dboid>:<relid> and <prefix>#gen:<dboid>:<relid>
 * for the bookkeeping (TTL'd too).
 *
 * hiredis allocates with malloc and knows nothing of ereport: every reply
 * is freed right after it is read, the context on every disconnect and at
 * exit, and nothing between a hiredis call and its free can throw.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include <hiredis/hiredis.h>

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "core/compat.h"
#include "redis/redis_internal.h"

#define PK_BATCH			128 /* items per pipeline */
#define PK_BATCH_BYTES		(4 * 1024 * 1024)	/* bytes of values per pipeline */
#define PK_MAX_ATTEMPTS		3	/* connections an item may break */
#define PK_IDLE_TIMEOUT		10000	/* ms between passes when idle */

/* SET a result unless a table's fence is newer than the result; link it to its tables */
static const char pk_push_script[] =
"local n = tonumber(ARGV[3])\n"
"for i = 1, n do\n"
"  local f = redis.call('GET', KEYS[1 + n + i])\n"
"  if f and tonumber(f) > tonumber(ARGV[3 + i]) then return 0 end\n"
"end\n"
"redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])\n"
"for i = 1, n do\n"
"  redis.call('SADD', KEYS[1 + i], KEYS[1])\n"
"  redis.call('EXPIRE', KEYS[1 + i], ARGV[2])\n"
"end\n"
"return 1\n";

/* Raise a table's fence, delete the results linked to it, announce it */
static const char pk_invalidate_script[] =
"local f = redis.call('GET', KEYS[2])\n"
"if (not f) or tonumber(f) < tonumber(ARGV[1]) then\n"
"  redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])\n"
"end\n"
"local keys = redis.call('SMEMBERS', KEYS[1])\n"
"local n = 0\n"
"for i = 1, #keys, 1000 do\n"
"  n = n + redis.call('DEL', unpack(keys, i, math.min(i + 999, #keys)))\n"
"end\n"
"redis.call('DEL', KEYS[1])\n"
"redis.call('PUBLISH', ARGV[3], ARGV[4])\n"
"return n\n";

/* Worker state */
static char *pk_current_url = NULL; /* URL the state below belongs to */
static PkRedisUrl pk_url;			/* parsed perfkit.redis_url */
static bool pk_url_valid = false;
static bool pk_need_flush = true;	/* delete every key before pushing */
static uint64 pk_failing_pos = PG_UINT64_MAX;	/* queue position that broke connections */
static int	pk_failing_count = 0;
static bool pk_check_now = false;	/* the idle socket turned readable: PING now */

/* Register the pusher (from _PG_init) */
void
pk_redis_register_worker(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "perfkit");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "pk_redis_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "perfkit redis pusher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "perfkit redis pusher");
	RegisterBackgroundWorker(&worker);
}

/* An argument vector being built */
typedef struct PkArgs
{
	int			n;
	const char **argv;
	size_t	   *lens;
} PkArgs;

/* Append one argument */
static void
pk_arg(PkArgs *a, const char *s, size_t len)
{
	a->argv[a->n] = s;
	a->lens[a->n] = len;
	a->n++;
}

/* Append a NUL-terminated argument */
static void
pk_arg_str(PkArgs *a, const char *s)
{
	pk_arg(a, s, strlen(s));
}

/* New argument vector for up to n arguments */
static void
pk_args_init(PkArgs *a, int n)
{
	a->n = 0;
	a->argv = palloc(sizeof(char *) * n);
	a->lens = palloc(sizeof(size_t) * n);
}

/*
 * Append the commands of a PUSH item; returns the number of replies to read
 * (0 when dropped as stale).
 */
static int
pk_send_push(PkRedisPushItem *item, char *ttl)
{
	PkRedisTableRef *refs = (PkRedisTableRef *) (item + 1);
	char	   *datname = (char *) (refs + item->ntables);
	char	   *rolname = datname + item->datname_len;
	char	   *value = rolname + item->rolname_len;
	int			n = item->ntables;
	PkArgs		a;

	for (int i = 0; i < n; i++)
		if (pk_redis_read_gen(refs[i].slot) != refs[i].gen)
		{
			pg_atomic_fetch_add_u64(&pk_redis->dropped_stale, 1);
			return 0;
		}

	pk_args_init(&a, 7 + 3 * n);
	pk_arg_str(&a, "EVAL");
	pk_arg_str(&a, pk_push_script);
	pk_arg_str(&a, psprintf("%d", 1 + 2 * n));
	pk_arg_str(&a, psprintf("%s:%.*s:%.*s:%.*s", pk_redis_prefix,
							item->datname_len, datname, item->rolname_len, rolname,
							PK_REDIS_SHA1_HEX, item->hash));
	for (int i = 0; i < n; i++)
		pk_arg_str(&a, psprintf("%s#tables:%u:%u", pk_redis_prefix, item->dbid, refs[i].relid));
	for (int i = 0; i < n; i++)
		pk_arg_str(&a, psprintf("%s#gen:%u:%u", pk_redis_prefix, item->dbid, refs[i].relid));
	pk_arg(&a, value, item->value_len);
	pk_arg_str(&a, ttl);
	pk_arg_str(&a, psprintf("%d", n));
	for (int i = 0; i < n; i++)
		pk_arg_str(&a, psprintf(UINT64_FORMAT, refs[i].gen));
	if (redisAppendCommandArgv(pk_redis_conn, a.n, a.argv, a.lens) != REDIS_OK)
		return -1;
	return 1;
}

/* True when a later INVALIDATE item of the batch also invalidates (dbid, relid) */
static bool
pk_invalidated_later(PkRedisItemHeader **hdrs, int from, int n, Oid dbid, Oid relid)
{
	for (int i = from; i < n; i++)
	{
		PkRedisInvalItem *item = (PkRedisInvalItem *) (hdrs[i] + 1);
		PkRedisTableRef *refs = (PkRedisTableRef *) (item + 1);

		if ((hdrs[i]->state & 0xFFFF) != PK_ITEM_INVALIDATE || item->dbid != dbid)
			continue;
		for (int j = 0; j < item->ntables; j++)
			if (refs[j].relid == relid)
				return true;
	}
	return false;
}

/*
 * Append the commands of an INVALIDATE item, one script per table; returns
 * replies to read.  A table invalidated again later in the same batch is
 * left to that later item (with its newer generation): moving an
 * invalidation later never lets a stale result survive, and a burst of
 * writes to one table costs one script per batch.
 */
static int
pk_send_invalidate(PkRedisInvalItem *item, char *ttl, PkRedisItemHeader **hdrs, int later, int n)
{
	PkRedisTableRef *refs = (PkRedisTableRef *) (item + 1);
	int32	   *lens = (int32 *) (refs + item->ntables);
	char	   *datname = (char *) lens + TYPEALIGN(8, item->ntables * sizeof(int32));
	char	   *name = datname + item->datname_len;
	char	   *channel = psprintf("%s:invalidate", pk_redis_prefix);
	char	   *db = pnstrdup(datname, item->datname_len);
	int			sent = 0;

	for (int i = 0; i < item->ntables; i++)
	{
		StringInfoData msg;
		PkArgs		a;

		if (pk_invalidated_later(hdrs, later, n, item->dbid, refs[i].relid))
		{
			name += lens[i];
			continue;
		}
		initStringInfo(&msg);
		appendStringInfoString(&msg, "{\"database\":");
		escape_json(&msg, db);
		appendStringInfoString(&msg, ",\"table\":");
		escape_json(&msg, pnstrdup(name, lens[i]));
		appendStringInfo(&msg, ",\"relid\":%u}", refs[i].relid);
		name += lens[i];

		pk_args_init(&a, 9);
		pk_arg_str(&a, "EVAL");
		pk_arg_str(&a, pk_invalidate_script);
		pk_arg_str(&a, "2");
		pk_arg_str(&a, psprintf("%s#tables:%u:%u", pk_redis_prefix, item->dbid, refs[i].relid));
		pk_arg_str(&a, psprintf("%s#gen:%u:%u", pk_redis_prefix, item->dbid, refs[i].relid));
		pk_arg_str(&a, psprintf(UINT64_FORMAT, refs[i].gen));
		pk_arg_str(&a, ttl);
		pk_arg_str(&a, channel);
		pk_arg(&a, msg.data, msg.len);
		if (redisAppendCommandArgv(pk_redis_conn, a.n, a.argv, a.lens) != REDIS_OK)
			return -1;
		sent++;
	}
	return sent;
}

/* Handle one reply of an item */
static void
pk_handle_reply(int kind, redisReply *reply, PkRedisItemHeader *hdr)
{
	if (reply->type == REDIS_REPLY_ERROR)
	{
		pk_redis_worker_error(kind == PK_ITEM_PUSH ? "Redis push failed" : "Redis invalidation failed",
				 reply->str ? reply->str : "error");
		return;
	}
	if (reply->type != REDIS_REPLY_INTEGER)
	{
		pk_redis_worker_error("Redis script failed", "unexpected reply");
		return;
	}
	if (kind == PK_ITEM_INVALIDATE)
		pg_atomic_fetch_add_u64(&pk_redis->invalidated, reply->integer);
	else if (reply->integer == 1)
	{
		PkRedisPushItem *item = (PkRedisPushItem *) (hdr + 1);

		pg_atomic_fetch_add_u64(&pk_redis->pushed, 1);
		pk_redis_mark_pushed(item->recent_check, item->gensum, Max(pk_redis_ttl / 2, 1));
	}
	else
		pg_atomic_fetch_add_u64(&pk_redis->dropped_stale, 1);	/* fenced */
}

/* One pipeline of queued items; true when more items are waiting */
static bool
pk_process_batch(void)
{
	uint64		tail;
	uint64		head;
	uint64		pos;
	uint64		done;
	uint64		ends[PK_BATCH];
	int			kinds[PK_BATCH];
	int			nreplies[PK_BATCH];
	PkRedisItemHeader *hdrs[PK_BATCH];
	int			n = 0;
	int64		bytes = 0;
	char	   *ttl = psprintf("%d", pk_redis_ttl);
	PkRedisItemHeader *hdr;
	uint64		next;
	bool		answered = false;

	pk_redis_queue_bounds(&tail, &head);
	pos = done = tail;
	while (n < PK_BATCH && bytes < PK_BATCH_BYTES &&
		   (hdr = pk_redis_queue_peek(pos, head, &next)) != NULL)
	{
		hdrs[n] = hdr;
		kinds[n] = hdr->state & 0xFFFF;
		ends[n++] = next;
		bytes += hdr->len;
		pos = next;
	}
	for (int i = 0; i < n; i++)
	{
		int			r = 0;
		uint64		start = i == 0 ? tail : ends[i - 1];

		if (start == pk_failing_pos && pk_failing_count >= PK_MAX_ATTEMPTS)
			pk_redis_worker_error("Redis dropped the connection on every try", "item skipped");
		else if (kinds[i] == PK_ITEM_PUSH)
			r = pk_send_push((PkRedisPushItem *) (hdrs[i] + 1), ttl);
		else if (kinds[i] == PK_ITEM_INVALIDATE)
			r = pk_send_invalidate((PkRedisInvalItem *) (hdrs[i] + 1), ttl, hdrs, i + 1, n);
		if (r < 0)
		{
			pk_redis_worker_error("cannot send to Redis", pk_redis_conn_error(pk_redis_conn));
			pk_redis_disconnect(true);
			return false;
		}
		nreplies[i] = r;
	}

	for (int i = 0; i < n; i++)
	{
		if (nreplies[i] > 0)
			answered = true;
		for (int j = 0; j < nreplies[i]; j++)
		{
			void	   *reply = NULL;

			if (redisGetReply(pk_redis_conn, &reply) != REDIS_OK || reply == NULL)
			{
				/* this item broke the connection: count it, maybe skip it next time */
				if (done == pk_failing_pos)
					pk_failing_count++;
				else
				{
					pk_failing_pos = done;
					pk_failing_count = 1;
				}
				pk_redis_worker_error("lost the Redis connection", pk_redis_conn_error(pk_redis_conn));
				freeReplyObject(reply);
				pk_redis_disconnect(true);
				pk_redis_queue_release(done);
				return false;
			}
			pk_handle_reply(kinds[i], (redisReply *) reply, hdrs[i]);
			freeReplyObject(reply);
		}
		done = ends[i];
		if (ShutdownRequestPending)
			break;
	}
	pk_redis_queue_release(done);
	if (answered)
		pk_redis_last_reply = GetCurrentTimestamp();
	return done < head;
}

/* Drop every complete item (the push is off) */
static void
pk_discard_queue(void)
{
	uint64		tail;
	uint64		head;
	uint64		next;

	pk_redis_queue_bounds(&tail, &head);
	while (pk_redis_queue_peek(tail, head, &next) != NULL)
		tail = next;
	pk_redis_queue_release(tail);
}

/* (Re)read perfkit.redis_url: a new URL means a new connection and a flush */
static void
pk_apply_config(void)
{
	const char *url = pk_redis_url ? pk_redis_url : "";
	const char *error;

	if (pk_current_url != NULL && strcmp(pk_current_url, url) == 0)
		return;
	pk_redis_disconnect(false);
	if (pk_current_url != NULL)
		pfree(pk_current_url);
	pk_current_url = MemoryContextStrdup(TopMemoryContext, url);
	pk_url_valid = url[0] != '\0' && pk_redis_parse_url(url, &pk_url, &error);
	pk_need_flush = true;
	pk_redis_reset_backoff();
	pg_atomic_write_u32(&pk_redis->enabled, pk_url_valid ? 1 : 0);
}

/* Exit callback: no more latch to set, nothing queued from now on */
static void
pk_worker_exit(int code, Datum arg)
{
	pg_atomic_write_u32(&pk_redis->enabled, 0);
	pk_redis_disconnect(false);
	SpinLockAcquire(&pk_redis->mutex);
	pk_redis->worker_latch = NULL;
	SpinLockRelease(&pk_redis->mutex);
}

/* One pass with a URL: connect, flush, push; true when more items wait */
static bool
pk_pass(void)
{
	bool		more = false;

	if (pk_redis_conn == NULL && GetCurrentTimestamp() >= pk_redis_next_connect)
		pk_redis_connect(&pk_url);
	if (pk_redis_conn != NULL && pg_atomic_exchange_u32(&pk_redis->flush_all, 0) != 0)
		pk_need_flush = true;
	if (pk_redis_conn != NULL && pk_need_flush && pk_redis_flush())
		pk_need_flush = false;
	if (pk_redis_conn != NULL && !pk_need_flush)
		more = pk_process_batch();
	/* idle: check that Redis is still there */
	if (pk_redis_conn != NULL && !more && !ShutdownRequestPending &&
		(pk_check_now ||
		 GetCurrentTimestamp() >= TimestampTzPlusMilliseconds(pk_redis_last_reply,
															  pk_redis_ping_interval)))
		(void) pk_redis_ping();
	pk_check_now = false;
	return more;
}

/* Milliseconds the idle pusher may sleep: until the next PING or connection attempt */
static long
pk_idle_timeout(void)
{
	TimestampTz due;

	if (!pk_url_valid)
		return PK_IDLE_TIMEOUT;
	if (pk_redis_conn != NULL)
		due = TimestampTzPlusMilliseconds(pk_redis_last_reply, pk_redis_ping_interval);
	else
		due = pk_redis_next_connect;
	return Max(1, Min(PK_IDLE_TIMEOUT,
					  TimestampDifferenceMilliseconds(GetCurrentTimestamp(), due)));
}

/* Sleep until the latch is set, the timeout passes, or the idle connection turns readable */
static void
pk_wait(long timeout)
{
	int			events = WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH;
	pgsocket	sock = PGINVALID_SOCKET;
	int			rc;

	/* readable while no reply is expected: Redis closed the connection (or worse) */
	if (pk_redis_conn != NULL && pk_redis_conn->fd != PGINVALID_SOCKET)
	{
		sock = pk_redis_conn->fd;
		events |= WL_SOCKET_READABLE;
	}
	rc = WaitLatchOrSocket(MyLatch, events, sock, timeout, PG_WAIT_EXTENSION);
	if (rc & WL_SOCKET_READABLE)
		pk_check_now = true;
	ResetLatch(MyLatch);
}

/* Main loop of the pusher */
void
pk_redis_worker_main(Datum main_arg)
{
	MemoryContext loop_cxt;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	pqsignal(SIGPIPE, PK_SIG_IGN);
	BackgroundWorkerUnblockSignals();

	loop_cxt = AllocSetContextCreate(TopMemoryContext, "perfkit redis pusher",
									 ALLOCSET_DEFAULT_SIZES);
	SpinLockAcquire(&pk_redis->mutex);
	pk_redis->worker_latch = MyLatch;
	SpinLockRelease(&pk_redis->mutex);
	before_shmem_exit(pk_worker_exit, (Datum) 0);
	pk_apply_config();

	while (!ShutdownRequestPending)
	{
		bool		more = false;
		MemoryContext old;

		MemoryContextReset(loop_cxt);
		old = MemoryContextSwitchTo(loop_cxt);
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			pk_apply_config();
		}

		if (!pk_url_valid)
			pk_discard_queue();
		else
			more = pk_pass();
		MemoryContextSwitchTo(old);

		if (!more && !ShutdownRequestPending)
			pk_wait(pk_idle_timeout());
		CHECK_FOR_INTERRUPTS();
	}
	pk_redis_disconnect(false);
	/*
	 * Exit status 1: the postmaster starts the pusher again after
	 * bgw_restart_time (a SIGTERM outside a shutdown, e.g. an administrator's
	 * kill).  With status 0 it would unregister the worker for good: no push
	 * until the next server restart.
	 */
	proc_exit(1);
}
