/*-------------------------------------------------------------------------
 *
 * redis_queue.c
 *	  Shared memory of the Redis push: the bounded queue to the pusher,
 *	  per-table write generations, hot-statement counters, recently pushed
 *	  keys, and the counters of perfkit.redis_status.
 *
 * The queue is a byte ring of perfkit.redis_queue_size.  A producer (any
 * backend) takes the spinlock only to reserve room -- compare, add, write
 * an 8-byte header with state 0 -- and copies its item without the lock;
 * it then sets the state to kind | READY after a write barrier and sets
 * the worker's latch.  The single consumer (redis_worker.c) reads items in
 * order, stops at the first one not yet ready, and gives room back under
 * the spinlock.  An item that would cross the end of the ring is preceded
 * by a PAD item filling the rest, so items never wrap.  Pushes may use
 * only the first three quarters of the ring, leaving room for
 * invalidations; a producer never waits: no room means the item is
 * dropped and counted (a lost invalidation also makes the worker delete
 * every pushed key, see flush_all).
 *
 * Write generations.  Tables hash into PK_REDIS_GEN_SLOTS slots, each with
 * a generation and the newest FullTransactionId that bumped it (maxxid).
 * A committing writer raises maxxid, then increments the generation (both
 * full barriers), then queues its invalidation.  A reader reads the
 * generations after its snapshot was taken, then maxxid; see redis.c
 * for why this and the worker's check make a stale result impossible to
 * keep.  Generations start at the server start time in microseconds, so
 * they keep growing across restarts (Redis keeps fences made of them).
 *
 * Hot counters are lock-free: a tag per slot (claimed by compare-and-swap
 * when free or idle for two minutes) and one 64-bit word per minute; once a
 * statement is hot for the current minute, its slot is only read.
 *
 * The pusher sets "connected" when Redis answers and clears it as soon as a
 * command, a connection attempt or its idle PING fails; backends read it
 * without a lock and, while it is off, neither capture nor encode results
 * (hot counters keep counting, so pushes resume at the first hot execution
 * after a reconnection).  Invalidations are queued whatever the state.
 *
 * Counters that backends would otherwise bump on every execution of a hot
 * statement (skipped, dropped) are kept per backend and added to shared
 * memory at most once a second, at backend exit, and when
 * perfkit.redis_status is read.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <time.h>

#include "access/transam.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "redis/redis_internal.h"

PkRedisShared *pk_redis = NULL;

/* Backend-local counts not yet added to shared memory */
static uint64 pk_local_unsafe = 0;
static uint64 pk_local_stale = 0;
static uint64 pk_local_full = 0;
static uint64 pk_local_too_big = 0;
static time_t pk_local_flushed_at = 0;
static bool pk_local_exit_registered = false;

/* Bytes of the ring */
static Size
pk_redis_ring_bytes(void)
{
	return TYPEALIGN_DOWN(8, (Size) pk_redis_queue_size * 1024);
}

/* Shared memory needed by the Redis push */
Size
pk_redis_shmem_size(void)
{
	return add_size(offsetof(PkRedisShared, ring), pk_redis_ring_bytes());
}

