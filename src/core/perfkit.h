/*-------------------------------------------------------------------------
 *
 * perfkit.h
 *	  Declarations shared by every perfkit subsystem: settings, the
 *	  statement nesting level, and the version compatibility shims.
 *
 * Each subsystem has its own header (stats.h, histogram.h, normalize.h);
 * this one holds only what all of them need.  Settings are plain C
 * variables registered as GUCs in perfkit.c; they are read without locks
 * because every backend has its own copy.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PERFKIT_H
#define PERFKIT_H

#include "postgres.h"

#if PG_VERSION_NUM < 140000
#error "perfkit requires PostgreSQL 14 or later (it relies on the core query identifier)"
#endif

#if PG_VERSION_NUM >= 160000
#include "nodes/queryjumble.h"
#else
#include "utils/queryjumble.h"
#endif

#if PG_VERSION_NUM < 150000
#define MarkGUCPrefixReserved(prefix) EmitWarningsOnPlaceholders(prefix)
#endif

/* Values of perfkit.track */
typedef enum PkTrackLevel
{
	PK_TRACK_NONE,				/* track nothing */
	PK_TRACK_TOP,				/* only statements sent by the client */
	PK_TRACK_ALL				/* also statements run inside functions */
} PkTrackLevel;

/* Settings (GUCs), defined in perfkit.c */
extern bool pk_enabled;
extern int	pk_track;
extern bool pk_track_utility;
extern bool pk_save;
extern int	pk_max_statements;
extern int	pk_max_query_length;

/* Current executor/utility nesting depth of this backend, kept by hooks.c */
extern int	pk_nesting_level;

/* True when statements at the given nesting level are to be recorded */
#define pk_tracking(level) \
	(pk_enabled && !IsParallelWorker() && \
	 (pk_track == PK_TRACK_ALL || (pk_track == PK_TRACK_TOP && (level) == 0)))

/* Installs the executor and utility hooks (hooks.c) */
extern void pk_install_executor_hooks(void);

#endif							/* PERFKIT_H */
