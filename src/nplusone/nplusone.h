/*-------------------------------------------------------------------------
 *
 * nplusone.h
 *	  N+1 loop detection: per-backend window, shared table of patterns.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PERFKIT_NPLUSONE_H
#define PERFKIT_NPLUSONE_H

#include "core/perfkit.h"

#include "executor/execdesc.h"
#include "nodes/parsenodes.h"
#include "storage/lwlock.h"
#include "storage/spin.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"

/* Identity of one pattern: who looped, and which statement after which */
typedef struct PkNplusKey
{
	Oid			userid;			/* role */
	Oid			dbid;			/* database */
	uint64		parent_queryid; /* the list statement (0 for repeated identical statements without one) */
	uint64		queryid;		/* the repeated statement */
	uint32		appname_hash;	/* hash of application_name */
	bool		confirmed;		/* parameters came from the parent's rows */
} PkNplusKey;

/* One pattern in shared memory; figures protected by mutex */
typedef struct PkNplusEntry
{
	PkNplusKey	key;			/* hash key, must be first */
	slock_t		mutex;			/* protects the fields below */
	char		application_name[NAMEDATALEN];	/* client's application_name */
	int64		detections;		/* loops seen */
	int32		last_repeats;	/* executions in the latest loop */
	int32		max_repeats;	/* executions in the longest loop */
	int64		total_repeats;	/* executions in all loops */
	double		total_time;		/* ms spent in those executions */
	TimestampTz first_seen;		/* first detection */
	TimestampTz last_seen;		/* latest execution in a loop */
	char		sample_params[256]; /* parameters of one execution, e.g. "$1 = '42'" */
} PkNplusEntry;

/* Table-wide state */
typedef struct PkNplusShared
{
	LWLock	   *lock;			/* protects the hash table's structure */
	slock_t		mutex;			/* protects dropped */
	int64		dropped;		/* patterns not recorded: table full */
} PkNplusShared;

extern PkNplusShared *pk_nplus_state;
extern HTAB *pk_nplus_hash;

/* Settings, defined in perfkit.c */
extern bool pk_nplus_enabled;
extern int	pk_nplus_min_repeats;
extern int	pk_nplus_max_gap;
extern int	pk_nplus_log_level;
extern int	pk_nplus_max_patterns;

extern Size pk_nplus_shmem_size(void);
extern void pk_nplus_shmem_init(void);
extern void pk_nplus_note_parse(Query *query, int level);
extern void pk_nplus_note_toplevel(uint64 queryid);
extern void pk_nplus_quiet(void);
extern DestReceiver *pk_nplus_tap(QueryDesc *queryDesc, uint64 queryid);
extern void pk_nplus_statement_end(QueryDesc *queryDesc, uint64 queryid,
								   double duration_ms, int level, TimestampTz now);
extern void pk_nplus_reset(void);

#endif							/* PERFKIT_NPLUSONE_H */