/* Attach to (or create) the shared state; the caller holds AddinShmemInitLock */
void
pk_redis_shmem_init(void)
{
	bool		found;
	uint64		start;

	pk_redis = ShmemInitStruct("perfkit redis", pk_redis_shmem_size(), &found);
	if (found)
		return;

	memset(pk_redis, 0, offsetof(PkRedisShared, ring));
	SpinLockInit(&pk_redis->mutex);
	pk_redis->size = pk_redis_ring_bytes();
	pk_redis->push_limit = TYPEALIGN_DOWN(8, pk_redis->size / 4 * 3);
	pk_redis->worker_latch = NULL;
	pg_atomic_init_u32(&pk_redis->enabled, 0);
	pg_atomic_init_u32(&pk_redis->connected, 0);
	pg_atomic_init_u32(&pk_redis->flush_all, 0);
	pg_atomic_init_u32(&pk_redis->flush_epoch, 0);
	pg_atomic_init_u32(&pk_redis->full, 0);
	pg_atomic_init_u64(&pk_redis->pushed, 0);
	pg_atomic_init_u64(&pk_redis->invalidated, 0);
	pg_atomic_init_u64(&pk_redis->skipped_unsafe, 0);
	pg_atomic_init_u64(&pk_redis->skipped_too_big, 0);
	pg_atomic_init_u64(&pk_redis->dropped_queue_full, 0);
	pg_atomic_init_u64(&pk_redis->dropped_stale, 0);
	pg_atomic_init_u64(&pk_redis->errors, 0);
	pk_redis->last_error_at = 0;
	pk_redis->last_connected_at = 0;

	/* generations only grow, also across restarts: start at the clock */
	start = (uint64) GetCurrentTimestamp();
	for (int i = 0; i < PK_REDIS_GEN_SLOTS; i++)
	{
		pg_atomic_init_u64(&pk_redis->gens[i], start);
		pg_atomic_init_u64(&pk_redis->maxxid[i], 0);
	}
	for (int i = 0; i < PK_REDIS_RECENT_SLOTS; i++)
	{
		pg_atomic_init_u64(&pk_redis->recent[i].check, 0);
		pg_atomic_init_u64(&pk_redis->recent[i].stamp, 0);
		pg_atomic_init_u64(&pk_redis->recent[i].captured_at, 0);
	}
	for (int i = 0; i < PK_REDIS_HOT_SLOTS; i++)
	{
		pg_atomic_init_u64(&pk_redis->hot[i].tag, 0);
		pg_atomic_init_u64(&pk_redis->hot[i].cur, 0);
		pg_atomic_init_u64(&pk_redis->hot[i].prev, 0);
	}
}

/* Pointer to the byte at a ring position */
static inline char *
pk_ring_at(uint64 pos)
{
	return (char *) pk_redis->ring + (pos % pk_redis->size);
}

/*
 * Count one execution of (database, query id) and tell whether it ran at
 * least perfkit.redis_hot_calls times in the last minute (a sliding
 * estimate from this minute's and the previous minute's counts).
 */
bool
pk_redis_is_hot(Oid dbid, uint64 queryid)
{
	uint64		key[2] = {queryid, dbid};
	uint64		tag = hash_bytes_extended((const unsigned char *) key, sizeof(key), 0) | 1;
	time_t		now = time(NULL);
	uint64		minute = (uint64) now / 60;
	uint64		elapsed = (uint64) now % 60;
	PkRedisHot *h = NULL;
	uint64		c;
	uint64		p;
	uint64		n;
	uint64		pn;

	for (int probe = 0; probe < 2 && h == NULL; probe++)
	{
		PkRedisHot *s = &pk_redis->hot[(tag + probe) & (PK_REDIS_HOT_SLOTS - 1)];
		uint64		t = pg_atomic_read_u64(&s->tag);

		if (t == tag)
			h = s;
		else if (t == 0 || (pg_atomic_read_u64(&s->cur) >> 32) + 1 < minute)
		{
			/* free, or idle for two minutes: take it over */
			if (pg_atomic_compare_exchange_u64(&s->tag, &t, tag))
			{
				pg_atomic_write_u64(&s->cur, minute << 32);
				pg_atomic_write_u64(&s->prev, 0);
				h = s;
			}
		}
	}
	if (h == NULL)
		return false;

	c = pg_atomic_read_u64(&h->cur);
	if ((c >> 32) == minute)
	{
		n = c & 0xFFFFFFFF;
		/* already hot this minute: only read, so hot slots stay shared in caches */
		if (n < (uint64) pk_redis_hot_calls)
			n = (pg_atomic_fetch_add_u64(&h->cur, 1) & 0xFFFFFFFF) + 1;
	}
	else
	{
		uint64		fresh = (minute << 32) | 1;

		if (pg_atomic_compare_exchange_u64(&h->cur, &c, fresh))
		{
			pg_atomic_write_u64(&h->prev, (c >> 32) + 1 == minute ? c : 0);
			n = 1;
		}
		else
			n = c & 0xFFFFFFFF; /* someone else started the minute */
	}
	p = pg_atomic_read_u64(&h->prev);
	pn = ((p >> 32) + 1 == minute) ? (p & 0xFFFFFFFF) : 0;
	return n + pn * (60 - elapsed) / 60 >= (uint64) pk_redis_hot_calls;
}

