/*-------------------------------------------------------------------------
 *
 * nplusone.h
 *	  N+1 loop detection: per-backend window, shared table of patterns.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PERFKIT_NPLUSONE_H
#define PERFKIT_NPLUSONE_H

#include "core/core.h"

#include "executor/execdesc.h"
#include "nodes/parsenodes.h"
#include "parser/parse_node.h"
#include "storage/lwlock.h"
#include "storage/spin.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"

/* Settings, defined in nplusone.c */
extern bool pk_nplusone_enabled;
extern int	pk_nplusone_min_repeats;
extern int	pk_nplusone_max_gap;
extern int	pk_nplusone_log_level;
extern int	pk_nplusone_max_patterns;

extern void pk_nplusone_init(void);
extern Size pk_nplusone_shmem_size(void);
extern void pk_nplusone_shmem_init(void);
extern void pk_nplusone_note_parse(ParseState *pstate, Query *query, PkHookJumbleState *jstate,
								   int level);
extern void pk_nplusone_note_toplevel(uint64 queryid);
extern void pk_nplusone_quiet(void);
extern DestReceiver *pk_nplusone_tap(QueryDesc *queryDesc, uint64 queryid);
extern void pk_nplusone_statement_end(QueryDesc *queryDesc, uint64 queryid,
								   double duration_ms, int level, TimestampTz now);
extern void pk_nplusone_reset(void);

#endif							/* PERFKIT_NPLUSONE_H */
