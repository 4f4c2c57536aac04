/*-------------------------------------------------------------------------
 *
 * slowlog.h
 *	  Capture of slow executions with parameters and plans.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PERFKIT_SLOWLOG_H
#define PERFKIT_SLOWLOG_H

#include "core/core.h"

#include "executor/execdesc.h"
#include "storage/lwlock.h"
#include "utils/timestamp.h"

/* Text bytes per captured execution (query, parameters and plan together) */
#define PK_SLOW_TEXT_BYTES	32768
/* ... of which the query text and the parameters take at most */
#define PK_SLOW_QUERY_MAX	8192
#define PK_SLOW_PARAMS_MAX	4096

/* Settings, defined in slowlog.c */
extern int	pk_slow_threshold;
extern int	pk_slow_max;
extern bool pk_slow_log;
extern bool pk_slow_analyze;
extern int	pk_slow_params_max_length;

/* True when an execution of this duration counts as slow */
#define pk_is_slow(ms) (pk_slow_threshold >= 0 && (ms) >= pk_slow_threshold)

extern void pk_slowlog_init(void);
extern Size pk_slowlog_shmem_size(void);
extern void pk_slowlog_shmem_init(void);
extern void pk_slowlog_capture(QueryDesc *queryDesc, uint64 queryid,
							   double duration_ms, int64 rows);
extern void pk_slowlog_reset(void);

#endif							/* PERFKIT_SLOWLOG_H */
