/*-------------------------------------------------------------------------
 *
 * core.h
 *	  What every perfkit capability shares: the version shims (compat.h),
 *	  the tracking scope, the statement nesting level, the LWLock slots,
 *	  the not-preloaded error and running as another role.  The plan-tree
 *	  walk is in plan_walk.h.
 *
 * Capabilities (stats, slowlog, nplusone, advisor, indexbuild, redis)
 * include this header and their own; they never reach into another
 * capability's globals or locks.  src/perfkit.c and src/hooks.c sit above
 * all of them: they wire each capability into the server.
 *
 * Locking: nothing here is shared between backends.  The settings and the
 * nesting level are per-backend variables read without locks; the LWLocks
 * handed out by pk_lwlock() belong to the capability named by the slot,
 * whose header states what each protects.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PERFKIT_CORE_H
#define PERFKIT_CORE_H

#include "postgres.h"

#include "access/parallel.h"
#include "storage/lwlock.h"

#include "core/compat.h"

/* Values of perfkit.track */
typedef enum PkTrackLevel
{
	PK_TRACK_NONE,				/* track nothing */
	PK_TRACK_TOP,				/* only statements sent by the client */
	PK_TRACK_ALL				/* also statements run inside functions */
} PkTrackLevel;

/*
 * The slots of perfkit's LWLock tranche, one per capability that keeps a
 * shared hash or ring.  The others use spinlocks only.
 */
typedef enum PkLockSlot
{
	PK_LOCK_STATS,				/* statistics table (stats.h) */
	PK_LOCK_SLOWLOG,			/* slow-query ring (slowlog.h) */
	PK_LOCK_NPLUSONE,			/* N+1 patterns (nplusone.h) */
	PK_LOCK_ADVISOR,			/* index advisor's statements (advisor.h) */
	PK_LOCK_COUNT				/* number of slots requested */
} PkLockSlot;

/* An identity saved by pk_run_as_begin(), restored by pk_run_as_end() */
typedef struct PkSavedIdentity
{
	Oid			userid;			/* current user before */
	int			sec_context;	/* security context before */
	int			guc_nestlevel;	/* GUC nest level opened, 0 if none */
} PkSavedIdentity;

/* Settings of the tracking scope (perfkit.enabled, perfkit.track) */
extern bool pk_enabled;
extern int	pk_track;

/* True once this process has attached perfkit's shared memory (set by src/perfkit.c) */
extern bool pk_shmem_attached;

/* Current executor/utility nesting depth of this backend, kept by src/hooks.c */
extern int	pk_nesting_level;

/* True when statements at the given nesting level are to be recorded */
#define pk_tracking(level) \
	(pk_enabled && !IsParallelWorker() && \
	 (pk_track == PK_TRACK_ALL || (pk_track == PK_TRACK_TOP && (level) == 0)))

extern void pk_core_define_settings(void);
extern LWLock *pk_lwlock(PkLockSlot slot);
extern void pk_require_preloaded(bool attached);
extern void pk_run_as_begin(Oid role, int sec_flags, bool guc_level, PkSavedIdentity *saved);
extern void pk_run_as_end(const PkSavedIdentity *saved);

#endif							/* PERFKIT_CORE_H */
