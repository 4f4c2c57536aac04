/*-------------------------------------------------------------------------
 *
 * stats_internal.h
 *	  The statistics table's shared structures, for the files of src/stats
 *	  only.  Other capabilities go through stats.h; the locking rules are in
 *	  stats.c's header.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PERFKIT_STATS_INTERNAL_H
#define PERFKIT_STATS_INTERNAL_H

#include "port/atomics.h"
#include "storage/lwlock.h"
#include "storage/spin.h"
#include "utils/hsearch.h"

#include "stats/histogram.h"
#include "stats/stats.h"

/* Accumulated figures of one entry; protected by the entry's spinlock */
typedef struct PkCounters
{
	int64		calls;			/* completed executions */
	double		total_time;		/* sum of execution times, ms */
	double		min_time;		/* fastest execution, ms */
	double		max_time;		/* slowest execution, ms */
	double		mean_time;		/* running mean, ms */
	double		sum_var_time;	/* sum of squared deviations (Welford) */
	int64		rows;			/* rows returned or affected */
	int64		shared_blks_hit;	/* shared buffer hits */
	int64		shared_blks_read;	/* shared blocks read */
	int64		temp_blks_written;	/* temp blocks written */
	int64		slow_calls;		/* executions at or above the slow threshold */
	double		usage;			/* eviction priority: calls, decayed */
	TimestampTz first_seen;		/* entry creation */
	TimestampTz last_seen;		/* end of the most recent execution */
	PkHistogram hist;			/* latency distribution */
} PkCounters;

/*
 * One entry of the shared hash table.  The entry size is fixed at startup:
 * the query text buffer holds perfkit.max_query_length bytes plus a NUL.
 */
typedef struct PkStatsEntry
{
	PkStatsKey	key;			/* hash key, must be first */
	slock_t		mutex;			/* protects counters */
	PkCounters	counters;		/* the statistics */
	int			query_len;		/* bytes of text in query[], -1 if none yet */
	char		query[FLEXIBLE_ARRAY_MEMBER];	/* normalized text, NUL-terminated */
} PkStatsEntry;

/* Table-wide state, in shared memory */
typedef struct PkSharedState
{
	LWLock	   *lock;			/* protects the hash table's structure */
	slock_t		mutex;			/* protects the fields below */
	int64		evictions;		/* entries evicted since reset */
	int64		dropped;		/* executions not recorded (no entry could be made) */
	double		median_usage;	/* usage given to new entries */
	TimestampTz stats_reset;	/* last reset of all statistics */
	pg_atomic_uint32 generation;	/* bumped by every reset, under the exclusive lock */
} PkSharedState;

extern PkSharedState *pk_state;
extern HTAB *pk_hash;

extern PkStatsEntry *pk_stats_insert_locked(const PkStatsKey *key, const char *query,
											int query_len, TimestampTz first_seen);
extern void pk_stats_count_dropped(int64 executions);

#endif							/* PERFKIT_STATS_INTERNAL_H */
