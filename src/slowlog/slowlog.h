/*-------------------------------------------------------------------------
 *
 * slowlog.h
 *	  Capture of slow executions with parameters and plans.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PERFKIT_SLOWLOG_H
#define PERFKIT_SLOWLOG_H

#include "core/perfkit.h"

#include "executor/execdesc.h"
#include "storage/lwlock.h"
#include "utils/timestamp.h"

/* Text bytes per captured execution (query, parameters and plan together) */
#define PK_SLOW_TEXT_BYTES	32768
/* ... of which the query text and the parameters take at most */
#define PK_SLOW_QUERY_MAX	8192
#define PK_SLOW_PARAMS_MAX	4096

/* One captured slow execution, in the shared ring */
typedef struct PkSlowEntry
{
	TimestampTz ts;				/* when the execution ended */
	int			pid;			/* backend process id */
	Oid			userid;			/* role */
	Oid			dbid;			/* database */
	uint64		queryid;		/* fingerprint */
	int			level;			/* nesting level, 0 = sent by the client */
	double		duration_ms;	/* execution time */
	int64		rows;			/* rows returned or affected */
	char		application_name[NAMEDATALEN];	/* client's application_name */
	int			query_len;		/* bytes of query at text[0] */
	int			params_len;		/* bytes of params after it, -1 = none */
	int			plan_len;		/* bytes of plan after them */
	char		text[PK_SLOW_TEXT_BYTES];	/* query, params, plan, each NUL-ended */
} PkSlowEntry;

/* The ring of the latest perfkit.slow_max slow executions */
typedef struct PkSlowRing
{
	LWLock	   *lock;			/* protects everything below */
	uint64		captured;		/* executions captured since reset; next slot = captured % size */
	PkSlowEntry entries[FLEXIBLE_ARRAY_MEMBER];
} PkSlowRing;

extern PkSlowRing *pk_slow_ring;

/* Settings, defined in perfkit.c */
extern int	pk_slow_threshold;
extern int	pk_slow_max;
extern bool pk_slow_log;
extern bool pk_slow_analyze;
extern int	pk_slow_params_max_length;

/* True when an execution of this duration counts as slow */
#define pk_is_slow(ms) (pk_slow_threshold >= 0 && (ms) >= pk_slow_threshold)

extern Size pk_slowlog_shmem_size(void);
extern void pk_slowlog_shmem_init(void);
extern void pk_slowlog_capture(QueryDesc *queryDesc, uint64 queryid,
							   double duration_ms, int64 rows);
extern void pk_slowlog_reset(void);

#endif							/* PERFKIT_SLOWLOG_H */
