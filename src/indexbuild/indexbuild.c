/*-------------------------------------------------------------------------
 *
 * indexbuild.c
 *	  Concurrent index builds requested from SQL: settings, shared memory,
 *	  the wake-up at commit, the trusted requests table and the switch to
 *	  its owner.
 *
 * Locking: PkIbShared and its per-database slots are protected by a single
 * spinlock, held only to read or write a few fields (never across a system
 * call or an allocation).  Writers are the requesting backends (wanted,
 * cancel_id, cancel_signalling), the launcher (launch_pending, free slots)
 * and the database's builder (worker_pid, running_id, retry_at).  A
 * canceller decides to signal the builder under the spinlock, while
 * running_id is the build it cancels, and counts itself in
 * cancel_signalling until its kill() has returned; the builder waits for
 * that count to drop to zero whenever a statement ends, so a SIGINT meant
 * for one build never reaches the next one (indexbuild_builder.c), and the
 * launcher does not free a slot while the count is nonzero.  Row-level
 * state lives in the table and follows ordinary transactional rules.
 *
 * The design in full: docs/design.md, "Index build requests".
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "storage/lmgr.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "indexbuild/indexbuild_internal.h"

/* Settings */
int			pk_ib_lock_timeout = 300000;
int			pk_ib_statement_timeout = 0;
int			pk_ib_max_attempts = 3;
int			pk_ib_retry_delay = 60000;
int			pk_ib_max_workers = 2;

PkIbShared *pk_ib = NULL;

/* This backend's transaction requested a build: wake the builder at commit */
static bool pk_ib_wake_at_commit = false;
static bool pk_ib_callback_registered = false;

/* Register the perfkit.index_build_* settings */
static void
pk_indexbuild_define_settings(void)
{
	DefineCustomIntVariable("perfkit.index_build_lock_timeout",
							"Lock timeout of background index builds, which also bounds their waits for older transactions; 0 waits forever.",
							NULL, &pk_ib_lock_timeout, 300000, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("perfkit.index_build_statement_timeout",
							"Time limit of each background index build statement; 0 means no limit.",
							NULL, &pk_ib_statement_timeout, 0, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("perfkit.index_build_max_attempts",
							"Attempts of an index build before it is marked failed; only lock timeouts, deadlocks and interruptions are retried.",
							NULL, &pk_ib_max_attempts, 3, 1, 100,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("perfkit.index_build_retry_delay",
							"Delay before an index build is retried; it doubles with each further attempt.",
							NULL, &pk_ib_retry_delay, 60000, 0, 86400000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("perfkit.index_build_max_workers",
							"Databases whose index builds run at the same time, one background worker each.",
							NULL, &pk_ib_max_workers, 2, 1, PK_IB_MAX_DATABASES,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
}

/* Shared memory needed by the index-build state */
Size
pk_indexbuild_shmem_size(void)
{
	return MAXALIGN(sizeof(PkIbShared));
}

/* Module load: the settings and the launcher */
void
pk_indexbuild_init(void)
{
	pk_indexbuild_define_settings();
	pk_indexbuild_register_workers();
}

/* Attach to (or create) the shared state; the caller holds AddinShmemInitLock */
void
pk_indexbuild_shmem_init(void)
{
	bool		found;

	pk_ib = ShmemInitStruct("perfkit index builds", sizeof(PkIbShared), &found);
	if (!found)
	{
		memset(pk_ib, 0, sizeof(PkIbShared));
		SpinLockInit(&pk_ib->mutex);
	}
}

/* Raise the usual error when perfkit was not preloaded */
void
pk_ib_require_loaded(void)
{
	pk_require_preloaded(pk_ib != NULL);
}

/*
 * The slot of a database, or with create a new one; NULL when absent (or
 * all slots are taken).  The caller holds pk_ib->mutex.
 */
PkIbDatabase *
pk_ib_slot_locked(Oid dboid, bool create)
{
	PkIbDatabase *free_slot = NULL;

	for (int i = 0; i < PK_IB_MAX_DATABASES; i++)
	{
		PkIbDatabase *slot = &pk_ib->dbs[i];

		if (slot->dboid == dboid)
			return slot;
		if (free_slot == NULL && slot->dboid == InvalidOid)
			free_slot = slot;
	}
	if (!create || free_slot == NULL)
		return NULL;
	memset(free_slot, 0, sizeof(PkIbDatabase));
	free_slot->dboid = dboid;
	return free_slot;
}

/* Tell the launcher (and a running builder) that a database has work */
void
pk_ib_wake_database(Oid dboid)
{
	PkIbDatabase *slot;
	Latch	   *worker_latch = NULL;
	Latch	   *launcher_latch;

	if (pk_ib == NULL)
		return;
	SpinLockAcquire(&pk_ib->mutex);
	slot = pk_ib_slot_locked(dboid, true);
	if (slot != NULL)
	{
		slot->wanted = true;
		if (slot->worker_pid != 0)
			worker_latch = slot->worker_latch;
	}
	else
		pk_ib->rescan = true;
	launcher_latch = pk_ib->launcher_latch;
	SpinLockRelease(&pk_ib->mutex);

	if (worker_latch != NULL)
		SetLatch(worker_latch);
	if (launcher_latch != NULL)
		SetLatch(launcher_latch);
}

/* Transaction callback: wake the builder when a requesting transaction commits */
static void
pk_ib_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			if (pk_ib_wake_at_commit)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot PREPARE a transaction that requested an index build"),
						 errhint("Request index builds in a transaction that commits directly.")));
			break;
		case XACT_EVENT_COMMIT:
			if (pk_ib_wake_at_commit)
			{
				pk_ib_wake_at_commit = false;
				pk_ib_wake_database(MyDatabaseId);
			}
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
			pk_ib_wake_at_commit = false;
			break;
		default:
			break;
	}
}

/* Arrange for the builder to be woken when this transaction commits */
void
pk_ib_arm_wakeup(void)
{
	if (!pk_ib_callback_registered)
	{
		RegisterXactCallback(pk_ib_xact_callback, NULL);
		pk_ib_callback_registered = true;
	}
	pk_ib_wake_at_commit = true;
}

/* The relation now named perfkit.index_build_requests, or InvalidOid */
static Oid
pk_ib_requests_lookup(void)
{
	Oid			nsp = get_namespace_oid(PK_IB_SCHEMA, true);

	return OidIsValid(nsp) ? get_relname_relid(PK_IB_TABLE, nsp) : InvalidOid;
}

/*
 * Is relid the extension's own requests table: an ordinary table that is a
 * member of the perfkit extension and owned by a superuser?  A lookalike
 * created by some role must never be read by the builder.
 */
static bool
pk_ib_genuine_requests(Oid relid)
{
	Oid			extoid = get_extension_oid("perfkit", true);
	HeapTuple	tup;
	bool		genuine;

	if (!OidIsValid(relid) || !OidIsValid(extoid) ||
		getExtensionOfObject(RelationRelationId, relid) != extoid)
		return false;
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tup))
		return false;
	genuine = ((Form_pg_class) GETSTRUCT(tup))->relkind == RELKIND_RELATION &&
		superuser_arg(((Form_pg_class) GETSTRUCT(tup))->relowner);
	ReleaseSysCache(tup);
	return genuine;
}

