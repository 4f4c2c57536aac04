/*-------------------------------------------------------------------------
 *
 * stats_pending.c
 *	  Each backend's pending statement figures, and their flush into the
 *	  shared table.
 *
 * As PostgreSQL's own cumulative statistics do, a backend adds every
 * execution to figures in its own memory -- no lock, no shared cache line,
 * no allocation once a statement has its pending entry -- and adds them to
 * the shared table (stats.c) in one pass:
 *	- when a statement ends and the last flush is perfkit.stats_flush_interval
 *	  old;
 *	- when a client backend went idle with figures pending: a timer of the
 *	  same interval wakes it the way a shared-invalidation catch-up signal
 *	  does, so an idle backend runs an empty transaction, whose commit
 *	  flushes (a backend idle inside a transaction block flushes when the
 *	  block ends, as pgstat does);
 *	- at the commit of any transaction after that timer fired;
 *	- before perfkit's functions read the statistics in this backend, so a
 *	  session always sees its own statements;
 *	- at backend exit, normal or terminated.
 * Other backends' figures therefore reach readers at most one interval late.
 *
 * The pending table is open addressing over this backend's keys, with one
 * entry per statement: a delta of the shared counters (histogram included)
 * and a copy of the statement's text, so that a flush can make the shared
 * entry again if it was evicted meanwhile (else its executions are counted
 * in perfkit.info.dropped).  It is emptied wholesale when full.
 *
 * Locking: the pending table is this backend's own.  A reset bumps the
 * shared generation under the table's exclusive lock; pending figures of an
 * older generation are dropped, never flushed, so a reset racing a flush
 * leaves no figure from before it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/sinval.h"
#include "utils/memutils.h"
#include "utils/timeout.h"
#include "utils/wait_event.h"

#include "core/compat.h"
#include "import/normalize.h"
#include "stats/stats_internal.h"

#define PK_PENDING_SLOTS	256		/* size of the open-addressing table (power of two) */
#define PK_PENDING_MAX		192		/* entries kept before the table is emptied */

/* One statement's figures not yet in the shared table */
typedef struct PkPending
{
	PkStatsKey	key;			/* the shared entry's key */
	uint32		generation;		/* reset generation the figures belong to */
	PkCounters	delta;			/* executions since the last flush (calls = 0: none) */
	int			query_len;		/* bytes in query */
	char	   *query;			/* the entry's text, to make it again after an eviction */
} PkPending;

static PkPending *pk_pending[PK_PENDING_SLOTS];
static int	pk_pending_count = 0;	/* entries in pk_pending */
static int	pk_pending_dirty = 0;	/* ... of which with executions to flush */
static MemoryContext pk_pending_cxt = NULL;
static TimestampTz pk_last_flush = 0;
static bool pk_pending_callbacks = false;	/* exit and transaction callbacks registered */

static TimeoutId pk_idle_timeout = MAX_TIMEOUTS;	/* none registered yet */
static volatile sig_atomic_t pk_idle_timer_armed = false;
static volatile sig_atomic_t pk_idle_flush_wanted = false;

/* Add one execution to figures */
static inline void
pk_counters_add(PkCounters *c, const PkExecution *x)
{
	double		t = x->duration_ms;

	c->calls++;
	if (c->calls == 1)
	{
		c->min_time = c->max_time = c->mean_time = t;
		c->sum_var_time = 0.0;
		c->first_seen = x->end_time;
	}
	else
	{
		double		old_mean = c->mean_time;

		c->mean_time += (t - old_mean) / c->calls;
		c->sum_var_time += (t - old_mean) * (t - c->mean_time);
		if (t < c->min_time)
			c->min_time = t;
		if (t > c->max_time)
			c->max_time = t;
	}
	c->total_time += t;
	c->rows += x->rows;
	c->shared_blks_hit += x->shared_blks_hit;
	c->shared_blks_read += x->shared_blks_read;
	c->temp_blks_written += x->temp_blks_written;
	if (x->slow)
		c->slow_calls++;
	c->usage += 1.0;
	c->last_seen = x->end_time;
	pk_hist_add(&c->hist, t);
}

