/*-------------------------------------------------------------------------
 *
 * stats.c
 *	  Shared-memory hash table of per-statement statistics.
 *
 * One entry per (role, database, query id, top level) holds counters, a
 * latency histogram and the normalized statement text, all inside the
 * entry: nothing here ever does I/O.  The table has a fixed capacity,
 * perfkit.max_statements, sized at server start.
 *
 * Statements do not write here one by one: each backend adds its
 * executions to its own pending figures (stats_pending.c) and flushes them
 * into this table at most once per perfkit.stats_flush_interval.
 *
 * Locking:
 *	- pk_state->lock (an LWLock) protects the table's structure.  A flush
 *	  takes it in SHARED mode to add to existing entries; it is taken
 *	  EXCLUSIVE to create an entry, to evict and to reset.
 *	- Each entry's counters are protected by the entry's own spinlock, held
 *	  while one backend's pending figures are added and while a reader
 *	  copies them.
 *	- The query text of an entry is written once, when the entry is created
 *	  under the exclusive lock, and is read under the shared lock.
 *	- pk_state->mutex (a spinlock) protects the table-wide counters that
 *	  are updated under the shared lock (dropped).
 *	- pk_state->generation is bumped by a reset under the exclusive lock;
 *	  backends read it without a lock to notice that their pending figures
 *	  belong to before the reset.
 *
 * Eviction: when the table is full and a new statement arrives, the least
 * used 5% of entries (at least 10) are removed in one pass.  "Usage" is the
 * number of calls, decayed by 1% at each eviction pass, so entries that
 * were busy long ago eventually make room; entries created at parse time
 * that never completed an execution decay much faster.  New entries start
 * at the median usage so they are not the next victims.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/parallel.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/shmem.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "core/compat.h"
#include "import/normalize.h"
#include "stats/stats_internal.h"

#define PK_EVICT_FRACTION	0.05	/* share of entries removed per pass */
#define PK_EVICT_MIN		10		/* at least this many per pass */
#define PK_USAGE_DECAY		0.99	/* usage kept per pass by used entries */
#define PK_UNUSED_DECAY		0.50	/* ... by entries that never completed */
#define PK_USAGE_INIT		1.0		/* usage of the very first entries */

/* Settings */
bool		pk_track_utility = true;
bool		pk_save = true;
int			pk_max_statements = 5000;
int			pk_max_query_length = 2048;
int			pk_stats_flush_interval = 1000;

PkSharedState *pk_state = NULL;
HTAB	   *pk_hash = NULL;