/* Generation slot of a relation */
uint32
pk_redis_gen_slot(Oid dbid, Oid relid)
{
	uint32		key[2] = {dbid, relid};

	return hash_bytes((const unsigned char *) key, sizeof(key)) & (PK_REDIS_GEN_SLOTS - 1);
}

/* Current generation of a slot */
uint64
pk_redis_read_gen(uint32 slot)
{
	return pg_atomic_read_u64(&pk_redis->gens[slot]);
}

/* The full transaction id of xid, which is not older than 2^31 before next */
static FullTransactionId
pk_full_xid(FullTransactionId next, TransactionId xid)
{
	int64		diff = (int32) (xid - XidFromFullTransactionId(next));
	uint64		n = U64FromFullTransactionId(next);

	if (diff < 0 && (uint64) (-diff) > n)
		return FullTransactionIdFromU64(0);
	return FullTransactionIdFromU64(n + diff);
}

/*
 * True when every transaction that ever bumped one of these slots is
 * visible in the snapshot: each slot's newest writer precedes the
 * snapshot's xmin.  Call after reading the generations.
 */
bool
pk_redis_writers_visible(const PkRedisTableRef *tables, int ntables, Snapshot snapshot)
{
	FullTransactionId xmin;

	if (snapshot == NULL || !IsMVCCSnapshot(snapshot) ||
		!TransactionIdIsNormal(snapshot->xmin))
		return false;
	xmin = pk_full_xid(ReadNextFullTransactionId(), snapshot->xmin);
	pg_read_barrier();
	for (int i = 0; i < ntables; i++)
		if (pg_atomic_read_u64(&pk_redis->maxxid[tables[i].slot]) >= U64FromFullTransactionId(xmin))
			return false;
	return true;
}

/* Flush epoch: part of every recent mark, so a flush voids them all */
uint32
pk_redis_flush_epoch(void)
{
	return pg_atomic_read_u32(&pk_redis->flush_epoch);
}

/* The entry of a key in its group of the recent table, NULL when it has none */
static PkRedisRecent *
pk_recent_find(uint64 check)
{
	PkRedisRecent *group = &pk_redis->recent[(hash_uint32((uint32) (check >> 32)) ^ (uint32) check) &
											 (PK_REDIS_RECENT_SLOTS - PK_REDIS_RECENT_WAYS)];

	for (int i = 0; i < PK_REDIS_RECENT_WAYS; i++)
		if (pg_atomic_read_u64(&group[i].check) == check)
			return &group[i];
	return NULL;
}

/* The entry of a key, taking over the least recently captured one of its group */
static PkRedisRecent *
pk_recent_claim(uint64 check)
{
	PkRedisRecent *group = &pk_redis->recent[(hash_uint32((uint32) (check >> 32)) ^ (uint32) check) &
											 (PK_REDIS_RECENT_SLOTS - PK_REDIS_RECENT_WAYS)];
	PkRedisRecent *victim = &group[0];

	for (int i = 0; i < PK_REDIS_RECENT_WAYS; i++)
	{
		if (pg_atomic_read_u64(&group[i].check) == check)
			return &group[i];
		if (pg_atomic_read_u64(&group[i].captured_at) < pg_atomic_read_u64(&victim->captured_at))
			victim = &group[i];
	}
	pg_atomic_write_u64(&victim->stamp, 0);
	pg_atomic_write_u64(&victim->check, check);
	return victim;
}

/*
 * True when this key need not be captured now: it was pushed (or queued)
 * at these generations and is still fresh, or it was captured less than
 * perfkit.redis_min_push_interval ago (a table written more often than
 * that does not make every read a push).
 */
bool
pk_redis_recently_pushed(uint64 check, uint32 gensum)
{
	PkRedisRecent *r = pk_recent_find(check);
	uint64		stamp;

	if (r == NULL)
		return false;
	stamp = pg_atomic_read_u64(&r->stamp);
	if ((uint32) (stamp >> 32) == gensum && (uint32) stamp > (uint32) time(NULL))
		return true;
	return pk_redis_min_push_interval > 0 &&
		(uint64) GetCurrentTimestamp() / 1000 <
		pg_atomic_read_u64(&r->captured_at) + pk_redis_min_push_interval;
}

