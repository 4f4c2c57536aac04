/*-------------------------------------------------------------------------
 *
 * stats.h
 *	  Shared-memory table of per-statement statistics.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PERFKIT_STATS_H
#define PERFKIT_STATS_H

#include "core/perfkit.h"

#include "storage/lwlock.h"
#include "storage/spin.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"

#include "stats/histogram.h"

/* Identity of a statistics entry; zero-filled before use (it is hashed as bytes) */
typedef struct PkStatsKey
{
	Oid			userid;			/* role that ran the statement */
	Oid			dbid;			/* database it ran in */
	uint64		queryid;		/* core query identifier (fingerprint) */
	bool		toplevel;		/* sent by the client, not run by a function */
} PkStatsKey;

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
} PkSharedState;

/* What one execution contributes to its entry */
typedef struct PkExecution
{
	double		duration_ms;
	int64		rows;
	int64		shared_blks_hit;
	int64		shared_blks_read;
	int64		temp_blks_written;
	bool		slow;
	TimestampTz end_time;		/* when the execution ended */
} PkExecution;

extern PkSharedState *pk_state;
extern HTAB *pk_hash;

extern Size pk_stats_shmem_size(void);
extern bool pk_stats_shmem_init(void);
extern void pk_stats_require_loaded(void);
extern void pk_stats_make_key(PkStatsKey *key, uint64 queryid, bool toplevel);
extern void pk_stats_ensure_entry(const PkStatsKey *key, const JumbleState *jstate,
								  const char *source, int location, int len);
extern void pk_stats_record(const PkStatsKey *key, const char *source,
							int location, int len, const PkExecution *exec);
extern PkStatsEntry *pk_stats_insert_locked(const PkStatsKey *key, const char *query,
											int query_len, TimestampTz first_seen);
extern void pk_stats_reset(void);

/* statsfile.c */
extern void pk_statsfile_load(void);
extern void pk_statsfile_save(int code, Datum arg);

#endif							/* PERFKIT_STATS_H */