/* Add a backend's pending figures to an entry's; the caller holds its spinlock */
static void
pk_counters_merge(PkCounters *into, const PkCounters *d)
{
	if (into->calls == 0)
	{
		into->min_time = d->min_time;
		into->max_time = d->max_time;
		into->mean_time = d->mean_time;
		into->sum_var_time = d->sum_var_time;
	}
	else
	{
		/* Chan et al.: the mean and squared deviations of two samples together */
		double		n = (double) (into->calls + d->calls);
		double		diff = d->mean_time - into->mean_time;

		into->sum_var_time += d->sum_var_time + diff * diff * into->calls * d->calls / n;
		into->mean_time += diff * d->calls / n;
		into->min_time = Min(into->min_time, d->min_time);
		into->max_time = Max(into->max_time, d->max_time);
	}
	into->calls += d->calls;
	into->total_time += d->total_time;
	into->rows += d->rows;
	into->shared_blks_hit += d->shared_blks_hit;
	into->shared_blks_read += d->shared_blks_read;
	into->temp_blks_written += d->temp_blks_written;
	into->slow_calls += d->slow_calls;
	into->usage += d->usage;
	into->last_seen = Max(into->last_seen, d->last_seen);
	for (int i = 0; i < PK_HIST_BUCKETS; i++)
		into->hist.counts[i] += d->hist.counts[i];
}

/* Home slot of a key: the query id is a hash already */
static inline uint32
pk_pending_home(const PkStatsKey *key)
{
	return (uint32) (key->queryid ^ (key->queryid >> 32) ^ key->userid ^
					 (key->dbid << 8) ^ key->toplevel) & (PK_PENDING_SLOTS - 1);
}

/* The pending entry of a key, or the free slot where it would go (*slot) */
static inline PkPending *
pk_pending_find(const PkStatsKey *key, uint32 *slot)
{
	uint32		i = pk_pending_home(key);
	PkPending  *p;

	while ((p = pk_pending[i]) != NULL)
	{
		if (p->key.queryid == key->queryid && p->key.userid == key->userid &&
			p->key.dbid == key->dbid && p->key.toplevel == key->toplevel)
			return p;
		i = (i + 1) & (PK_PENDING_SLOTS - 1);
	}
	*slot = i;
	return NULL;
}

/* Forget an entry's pending executions */
static inline void
pk_pending_clear(PkPending *p)
{
	memset(&p->delta, 0, sizeof(PkCounters));
}

/* Flush at exit: nothing this backend counted is lost */
static void
pk_pending_at_exit(int code, Datum arg)
{
	pk_stats_flush();
}

/*
 * Timer: the backend has kept figures for an interval.  If it waits for
 * the client, wake it as a sinval catch-up signal does, so that it runs an
 * empty transaction; if it is busy, its next statement end or commit
 * flushes.
 */
static void
pk_idle_timeout_handler(void)
{
	pk_idle_timer_armed = false;
	pk_idle_flush_wanted = true;
	if (my_wait_event_info != NULL && *my_wait_event_info == WAIT_EVENT_CLIENT_READ)
	{
		catchupInterruptPending = true;
		SetLatch(MyLatch);
	}
}

/* Transaction end: flush when the timer asked for it */
static void
pk_pending_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT && pk_idle_flush_wanted)
		pk_stats_flush();
}

/* Register the exit flush, and in client backends the idle timer (once per process) */
static void
pk_pending_register_callbacks(void)
{
	pk_pending_callbacks = true;
	before_shmem_exit(pk_pending_at_exit, (Datum) 0);
	if (IsUnderPostmaster && MyBackendType == B_BACKEND)
	{
		pk_idle_timeout = RegisterTimeout(USER_TIMEOUT, pk_idle_timeout_handler);
		RegisterXactCallback(pk_pending_xact_callback, NULL);
	}
}

