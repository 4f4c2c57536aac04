/*-------------------------------------------------------------------------
 *
 * indexbuild_launcher.c
 *	  Index builds: the launcher, a background worker registered from
 *	  shared_preload_libraries that starts the builders
 *	  (indexbuild_builder.c).
 *
 * Launcher.  It connects to no database (it reads only the shared catalog
 * pg_database) and sleeps on its latch.  A requesting backend marks its
 * database "wanted" in shared memory when its transaction commits and sets
 * the latch (indexbuild.c); the launcher then registers a dynamic builder
 * for that database, at most perfkit.index_build_max_workers at a time.
 * At start, also after a crash and restart, it marks every connectable
 * database wanted, so that builds left pending or interrupted are resumed
 * wherever perfkit is installed (a builder finding no perfkit, or nothing
 * to do, exits at once).  The builder connects as the bootstrap superuser,
 * so it reads requests only from the extension's own table, a member of
 * the perfkit extension owned by a superuser (pk_ib_requests_relid): in a
 * database without perfkit, a table some role created under that name is
 * ignored, with a warning, and never even locked.  The launcher also
 * starts builders when a postponed retry falls due.  It is notified
 * (bgw_notify_pid) when a builder starts or stops; a builder that stops
 * before attaching (say, its database was dropped) clears the database's
 * wake-up instead of being started again and again.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/heapam.h"
#include "catalog/pg_database.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "indexbuild/indexbuild_internal.h"

#define PK_IB_LAUNCHER_NAP_MS	60000	/* longest launcher sleep */

/* Handles of the builders this launcher started, by slot */
static BackgroundWorkerHandle *pk_ib_handles[PK_IB_MAX_DATABASES];

/* Register the launcher; called from _PG_init in the postmaster */
void
pk_indexbuild_register_workers(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 10;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "perfkit");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "pk_indexbuild_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "perfkit index build launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "perfkit index build launcher");
	RegisterBackgroundWorker(&worker);
}

/* on_shmem_exit: the launcher is gone */
static void
pk_ib_launcher_exit(int code, Datum arg)
{
	SpinLockAcquire(&pk_ib->mutex);
	if (pk_ib->launcher_pid == MyProcPid)
	{
		pk_ib->launcher_pid = 0;
		pk_ib->launcher_latch = NULL;
	}
	SpinLockRelease(&pk_ib->mutex);
}

/* Databases a builder can connect to (not templates), allocated in cxt */
static List *
pk_ib_list_databases(MemoryContext cxt)
{
	List	   *result = NIL;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);
		MemoryContext old;

		if (!db->datallowconn || db->datistemplate)
			continue;
#ifdef DATCONNLIMIT_INVALID_DB
		if (database_is_invalid_form(db))
			continue;
#endif
		old = MemoryContextSwitchTo(cxt);
		result = lappend_oid(result, db->oid);
		MemoryContextSwitchTo(old);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return result;
}

/* Mark the listed databases wanted; returns those that found no free slot */
static List *
pk_ib_mark_wanted(List *dbs)
{
	List	   *rest = NIL;
	ListCell   *lc;

	foreach(lc, dbs)
	{
		Oid			dboid = lfirst_oid(lc);
		PkIbDatabase *slot;

		SpinLockAcquire(&pk_ib->mutex);
		slot = pk_ib_slot_locked(dboid, true);
		if (slot != NULL)
			slot->wanted = true;
		SpinLockRelease(&pk_ib->mutex);
		if (slot == NULL)
			rest = lappend_oid(rest, dboid);
	}
	list_free(dbs);
	return rest;
}

/*
 * Forget builders that stopped.  One that stopped before attaching could
 * not start (e.g. its database is gone): drop the database's wake-up
 * rather than start it again and again.
 */
static void
pk_ib_reap(void)
{
	for (int i = 0; i < PK_IB_MAX_DATABASES; i++)
	{
		pid_t		pid;

		if (pk_ib_handles[i] == NULL ||
			GetBackgroundWorkerPid(pk_ib_handles[i], &pid) != BGWH_STOPPED)
			continue;
		pfree(pk_ib_handles[i]);
		pk_ib_handles[i] = NULL;

		SpinLockAcquire(&pk_ib->mutex);
		if (pk_ib->dbs[i].launch_pending)
		{
			pk_ib->dbs[i].launch_pending = false;
			if (pk_ib->dbs[i].worker_pid == 0)
			{
				pk_ib->dbs[i].wanted = false;
				pk_ib->dbs[i].retry_at = 0;
			}
		}
		SpinLockRelease(&pk_ib->mutex);
	}
}

/* Register a builder for a database; false when no worker slot is free */
static bool
pk_ib_start_builder(Oid dboid, BackgroundWorkerHandle **handle)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "perfkit");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "pk_indexbuild_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "perfkit index builder for database %u", dboid);
	snprintf(worker.bgw_type, BGW_MAXLEN, "perfkit index builder");
	worker.bgw_main_arg = ObjectIdGetDatum(dboid);
	worker.bgw_notify_pid = MyProcPid;
	return RegisterDynamicBackgroundWorker(&worker, handle);
}

