/*-------------------------------------------------------------------------
 *
 * stats.h
 *	  Per-statement statistics: a shared-memory table (stats.c) fed by each
 *	  backend's pending figures (stats_pending.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PERFKIT_STATS_H
#define PERFKIT_STATS_H

#include "core/core.h"

#include "miscadmin.h"
#include "utils/timestamp.h"


/* Identity of a statistics entry; zero-filled before use (it is hashed as bytes) */
typedef struct PkStatsKey
{
	Oid			userid;			/* role that ran the statement */
	Oid			dbid;			/* database it ran in */
	uint64		queryid;		/* core query identifier (fingerprint) */
	bool		toplevel;		/* sent by the client, not run by a function */
} PkStatsKey;

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

/* Settings, defined in stats.c */
extern bool pk_track_utility;
extern bool pk_save;
extern int	pk_max_statements;
extern int	pk_max_query_length;
extern int	pk_stats_flush_interval;

extern void pk_stats_init(void);
extern Size pk_stats_shmem_size(void);
extern bool pk_stats_shmem_init(void);
extern void pk_stats_require_loaded(void);
/* Build the key of the current role and database for a query id */
static inline void
pk_stats_make_key(PkStatsKey *key, uint64 queryid, bool toplevel)
{
	memset(key, 0, sizeof(PkStatsKey));
	key->userid = GetUserId();
	key->dbid = MyDatabaseId;
	key->queryid = queryid;
	key->toplevel = toplevel;
}

extern void pk_stats_ensure_entry(const PkStatsKey *key, const JumbleState *jstate,
								  const char *source, int location, int len);
extern void pk_stats_record(const PkStatsKey *key, const char *source,
							int location, int len, const PkExecution *exec);
extern void pk_stats_flush(void);
extern void pk_stats_reset(void);
extern int64 pk_stats_calls(Oid userid, Oid dbid, uint64 queryid);

/* stats_file.c */
extern void pk_statsfile_load(void);
extern void pk_statsfile_save(int code, Datum arg);

#endif							/* PERFKIT_STATS_H */