/*
 * Add the pending figures of the current generation to the shared table,
 * making again the entries evicted meanwhile; drop those of an older one.
 */
static void
pk_stats_flush_all(TimestampTz now)
{
	uint32		generation;
	int			missing = 0;

	pk_idle_flush_wanted = false;
	pk_last_flush = now;
	if (pk_pending_dirty == 0)
		return;

	LWLockAcquire(pk_state->lock, LW_SHARED);
	generation = pg_atomic_read_u32(&pk_state->generation);
	for (int i = 0; i < PK_PENDING_SLOTS; i++)
	{
		PkPending  *p = pk_pending[i];
		PkStatsEntry *entry;

		if (p == NULL || p->delta.calls == 0)
			continue;
		if (p->generation != generation)
		{
			pk_pending_clear(p);
			continue;
		}
		entry = hash_search(pk_hash, &p->key, HASH_FIND, NULL);
		if (entry == NULL)
		{
			missing++;
			continue;
		}
		SpinLockAcquire(&entry->mutex);
		pk_counters_merge(&entry->counters, &p->delta);
		SpinLockRelease(&entry->mutex);
		pk_pending_clear(p);
	}
	LWLockRelease(pk_state->lock);

	if (missing > 0)
	{
		int64		dropped = 0;

		LWLockAcquire(pk_state->lock, LW_EXCLUSIVE);
		generation = pg_atomic_read_u32(&pk_state->generation);
		for (int i = 0; i < PK_PENDING_SLOTS; i++)
		{
			PkPending  *p = pk_pending[i];
			PkStatsEntry *entry;

			if (p == NULL || p->delta.calls == 0)
				continue;
			if (p->generation == generation)
			{
				entry = pk_stats_insert_locked(&p->key, p->query, p->query_len,
											   p->delta.first_seen);
				if (entry != NULL)
					pk_counters_merge(&entry->counters, &p->delta);
				else
					dropped += p->delta.calls;
			}
			pk_pending_clear(p);
		}
		LWLockRelease(pk_state->lock);
		if (dropped > 0)
			pk_stats_count_dropped(dropped);
	}
	pk_pending_dirty = 0;
}

/* Flush this backend's pending figures (before reading, at exit) */
void
pk_stats_flush(void)
{
	if (pk_pending_dirty > 0 && pk_state != NULL)
		pk_stats_flush_all(GetCurrentTimestamp());
	else
		pk_idle_flush_wanted = false;
}

/* Empty the pending table after a flush, to make room */
static void
pk_pending_empty(void)
{
	pk_stats_flush();
	MemoryContextReset(pk_pending_cxt);
	memset(pk_pending, 0, sizeof(pk_pending));
	pk_pending_count = 0;
}

/* A copy of a shared entry's text in the pending context (NULL if out of memory); the caller holds the table lock */
static char *
pk_pending_copy_text(const PkStatsEntry *entry, int *len)
{
	char	   *text = MemoryContextAllocExtended(pk_pending_cxt, entry->query_len + 1,
												  MCXT_ALLOC_NO_OOM);

	*len = entry->query_len;
	if (text != NULL)
		memcpy(text, entry->query, entry->query_len + 1);
	return text;
}

/*
 * Find the shared entry of a key, or make it with the statement's text
 * (normalized when jstate is given), and give this backend a pending entry
 * for it (reused when it holds figures of before a reset).  NULL when no
 * entry could be made.
 */