/*
 * Start builders for the databases that are due, within the limit; free
 * idle slots.  Returns how long the launcher may sleep, in ms.
 */
static long
pk_ib_launch(TimestampTz *last_warning)
{
	TimestampTz now = GetCurrentTimestamp();
	long		timeout = PK_IB_LAUNCHER_NAP_MS;
	int			active = 0;
	int			starts[PK_IB_MAX_DATABASES];
	int			nstarts = 0;

	SpinLockAcquire(&pk_ib->mutex);
	for (int i = 0; i < PK_IB_MAX_DATABASES; i++)
		if (pk_ib->dbs[i].dboid != InvalidOid &&
			(pk_ib->dbs[i].worker_pid != 0 || pk_ib->dbs[i].launch_pending))
			active++;
	for (int i = 0; i < PK_IB_MAX_DATABASES; i++)
	{
		PkIbDatabase *slot = &pk_ib->dbs[i];
		bool		due;

		if (slot->dboid == InvalidOid || slot->worker_pid != 0 || slot->launch_pending)
			continue;
		due = slot->wanted || (slot->retry_at != 0 && slot->retry_at <= now);
		if (due)
		{
			/* a builder that detached may still be exiting: wait for its stop */
			if (active < pk_ib_max_workers && pk_ib_handles[i] == NULL)
			{
				slot->launch_pending = true;
				starts[nstarts++] = i;
				active++;
			}
		}
		else if (slot->retry_at != 0)
		{
			long		secs;
			int			usecs;

			TimestampDifference(now, slot->retry_at, &secs, &usecs);
			timeout = Min(timeout, secs * 1000 + usecs / 1000 + 1);
		}
		else if (pk_ib_handles[i] == NULL && slot->cancel_signalling == 0)
			slot->dboid = InvalidOid;	/* idle: free the slot */
	}
	SpinLockRelease(&pk_ib->mutex);

	for (int k = 0; k < nstarts; k++)
	{
		int			i = starts[k];
		Oid			dboid = pk_ib->dbs[i].dboid;	/* stable while launch_pending */

		if (pk_ib_start_builder(dboid, &pk_ib_handles[i]))
			continue;
		pk_ib_handles[i] = NULL;
		SpinLockAcquire(&pk_ib->mutex);
		pk_ib->dbs[i].launch_pending = false;
		SpinLockRelease(&pk_ib->mutex);
		timeout = Min(timeout, PK_IB_RECHECK_MS);
		if (TimestampDifferenceExceeds(*last_warning, now, 60000))
		{
			*last_warning = now;
			ereport(WARNING,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("perfkit could not start an index builder for database %u: no free background worker slot", dboid),
					 errhint("Raise max_worker_processes: perfkit needs one for its launcher and up to perfkit.index_build_max_workers for builders.")));
		}
	}
	return timeout;
}

/* Main of the launcher */
void
pk_indexbuild_launcher_main(Datum main_arg)
{
	MemoryContext cxt;
	List	   *pending;
	TimestampTz last_warning = 0;

	/* SIGTERM ends the loop quietly (die() would log a FATAL at every shutdown) */
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	cxt = AllocSetContextCreate(TopMemoryContext, "perfkit index build launcher",
								ALLOCSET_DEFAULT_SIZES);

	SpinLockAcquire(&pk_ib->mutex);
	pk_ib->launcher_pid = MyProcPid;
	pk_ib->launcher_latch = MyLatch;
	/* builders registered by an earlier launcher: their handles are lost */
	for (int i = 0; i < PK_IB_MAX_DATABASES; i++)
		if (pk_ib->dbs[i].launch_pending && pk_ib->dbs[i].worker_pid == 0)
			pk_ib->dbs[i].launch_pending = false;
	SpinLockRelease(&pk_ib->mutex);
	on_shmem_exit(pk_ib_launcher_exit, (Datum) 0);

	/* resume pending and interrupted builds wherever perfkit is installed */
	pending = pk_ib_list_databases(cxt);

	while (!ShutdownRequestPending)
	{
		bool		rescan;
		long		timeout;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		SpinLockAcquire(&pk_ib->mutex);
		rescan = pk_ib->rescan;
		pk_ib->rescan = false;
		SpinLockRelease(&pk_ib->mutex);
		if (rescan)
		{
			List	   *all = pk_ib_list_databases(cxt);

			MemoryContextSwitchTo(cxt);
			pending = list_concat_unique_oid(pending, all);
			list_free(all);
		}
		MemoryContextSwitchTo(cxt);
		pending = pk_ib_mark_wanted(pending);

		pk_ib_reap();
		timeout = pk_ib_launch(&last_warning);
		if (pending != NIL)
			timeout = Min(timeout, PK_IB_RECHECK_MS);

		if (ShutdownRequestPending)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}

	/*
	 * Exit status 1: outside a shutdown (an administrator's SIGTERM) the
	 * postmaster starts the launcher again after bgw_restart_time, which
	 * resumes what is pending; status 0 would unregister it for good.
	 */
	proc_exit(1);
}

/* ---------------------------------------------------------------------
 * Builder: shared-memory slot
 * ---------------------------------------------------------------------
 */