/*
 * OID of perfkit.index_build_requests, locked in lockmode (NoLock: just
 * looked up); InvalidOid when the extension is not installed here, also
 * when a table of that name exists but is not the extension's own.  The
 * table is checked before it is locked and again once it is.
 */
Oid
pk_ib_requests_relid(LOCKMODE lockmode)
{
	Oid			relid = pk_ib_requests_lookup();

	if (!pk_ib_genuine_requests(relid))
		return InvalidOid;
	if (lockmode == NoLock)
		return relid;
	LockRelationOid(relid, lockmode);
	/* the lock made us see concurrent DDL: still the same, genuine table? */
	if (pk_ib_requests_lookup() != relid || !pk_ib_genuine_requests(relid))
	{
		UnlockRelationOid(relid, lockmode);
		return InvalidOid;
	}
	return relid;
}

/* True when a relation named perfkit.index_build_requests exists but is not perfkit's */
bool
pk_ib_requests_lookalike(void)
{
	Oid			relid = pk_ib_requests_lookup();

	return OidIsValid(relid) && !pk_ib_genuine_requests(relid);
}

/* The requests table, or an error when the extension is missing here */
Oid
pk_ib_requests_table(void)
{
	Oid			reqrel = pk_ib_requests_relid(NoLock);

	if (!OidIsValid(reqrel))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("perfkit is not installed in this database"),
				 errhint("Run CREATE EXTENSION perfkit.")));
	return reqrel;
}

/* Run what follows as the owner of the requests table (pk_run_as_end goes back) */
void
pk_ib_become_owner(Oid reqrel, PkSavedIdentity *saved)
{
	pk_run_as_begin(pk_ib_rel_owner(reqrel), SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION,
					false, saved);
}

/* Owner of a relation */
Oid
pk_ib_rel_owner(Oid relid)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}