static PkPending *
pk_pending_attach(PkPending *p, uint32 slot, const PkStatsKey *key,
				  const JumbleState *jstate, const char *source, int location, int len,
				  TimestampTz now)
{
	PkStatsEntry *entry;
	uint32		generation;
	char	   *text = NULL;
	int			text_len = 0;
	char	   *normalized = NULL;

	if (!pk_pending_callbacks)
		pk_pending_register_callbacks();
	if (pk_pending_cxt == NULL)
		pk_pending_cxt = AllocSetContextCreate(TopMemoryContext, "perfkit pending statistics",
											   ALLOCSET_DEFAULT_SIZES);
	if (p == NULL && pk_pending_count >= PK_PENDING_MAX)
	{
		pk_pending_empty();
		(void) pk_pending_find(key, &slot);
	}

	LWLockAcquire(pk_state->lock, LW_SHARED);
	generation = pg_atomic_read_u32(&pk_state->generation);
	entry = hash_search(pk_hash, key, HASH_FIND, NULL);
	if (entry != NULL)
		text = pk_pending_copy_text(entry, &text_len);
	LWLockRelease(pk_state->lock);

	if (entry == NULL)
	{
		const char *raw;

		/* normalize outside the lock */
		if (jstate != NULL)
			raw = normalized = pk_normalize_query(jstate, source, location, &len);
		else
			raw = CleanQuerytext(source ? source : "", &location, &len);

		LWLockAcquire(pk_state->lock, LW_EXCLUSIVE);
		generation = pg_atomic_read_u32(&pk_state->generation);
		entry = pk_stats_insert_locked(key, raw, len, now);
		if (entry != NULL)
			text = pk_pending_copy_text(entry, &text_len);
		LWLockRelease(pk_state->lock);
		if (normalized != NULL)
			pfree(normalized);
	}
	if (entry == NULL || text == NULL)
		return NULL;

	if (p == NULL)
	{
		p = MemoryContextAllocExtended(pk_pending_cxt, sizeof(PkPending), MCXT_ALLOC_NO_OOM);
		if (p == NULL)
		{
			pfree(text);
			return NULL;
		}
		p->key = *key;
		pk_pending[slot] = p;
		pk_pending_count++;
	}
	else
	{
		if (p->delta.calls > 0)
			pk_pending_dirty--;
		pfree(p->query);
	}
	memset(&p->delta, 0, sizeof(PkCounters));
	p->generation = generation;
	p->query = text;
	p->query_len = text_len;
	return p;
}

/* This backend's pending entry of a key, attached to its shared entry; NULL if none can be */
static inline PkPending *
pk_pending_get(const PkStatsKey *key, const JumbleState *jstate, const char *source,
			   int location, int len, TimestampTz now)
{
	uint32		slot = 0;
	PkPending  *p = pk_pending_find(key, &slot);

	if (p != NULL && p->generation == pg_atomic_read_u32(&pk_state->generation))
		return p;
	return pk_pending_attach(p, slot, key, jstate, source, location, len, now);
}

/*
 * Make the entry of a statement at parse time, when its constants are known
 * and the text can be normalized.  Does nothing if this backend has it.
 */
void
pk_stats_ensure_entry(const PkStatsKey *key, const JumbleState *jstate,
					  const char *source, int location, int len)
{
	if (pk_pending_get(key, jstate, source, location, len, GetCurrentStatementStartTimestamp()) == NULL)
		pk_stats_count_dropped(1);
}

/*
 * Record one execution in this backend's pending figures; an entry missing
 * from the shared table is made with the statement's raw text (its
 * constants are no longer known).  Flushes when the interval has passed,
 * else makes sure the idle timer will.
 */
void
pk_stats_record(const PkStatsKey *key, const char *source, int location,
				int len, const PkExecution *exec)
{
	PkPending  *p = pk_pending_get(key, NULL, source, location, len, exec->end_time);

	if (p == NULL)
	{
		pk_stats_count_dropped(1);
		return;
	}
	if (p->delta.calls == 0)
		pk_pending_dirty++;
	pk_counters_add(&p->delta, exec);

	if (exec->end_time - pk_last_flush >= (int64) pk_stats_flush_interval * 1000)
		pk_stats_flush_all(exec->end_time);
	else if (!pk_idle_timer_armed && pk_idle_timeout != MAX_TIMEOUTS)
	{
		pk_idle_timer_armed = true;
		enable_timeout_after(pk_idle_timeout, Max(pk_stats_flush_interval, 1));
	}
}