/* Worker: a key was pushed at these generations; fresh for the next seconds */
void
pk_redis_mark_pushed(uint64 check, uint32 gensum, uint32 seconds)
{
	PkRedisRecent *r = pk_recent_find(check);

	/* a key that lost its entry meanwhile is simply captured again later */
	if (r != NULL)
		pg_atomic_write_u64(&r->stamp, ((uint64) gensum << 32) | (uint32) (time(NULL) + seconds));
}

/* A key is being captured: other executions skip it for two seconds */
void
pk_redis_mark_pending(uint64 check, uint32 gensum)
{
	PkRedisRecent *r = pk_recent_claim(check);

	pg_atomic_write_u64(&r->captured_at, (uint64) GetCurrentTimestamp() / 1000);
	pg_atomic_write_u64(&r->stamp, ((uint64) gensum << 32) | (uint32) (time(NULL) + 2));
}

/* Raise a slot's newest writer to fxid */
static void
pk_raise_maxxid(uint32 slot, FullTransactionId fxid)
{
	uint64		want = U64FromFullTransactionId(fxid);
	uint64		cur = pg_atomic_read_u64(&pk_redis->maxxid[slot]);

	while (cur < want &&
		   !pg_atomic_compare_exchange_u64(&pk_redis->maxxid[slot], &cur, want))
		;
	/* the compare-and-swap is a full barrier; when skipped, add one */
	pg_memory_barrier();
}

/*
 * A transaction that wrote these relations committed: raise maxxid, then
 * bump the generation of each; out[i] receives the new generations.
 */
void
pk_redis_bump(const Oid *relids, int nrelids, FullTransactionId fxid, PkRedisTableRef *out)
{
	for (int i = 0; i < nrelids; i++)
	{
		uint32		slot = pk_redis_gen_slot(MyDatabaseId, relids[i]);

		if (FullTransactionIdIsValid(fxid))
			pk_raise_maxxid(slot, fxid);
		out[i].relid = relids[i];
		out[i].slot = slot;
		out[i].gen = pg_atomic_add_fetch_u64(&pk_redis->gens[slot], 1);
	}
}

/* A transaction wrote more relations than it could list: bump every slot */
void
pk_redis_bump_all(FullTransactionId fxid)
{
	for (uint32 slot = 0; slot < PK_REDIS_GEN_SLOTS; slot++)
	{
		if (FullTransactionIdIsValid(fxid))
			pk_raise_maxxid(slot, fxid);
		pg_atomic_fetch_add_u64(&pk_redis->gens[slot], 1);
	}
}

/*
 * Reserve len bytes (a multiple of 8) for an item; NULL when it does not fit
 * under the limit of its kind.  Returns the worker's latch in *latch.
 */
static PkRedisItemHeader *
pk_queue_reserve(uint64 len, bool push, Latch **latch)
{
	PkRedisItemHeader *hdr;
	uint64		off;
	uint64		pad;
	uint64		limit;

	SpinLockAcquire(&pk_redis->mutex);
	off = pk_redis->head % pk_redis->size;
	pad = (off + len > pk_redis->size) ? pk_redis->size - off : 0;
	limit = push ? pk_redis->push_limit : pk_redis->size;
	if (pk_redis->head - pk_redis->tail + pad + len > limit)
	{
		SpinLockRelease(&pk_redis->mutex);
		return NULL;
	}
	if (pad > 0)
	{
		hdr = (PkRedisItemHeader *) pk_ring_at(pk_redis->head);
		hdr->len = (uint32) pad;
		pg_write_barrier();
		hdr->state = PK_ITEM_PAD | PK_ITEM_READY;
		pk_redis->head += pad;
	}
	hdr = (PkRedisItemHeader *) pk_ring_at(pk_redis->head);
	hdr->len = (uint32) len;
	hdr->state = 0;
	pk_redis->head += len;
	*latch = pk_redis->worker_latch;
	SpinLockRelease(&pk_redis->mutex);
	return hdr;
}

/* Make a reserved item visible to the worker and wake it */
static void
pk_queue_publish(PkRedisItemHeader *hdr, uint32 kind, Latch *latch)
{
	pg_write_barrier();
	hdr->state = kind | PK_ITEM_READY;
	if (latch != NULL)
		SetLatch(latch);
}

