/*-------------------------------------------------------------------------
 *
 * advisor.h
 *	  The index advisor: indexes recommended from the observed workload and
 *	  validated by the planner.
 *
 * Data flow: ExecutorEnd of a sampled statement walks its plan state and
 * keeps the predicates its scans filtered on, its join clauses and the
 * sort keys above its scans, with one representative text (constants and
 * bind parameters included) per fingerprint, in a bounded shared table.
 * perfkit.index_recommendations reads that table, derives candidate
 * indexes, and chooses a set of them greedily by the workload's planned
 * cost with the set, plus the set's maintenance under the observed writes
 * and its size, planning the affected statements again with hypothetical
 * indexes injected; nothing is ever executed.
 *
 * Files: advisor_collect.c (sampling, collection, the shared table),
 * advisor_whatif.c (hypothetical indexes), advisor_candidates.c,
 * advisor_replay.c, advisor_choose.c and advisor.c (SQL functions).
 * The advisor reads calls through stats.h, and measured times and
 * written rows through the SQL view perfkit.statements, and nothing else
 * of another capability.
 *
 * Locking: the shared table has its LWLock (PK_LOCK_ADVISOR), taken only
 * by sampled statements and by the SQL functions; each entry has a
 * spinlock for its counters.  Unsampled statements touch no shared memory.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PERFKIT_ADVISOR_H
#define PERFKIT_ADVISOR_H

#include "core/core.h"

#include "executor/execdesc.h"
#include "nodes/plannodes.h"

/* advisor_collect.c: set-up, called from src/perfkit.c */
extern void pk_advisor_init(void);
extern Size pk_advisor_shmem_size(void);
extern void pk_advisor_shmem_init(void);

/* advisor_collect.c: statement side, called from src/hooks.c */
extern void pk_advisor_executor_start(QueryDesc *queryDesc, int eflags, int level);
extern void pk_advisor_executor_end(QueryDesc *queryDesc, int level);

#endif							/* PERFKIT_ADVISOR_H */
