/*-------------------------------------------------------------------------
 *
 * core.c
 *	  The tracking scope settings, the nesting level, the LWLock slots and
 *	  the not-preloaded error shared by every capability (see core.h).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/guc.h"

#include "core/core.h"

/* Settings */
bool		pk_enabled = true;
int			pk_track = PK_TRACK_TOP;

int			pk_nesting_level = 0;
bool		pk_shmem_attached = false;

static const struct config_enum_entry pk_track_options[] = {
	{"none", PK_TRACK_NONE, false},
	{"top", PK_TRACK_TOP, false},
	{"all", PK_TRACK_ALL, false},
	{NULL, 0, false}
};

/* Register perfkit.enabled and perfkit.track */
void
pk_core_define_settings(void)
{
	DefineCustomBoolVariable("perfkit.enabled",
							 "Records statement statistics when on.",
							 NULL, &pk_enabled, true,
							 PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomEnumVariable("perfkit.track",
							 "Selects which statements are recorded: top (sent by clients), all (also inside functions) or none.",
							 NULL, &pk_track, PK_TRACK_TOP, pk_track_options,
							 PGC_SUSET, 0, NULL, NULL, NULL);
}

/* The LWLock of a slot of perfkit's tranche (only after shared memory is attached) */
LWLock *
pk_lwlock(PkLockSlot slot)
{
	Assert(slot >= 0 && slot < PK_LOCK_COUNT);
	return &(GetNamedLWLockTranche("perfkit"))[slot].lock;
}

/* Raise the not-preloaded error unless the caller's shared memory is attached */
void
pk_require_preloaded(bool attached)
{
	if (!attached)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("perfkit must be loaded via \"shared_preload_libraries\""),
				 errhint("Add perfkit to \"shared_preload_libraries\" in postgresql.conf and restart the server.")));
}

/*
 * Run as role, adding sec_flags (SECURITY_RESTRICTED_OPERATION, ...) to the
 * security context, optionally in a GUC nest level of its own so that
 * settings changed meanwhile are reverted, as DefineIndex runs index
 * expressions.  An error restores all this through transaction abort.
 */
void
pk_run_as_begin(Oid role, int sec_flags, bool guc_level, PkSavedIdentity *saved)
{
	GetUserIdAndSecContext(&saved->userid, &saved->sec_context);
	saved->guc_nestlevel = guc_level ? NewGUCNestLevel() : 0;
	SetUserIdAndSecContext(role, saved->sec_context | sec_flags);
}

/* Back to the identity and settings saved by pk_run_as_begin() */
void
pk_run_as_end(const PkSavedIdentity *saved)
{
	SetUserIdAndSecContext(saved->userid, saved->sec_context);
	if (saved->guc_nestlevel > 0)
		AtEOXact_GUC(false, saved->guc_nestlevel);
}