/* Queue the push of a captured result; false (and counted) when the queue is full */
bool
pk_redis_enqueue_push(const PkRedisCapture *cap, const char *datname,
					  const char *value, int64 value_len)
{
	PkRedisPushItem item;
	PkRedisItemHeader *hdr;
	Latch	   *latch;
	char	   *p;
	int			datlen = strlen(datname);
	int			rollen = strlen(cap->rolname);
	uint64		len;

	len = TYPEALIGN(8, sizeof(PkRedisItemHeader) + sizeof(PkRedisPushItem) +
					cap->ntables * sizeof(PkRedisTableRef) + datlen + rollen + value_len);
	hdr = (len <= pk_redis->push_limit && len <= PG_UINT32_MAX) ?
		pk_queue_reserve(len, true, &latch) : NULL;
	if (hdr == NULL)
	{
		pg_atomic_write_u32(&pk_redis->full, 1);
		pk_redis_count_local(PK_SKIP_QUEUE_FULL);
		return false;
	}

	memset(&item, 0, sizeof(item));
	item.dbid = MyDatabaseId;
	item.ntables = cap->ntables;
	item.pad = 0;
	item.gensum = cap->gensum;
	item.recent_check = cap->recent_check;
	item.datname_len = datlen;
	item.rolname_len = rollen;
	item.value_len = value_len;
	memcpy(item.hash, cap->hash, PK_REDIS_SHA1_HEX);

	p = (char *) (hdr + 1);
	memcpy(p, &item, sizeof(item));
	p += sizeof(item);
	memcpy(p, cap->tables, cap->ntables * sizeof(PkRedisTableRef));
	p += cap->ntables * sizeof(PkRedisTableRef);
	memcpy(p, datname, datlen);
	p += datlen;
	memcpy(p, cap->rolname, rollen);
	p += rollen;
	memcpy(p, value, value_len);
	pk_queue_publish(hdr, PK_ITEM_PUSH, latch);
	return true;
}

/* Make the worker delete every pushed key (an invalidation is lost); never fails */
void
pk_redis_request_flush(void)
{
	Latch	   *latch;

	pg_atomic_write_u32(&pk_redis->flush_all, 1);
	SpinLockAcquire(&pk_redis->mutex);
	latch = pk_redis->worker_latch;
	SpinLockRelease(&pk_redis->mutex);
	if (latch != NULL)
		SetLatch(latch);
}

/*
 * Queue the invalidation of written tables.  Runs in a commit callback, so
 * it neither allocates nor fails: when the queue has no room, the worker is
 * told to delete every pushed key instead.
 */
void
pk_redis_enqueue_invalidate(Oid dbid, const char *datname, const PkRedisTableRef *tables,
							const char *const *names, int ntables)
{
	PkRedisInvalItem item;
	PkRedisItemHeader *hdr;
	Latch	   *latch = NULL;
	char	   *p;
	int			datlen = strlen(datname);
	uint64		len;
	Size		lens_bytes = TYPEALIGN(8, ntables * sizeof(int32));

	len = sizeof(PkRedisItemHeader) + sizeof(PkRedisInvalItem) +
		ntables * sizeof(PkRedisTableRef) + lens_bytes + datlen;
	for (int i = 0; i < ntables; i++)
		len += strlen(names[i]);
	len = TYPEALIGN(8, len);

	hdr = (len <= pk_redis->size / 2) ? pk_queue_reserve(len, false, &latch) : NULL;
	if (hdr == NULL)
	{
		pg_atomic_fetch_add_u64(&pk_redis->dropped_queue_full, 1);
		pk_redis_request_flush();
		return;
	}

	item.dbid = dbid;
	item.ntables = ntables;
	item.datname_len = datlen;
	item.pad = 0;
	p = (char *) (hdr + 1);
	memcpy(p, &item, sizeof(item));
	p += sizeof(item);
	memcpy(p, tables, ntables * sizeof(PkRedisTableRef));
	p += ntables * sizeof(PkRedisTableRef);
	for (int i = 0; i < ntables; i++)
		((int32 *) p)[i] = strlen(names[i]);
	p += lens_bytes;
	memcpy(p, datname, datlen);
	p += datlen;
	for (int i = 0; i < ntables; i++)
	{
		int			l = strlen(names[i]);

		memcpy(p, names[i], l);
		p += l;
	}
	pk_queue_publish(hdr, PK_ITEM_INVALIDATE, latch);
}