/* Register the statistics settings (from _PG_init) */
void
pk_stats_init(void)
{
	DefineCustomBoolVariable("perfkit.track_utility",
							 "Records utility statements (DDL, COPY, VACUUM, ...) too.",
							 NULL, &pk_track_utility, true,
							 PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomBoolVariable("perfkit.save",
							 "Saves the statistics at clean shutdown and reloads them at start.",
							 NULL, &pk_save, true,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("perfkit.max_statements",
							"Maximum number of statements tracked; the least used are evicted beyond it.",
							NULL, &pk_max_statements, 5000, 100, INT_MAX / 2,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("perfkit.max_query_length",
							"Bytes of normalized statement text kept per statement; longer texts are truncated.",
							NULL, &pk_max_query_length, 2048, 64, 1024 * 1024,
							PGC_POSTMASTER, GUC_UNIT_BYTE, NULL, NULL, NULL);
	DefineCustomIntVariable("perfkit.stats_flush_interval",
							"Longest time a backend keeps statement figures to itself before adding them to the shared statistics.",
							"0 adds every execution at once.",
							&pk_stats_flush_interval, 1000, 0, 60000,
							PGC_SUSET, GUC_UNIT_MS, NULL, NULL, NULL);
}

/* Size of one hash entry, including the text buffer */
static Size
pk_entry_size(void)
{
	return MAXALIGN(offsetof(PkStatsEntry, query) + pk_max_query_length + 1);
}

/* Shared memory needed by the statistics table */
Size
pk_stats_shmem_size(void)
{
	return add_size(MAXALIGN(sizeof(PkSharedState)),
					hash_estimate_size(pk_max_statements, pk_entry_size()));
}

/*
 * Attach to (or create) the shared state and table; the caller holds
 * AddinShmemInitLock.  Returns true when they already existed.
 */
bool
pk_stats_shmem_init(void)
{
	HASHCTL		info;
	bool		found;

	pk_state = ShmemInitStruct("perfkit state", sizeof(PkSharedState), &found);
	if (!found)
	{
		pk_state->lock = pk_lwlock(PK_LOCK_STATS);
		SpinLockInit(&pk_state->mutex);
		pk_state->evictions = 0;
		pk_state->dropped = 0;
		pk_state->median_usage = PK_USAGE_INIT;
		pk_state->stats_reset = GetCurrentTimestamp();
		pg_atomic_init_u32(&pk_state->generation, 0);
	}

	memset(&info, 0, sizeof(info));
	info.keysize = sizeof(PkStatsKey);
	info.entrysize = pk_entry_size();
	pk_hash = pk_ShmemInitHash("perfkit statements",
							   pk_max_statements, pk_max_statements,
							   &info, HASH_ELEM | HASH_BLOBS);
	return found;
}

/* Raise a clear error when the library was not preloaded */
void
pk_stats_require_loaded(void)
{
	pk_require_preloaded(pk_state != NULL && pk_hash != NULL);
}

/* Calls of a statement of a role in a database, top level or not (0 if unknown) */
int64
pk_stats_calls(Oid userid, Oid dbid, uint64 queryid)
{
	int64		calls = 0;

	pk_stats_flush();
	for (int toplevel = 0; toplevel <= 1; toplevel++)
	{
		PkStatsKey	key;
		PkStatsEntry *e;

		memset(&key, 0, sizeof(key));
		key.userid = userid;
		key.dbid = dbid;
		key.queryid = queryid;
		key.toplevel = (toplevel == 1);
		LWLockAcquire(pk_state->lock, LW_SHARED);
		e = hash_search(pk_hash, &key, HASH_FIND, NULL);
		if (e != NULL)
		{
			SpinLockAcquire(&e->mutex);
			calls += e->counters.calls;
			SpinLockRelease(&e->mutex);
		}
		LWLockRelease(pk_state->lock);
	}
	return calls;
}

/* qsort comparator: entries by ascending usage */
static int
pk_compare_usage(const void *a, const void *b)
{
	double		ua = (*(PkStatsEntry *const *) a)->counters.usage;
	double		ub = (*(PkStatsEntry *const *) b)->counters.usage;

	return (ua > ub) - (ua < ub);
}

/*
 * Remove the least used entries; the caller holds the exclusive lock.
 * Gives up quietly when there is no memory for the sort.
 *
 * The three shared tables evict differently on purpose: statistics go in
 * batches of 5% by decayed usage (new statements arrive at statement rate,
 * so the exclusive lock must be rare, and busy-long-ago must fade); the
 * advisor drops its least sampled tenth (only sampled statements reach
 * it); N+1 forgets the single pattern seen longest ago (new patterns are
 * rare, and recency is what a developer looks at).
 */
static void
pk_stats_evict_locked(void)
{
	HASH_SEQ_STATUS hs;
	PkStatsEntry **entries;
	PkStatsEntry *entry;
	long		n = 0;
	long		victims;

	Assert(LWLockHeldByMeInMode(pk_state->lock, LW_EXCLUSIVE) || !IsUnderPostmaster);
	entries = palloc_extended(hash_get_num_entries(pk_hash) * sizeof(PkStatsEntry *),
							  MCXT_ALLOC_NO_OOM);
	if (entries == NULL)
		return;

	/* nobody else holds the lock: counters can be read without spinlocks */
	hash_seq_init(&hs, pk_hash);
	while ((entry = hash_seq_search(&hs)) != NULL)
	{
		entry->counters.usage *= entry->counters.calls > 0 ? PK_USAGE_DECAY : PK_UNUSED_DECAY;
		entries[n++] = entry;
	}
	if (n == 0)
	{
		pfree(entries);
		return;
	}
	qsort(entries, n, sizeof(PkStatsEntry *), pk_compare_usage);

	victims = Max(PK_EVICT_MIN, (long) (n * PK_EVICT_FRACTION));
	victims = Min(victims, n);
	pk_state->median_usage = entries[n / 2]->counters.usage;
	for (long i = 0; i < victims; i++)
		hash_search(pk_hash, &entries[i]->key, HASH_REMOVE, NULL);
	pfree(entries);

	SpinLockAcquire(&pk_state->mutex);
	pk_state->evictions += victims;
	SpinLockRelease(&pk_state->mutex);
}

/*
 * Find or create the entry of a key (first seen at first_seen); the caller
 * holds the exclusive lock.
 * The text is truncated (at a character boundary) to max_query_length.
 * Returns NULL when no entry could be made.
 */
PkStatsEntry *
pk_stats_insert_locked(const PkStatsKey *key, const char *query, int query_len,
					   TimestampTz first_seen)
{
	PkStatsEntry *entry;
	bool		found;

	/* the postmaster loading the saved file is alone and takes no lock */
	Assert(!IsUnderPostmaster || LWLockHeldByMeInMode(pk_state->lock, LW_EXCLUSIVE));
	Assert(query_len >= 0);

	if (hash_get_num_entries(pk_hash) >= pk_max_statements)
	{
		entry = hash_search(pk_hash, key, HASH_FIND, NULL);
		if (entry != NULL)
			return entry;
		pk_stats_evict_locked();
		if (hash_get_num_entries(pk_hash) >= pk_max_statements)
			return NULL;
	}

	entry = hash_search(pk_hash, key, HASH_ENTER_NULL, &found);
	if (entry == NULL || found)
		return entry;

	SpinLockInit(&entry->mutex);
	memset(&entry->counters, 0, sizeof(PkCounters));
	entry->counters.usage = pk_state->median_usage;
	entry->counters.first_seen = first_seen;
	if (query_len > pk_max_query_length)
		query_len = pg_mbcliplen(query, query_len, pk_max_query_length);
	memcpy(entry->query, query, query_len);
	entry->query[query_len] = '\0';
	entry->query_len = query_len;
	return entry;
}

/* Count executions that could not be recorded */
void
pk_stats_count_dropped(int64 executions)
{
	SpinLockAcquire(&pk_state->mutex);
	pk_state->dropped += executions;
	SpinLockRelease(&pk_state->mutex);
}

/* Remove every entry and restart the table-wide counters */
void
pk_stats_reset(void)
{
	HASH_SEQ_STATUS hs;
	PkStatsEntry *entry;

	LWLockAcquire(pk_state->lock, LW_EXCLUSIVE);
	hash_seq_init(&hs, pk_hash);
	while ((entry = hash_seq_search(&hs)) != NULL)
		hash_search(pk_hash, &entry->key, HASH_REMOVE, NULL);

	SpinLockAcquire(&pk_state->mutex);
	pk_state->evictions = 0;
	pk_state->dropped = 0;
	pk_state->median_usage = PK_USAGE_INIT;
	pk_state->stats_reset = GetCurrentTimestamp();
	SpinLockRelease(&pk_state->mutex);
	/* every backend's pending figures now belong to the past: they are dropped */
	pg_atomic_fetch_add_u32(&pk_state->generation, 1);
	LWLockRelease(pk_state->lock);
}