/* Worker: the bytes ever released and ever reserved */
void
pk_redis_queue_bounds(uint64 *tail, uint64 *head)
{
	SpinLockAcquire(&pk_redis->mutex);
	*tail = pk_redis->tail;
	*head = pk_redis->head;
	SpinLockRelease(&pk_redis->mutex);
}

/* Worker: the item at pos if it is complete, NULL otherwise; *next is the following one */
PkRedisItemHeader *
pk_redis_queue_peek(uint64 pos, uint64 head, uint64 *next)
{
	PkRedisItemHeader *hdr;
	uint32		state;

	if (pos >= head)
		return NULL;
	hdr = (PkRedisItemHeader *) pk_ring_at(pos);
	state = hdr->state;
	pg_read_barrier();
	if ((state & PK_ITEM_READY) == 0)
		return NULL;
	*next = pos + hdr->len;
	return hdr;
}

/* Worker: give the room of every item before upto back to producers */
void
pk_redis_queue_release(uint64 upto)
{
	uint64		used;

	/* the worker has read the items: their bytes may be reused */
	pg_memory_barrier();
	SpinLockAcquire(&pk_redis->mutex);
	Assert(upto <= pk_redis->head && upto >= pk_redis->tail);
	pk_redis->tail = upto;
	used = pk_redis->head - pk_redis->tail;
	SpinLockRelease(&pk_redis->mutex);
	if (used <= pk_redis->push_limit / 2)
		pg_atomic_write_u32(&pk_redis->full, 0);
}

/* Worker: remember the latest error for perfkit.redis_status */
void
pk_redis_set_error(const char *fmt,...)
{
	char		buf[PK_REDIS_ERROR_LEN];
	va_list		ap;

	TimestampTz now = GetCurrentTimestamp();

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	SpinLockAcquire(&pk_redis->mutex);
	strlcpy(pk_redis->last_error, buf, sizeof(pk_redis->last_error));
	pk_redis->last_error_at = now;
	SpinLockRelease(&pk_redis->mutex);
}

/*
 * Worker: the connection is usable (noting when) or gone.  Backends read
 * the flag without a lock and capture nothing while it is off.
 */
void
pk_redis_set_connected(bool connected)
{
	if (connected)
	{
		TimestampTz now = GetCurrentTimestamp();

		SpinLockAcquire(&pk_redis->mutex);
		pk_redis->last_connected_at = now;
		SpinLockRelease(&pk_redis->mutex);
	}
	pg_atomic_write_u32(&pk_redis->connected, connected ? 1 : 0);
}

/* Add the backend's counts to shared memory */
void
pk_redis_flush_local_counts(void)
{
	if (pk_redis == NULL)
		return;
	if (pk_local_unsafe > 0)
		pg_atomic_fetch_add_u64(&pk_redis->skipped_unsafe, pk_local_unsafe);
	if (pk_local_stale > 0)
		pg_atomic_fetch_add_u64(&pk_redis->dropped_stale, pk_local_stale);
	if (pk_local_full > 0)
		pg_atomic_fetch_add_u64(&pk_redis->dropped_queue_full, pk_local_full);
	if (pk_local_too_big > 0)
		pg_atomic_fetch_add_u64(&pk_redis->skipped_too_big, pk_local_too_big);
	pk_local_unsafe = pk_local_stale = pk_local_full = pk_local_too_big = 0;
	pk_local_flushed_at = time(NULL);
}

/* Exit callback: keep the counts of a backend that ends */
static void
pk_redis_flush_at_exit(int code, Datum arg)
{
	pk_redis_flush_local_counts();
}

/* Count one execution not pushed; published at most once a second */
void
pk_redis_count_local(PkRedisSkip reason)
{
	time_t		now;

	switch (reason)
	{
		case PK_SKIP_UNSAFE:
			pk_local_unsafe++;
			break;
		case PK_SKIP_STALE:
			pk_local_stale++;
			break;
		case PK_SKIP_QUEUE_FULL:
			pk_local_full++;
			break;
		case PK_SKIP_TOO_BIG:
			pk_local_too_big++;
			break;
		default:
			return;
	}
	if (!pk_local_exit_registered)
	{
		before_shmem_exit(pk_redis_flush_at_exit, (Datum) 0);
		pk_local_exit_registered = true;
	}
	now = time(NULL);
	if (now != pk_local_flushed_at)
		pk_redis_flush_local_counts();
}
