/*-------------------------------------------------------------------------
 *
 * indexbuild_builder.c
 *	  The builder: a short-lived background worker, one per database with
 *	  work, that runs requested index builds (started by
 *	  indexbuild_launcher.c).
 *
 * Cancellation: perfkit.cancel_index_build() sets the slot's cancel_id and
 * sends SIGINT when the slot's running_id is that build.  The builder
 * honours SIGINT only while it runs a build's statement (the inspection,
 * the CREATE/DROP INDEX CONCURRENTLY or the clean-up); elsewhere it is
 * ignored, so a late signal cannot break the builder's bookkeeping.
 * lock_timeout and statement_timeout arrive as SIGINT too and are honoured
 * at the same places.  When a statement ends (normally or by an error),
 * pk_ib_stop_cancels() stops accepting SIGINT, clears running_id, waits
 * until no canceller is between its decision and its kill()
 * (cancel_signalling), and forgets a cancel that arrived too late
 * (QueryCancelPending): such a SIGINT was sent while running_id was the
 * statement's build, so it can neither interrupt the next build nor raise
 * an error in the bookkeeping that follows.  (kill() marks the signal
 * pending in the builder before it returns; it is delivered within
 * microseconds, long before the next statement, and then ignored.)
 *
 * The design in full: docs/design.md, "The index builder".
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "nodes/makefuncs.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "tcop/pquery.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timeout.h"

#include "core/compat.h"
#include "indexbuild/indexbuild_internal.h"

#define PK_IB_MAX_BACKOFF_SHIFT 10		/* retry delays double at most 2^10 times */
#define PK_IB_SEARCH_PATH		"pg_catalog, pg_temp"	/* for the builder's own queries */
#define PK_IB_SIGNAL_WAIT_MS	1000	/* longest wait for a canceller's kill() */

/* One claimed request */
typedef struct PkIbBuild
{
	int64		id;				/* request id */
	bool		is_drop;		/* DROP INDEX request (else CREATE INDEX) */
	Oid			reqrel;			/* requests table it was claimed from */
	Oid			relid;			/* table */
	Oid			indexrelid;		/* index to drop (drop requests) */
	char	   *index_name;		/* index name, in the table's schema */
	char	   *definition;		/* the CREATE INDEX text, or a display text */
	char	   *search_path;	/* requester's search_path at request time */
	Oid			requested_by;	/* role to run as */
	bool		requester_exists;	/* that role still exists */
	bool		requester_is_super; /* and is a superuser */
	int			attempts;		/* this attempt's number */
	char	   *last_error;		/* error of the previous attempt, or NULL */
	TimestampTz stmt_start;		/* start of the running statement */
} PkIbBuild;

/* How an attempt ended */
typedef struct PkIbOutcome
{
	const char *status;			/* new status of the row */
	char	   *error;			/* error text or note, or NULL */
	Oid			indexrelid;		/* the index built or found, or InvalidOid */
	TimestampTz retry_at;		/* retry time when status is "pending" */
} PkIbOutcome;

/* What the inspection decided */
typedef enum PkIbAction
{
	PK_IB_DONE,					/* outcome already decided (skip or fail) */
	PK_IB_BUILD,				/* the name is free: build */
	PK_IB_REBUILD				/* drop the INVALID leftover, then build */
} PkIbAction;

/* Builder state */
static volatile sig_atomic_t pk_ib_accept_cancel = false;	/* SIGINT honoured now */
static PkIbDatabase *pk_ib_my_slot = NULL;	/* attached slot */
static MemoryContext pk_ib_cxt = NULL;	/* per-build memory, outlives transactions */
static Oid	pk_ib_worker_userid = InvalidOid;	/* builder's own role, a superuser */
static int64 pk_ib_current = 0; /* build in progress, for the exit callback */
static bool pk_ib_ran = false;	/* this attempt ran its CREATE/DROP INDEX CONCURRENTLY */

/* SIGINT: a cancel or timeout, honoured only while a build's statement runs */
static void
pk_ib_sigint(SIGNAL_ARGS)
{
	if (pk_ib_accept_cancel)
		StatementCancelHandler(PK_SIGNAL_ARGS_PASS);
	else
	{
		int			save_errno = errno;

		SetLatch(MyLatch);
		errno = save_errno;
	}
}

/* Take the database's slot; false when another builder serves it */
static bool
pk_ib_attach(Oid dboid)
{
	PkIbDatabase *slot;
	bool		attached = false;

	SpinLockAcquire(&pk_ib->mutex);
	slot = pk_ib_slot_locked(dboid, true);
	if (slot != NULL && slot->worker_pid == 0)
	{
		slot->worker_pid = MyProcPid;
		slot->worker_latch = MyLatch;
		slot->launch_pending = false;
		slot->retry_at = 0;
		slot->running_id = 0;
		pk_ib_my_slot = slot;
		attached = true;
	}
	else if (slot != NULL)
		slot->launch_pending = false;	/* served by the attached builder */
	SpinLockRelease(&pk_ib->mutex);
	return attached;
}

/*
 * The current statement no longer takes cancels: ignore SIGINT, clear
 * running_id, wait (boundedly) until no canceller is between its decision
 * and its kill(), and forget a cancel or timeout that arrived too late.
 * A SIGINT meant for this statement's build thus never reaches the next
 * build, nor the bookkeeping in between.
 */
static void
pk_ib_stop_cancels(void)
{
	pk_ib_accept_cancel = false;
	for (int waited = 0;; waited++)
	{
		bool		signalling;

		SpinLockAcquire(&pk_ib->mutex);
		pk_ib_my_slot->running_id = 0;
		signalling = pk_ib_my_slot->cancel_signalling > 0;
		SpinLockRelease(&pk_ib->mutex);
		if (!signalling || waited >= PK_IB_SIGNAL_WAIT_MS)
			break;
		pg_usleep(1000L);
	}
	QueryCancelPending = false;
}

/* on_shmem_exit: give the slot back; an interrupted build is retried later */
static void
pk_ib_worker_exit(int code, Datum arg)
{
	TimestampTz retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   Max(pk_ib_retry_delay, PK_IB_RECHECK_MS));
	Latch	   *launcher_latch;

	if (pk_ib_my_slot == NULL)
		return;
	/* no canceller may still be about to signal this process id */
	pk_ib_stop_cancels();
	SpinLockAcquire(&pk_ib->mutex);
	if (pk_ib_my_slot->worker_pid == MyProcPid)
	{
		pk_ib_my_slot->worker_pid = 0;
		pk_ib_my_slot->worker_latch = NULL;
		pk_ib_my_slot->running_id = 0;
		if (pk_ib_current != 0)
			pk_ib_my_slot->retry_at = retry_at;
	}
	launcher_latch = pk_ib->launcher_latch;
	SpinLockRelease(&pk_ib->mutex);
	pk_ib_my_slot = NULL;
	if (launcher_latch != NULL)
		SetLatch(launcher_latch);
}

/* Clear the wake-up before looking at the table (a later commit sets it again) */
static void
pk_ib_clear_wanted(void)
{
	SpinLockAcquire(&pk_ib->mutex);
	pk_ib_my_slot->wanted = false;
	SpinLockRelease(&pk_ib->mutex);
}

/*
 * Detach unless a request committed since the last look; records when the
 * launcher should start a builder again for a postponed retry.
 */
static bool
pk_ib_detach_if_idle(TimestampTz next_retry)
{
	bool		detached = false;
	Latch	   *launcher_latch = NULL;

	SpinLockAcquire(&pk_ib->mutex);
	if (!pk_ib_my_slot->wanted)
	{
		pk_ib_my_slot->worker_pid = 0;
		pk_ib_my_slot->worker_latch = NULL;
		pk_ib_my_slot->running_id = 0;
		pk_ib_my_slot->retry_at = next_retry;
		launcher_latch = pk_ib->launcher_latch;
		detached = true;
	}
	SpinLockRelease(&pk_ib->mutex);
	if (detached)
	{
		pk_ib_my_slot = NULL;
		if (launcher_latch != NULL)
			SetLatch(launcher_latch);
	}
	return detached;
}

/*
 * A statement of build b starts: accept cancels, honour an earlier one.
 * SIGINT is accepted before running_id is set, so that a signal decided
 * for this build is never ignored (none for another build can be pending:
 * pk_ib_stop_cancels waited for them).
 */
static void
pk_ib_enter_statement(PkIbBuild *b)
{
	bool		cancelled;

	pk_ib_accept_cancel = true;
	SpinLockAcquire(&pk_ib->mutex);
	pk_ib_my_slot->running_id = b->id;
	cancelled = pk_ib_my_slot->cancel_id == b->id;
	SpinLockRelease(&pk_ib->mutex);
	if (cancelled)
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("canceling index build %lld at user request", (long long) b->id)));
}

/* True (and forgotten) when a user asked to cancel build id */
static bool
pk_ib_take_cancel(int64 id)
{
	bool		cancel;

	SpinLockAcquire(&pk_ib->mutex);
	cancel = pk_ib_my_slot->cancel_id == id;
	if (cancel)
		pk_ib_my_slot->cancel_id = 0;
	SpinLockRelease(&pk_ib->mutex);
	return cancel;
}

/* ---------------------------------------------------------------------
 * Builder: identity, transactions, settings, error recovery
 * ---------------------------------------------------------------------
 */

/*
 * Become the requester of build b, or with b == NULL the builder again.
 * Called outside any transaction only: the session user changes, no
 * security-context flag is set (see "Identity" above).
 */
static void
pk_ib_become(PkIbBuild *b)
{
	Assert(!IsTransactionState());
	if (b != NULL)
		SetSessionAuthorization(b->requested_by, b->requester_is_super);
	else
		SetSessionAuthorization(pk_ib_worker_userid, true);
}

/* Set a setting for the rest of the session (it survives transaction ends) */
static void
pk_ib_set(const char *name, const char *value)
{
	SetConfigOption(name, value, PGC_SUSET, PGC_S_SESSION);
}

/*
 * Settings of a build's statements: the requester's search_path,
 * perfkit.index_build_lock_timeout, and standard_conforming_strings on
 * (requests were validated with it on).
 */
static void
pk_ib_set_build_gucs(PkIbBuild *b)
{
	char		buf[32];

	snprintf(buf, sizeof(buf), "%d", pk_ib_lock_timeout);
	pk_ib_set("search_path", b->search_path);
	pk_ib_set("lock_timeout", buf);
	pk_ib_set("standard_conforming_strings", "on");
}

/* Settings of the builder's own queries */
static void
pk_ib_reset_gucs(void)
{
	pk_ib_set("search_path", PK_IB_SEARCH_PATH);
	pk_ib_set("lock_timeout", "0");
	pk_ib_set("standard_conforming_strings", "on");
}

/* Start a bookkeeping transaction with a snapshot */
static void
pk_ib_begin(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

/* Commit a bookkeeping transaction */
static void
pk_ib_commit(void)
{
	if (ActiveSnapshotSet())
		PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(pk_ib_cxt);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * Start a statement of build b in a transaction of its own: as the
 * requester, with the build's settings, the statement timeout, and
 * cancels accepted.  snapshot: push one (not for a utility statement run
 * through a portal, which takes its own).
 */
static void
pk_ib_step_begin(PkIbBuild *b, const char *activity, bool snapshot)
{
	pk_ib_set_build_gucs(b);
	pk_ib_become(b);
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (snapshot)
		PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
	b->stmt_start = GetCurrentTimestamp();
	pk_ib_enter_statement(b);
	if (pk_ib_statement_timeout > 0)
		enable_timeout_after(STATEMENT_TIMEOUT, pk_ib_statement_timeout);
}

/* End a statement started by pk_ib_step_begin: commit, become the builder again */
static void
pk_ib_step_end(void)
{
	disable_timeout(STATEMENT_TIMEOUT, false);
	pk_ib_stop_cancels();
	if (ActiveSnapshotSet())
		PopActiveSnapshot();
	CommitTransactionCommand();
	pk_ib_become(NULL);
	MemoryContextSwitchTo(pk_ib_cxt);
	debug_query_string = NULL;
	pgstat_report_activity(STATE_IDLE, NULL);
	pk_ib_reset_gucs();
}

/*
 * Recover from an error of a build step as postgres.c and autovacuum do:
 * log it, abort whatever transaction is open (CIC may have been between its
 * own), drop the portal, release session-level locks and timeouts, and
 * become the builder again.  Returns the error, copied into the build's
 * memory.
 */
static ErrorData *
pk_ib_recover(void)
{
	ErrorData  *edata;

	HOLD_INTERRUPTS();
	pk_ib_stop_cancels();
	/* to the server log, with detail, context and statement */
	EmitErrorReport();
	MemoryContextSwitchTo(pk_ib_cxt);
	edata = CopyErrorData();
	FlushErrorState();
	disable_all_timeouts(false);
	QueryCancelPending = false;
	AbortOutOfAnyTransaction();
	PortalErrorCleanup();
	LockReleaseSession(DEFAULT_LOCKMETHOD);
	pgstat_progress_end_command();
	/* abort restored the identity the transaction started with: the requester */
	SetUserIdAndSecContext(GetSessionUserId(), 0);
	pk_ib_become(NULL);
	debug_query_string = NULL;
	pgstat_report_activity(STATE_IDLE, NULL);
	MemoryContextSwitchTo(pk_ib_cxt);
	RESUME_INTERRUPTS();
	pk_ib_reset_gucs();
	return edata;
}

/* The requests table is still the one we started with (locked till commit) */
static bool
pk_ib_table_present(Oid expected)
{
	Oid			reqrel = pk_ib_requests_relid(RowExclusiveLock);

	return OidIsValid(reqrel) && (expected == InvalidOid || reqrel == expected);
}

/* Copy a text column of the current SPI row into the build's memory */
static char *
pk_ib_spi_text(HeapTuple tup, TupleDesc desc, int col)
{
	char	   *value = SPI_getvalue(tup, desc, col);

	return value ? MemoryContextStrdup(pk_ib_cxt, value) : NULL;
}

/* ---------------------------------------------------------------------
 * Builder: the rows
 * ---------------------------------------------------------------------
 */

/*
 * Is perfkit installed here?  If so, builds left 'running' by an earlier
 * builder were interrupted: make them pending again.  Returns the requests
 * table, or InvalidOid (with a warning when a table of that name exists
 * but is not the extension's own).
 */
static Oid
pk_ib_prepare(void)
{
	Oid			reqrel;
	uint64		resumed = 0;
	bool		lookalike = false;
	char	   *dbname;

	pk_ib_begin("perfkit: looking for index builds");
	dbname = MemoryContextStrdup(pk_ib_cxt, get_database_name(MyDatabaseId));
	reqrel = pk_ib_requests_relid(RowExclusiveLock);
	if (OidIsValid(reqrel))
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		if (SPI_execute("UPDATE perfkit.index_build_requests"
						" SET status = 'pending', worker_pid = NULL,"
						" error = 'interrupted (server restart, crash or builder exit); retrying'"
						" WHERE status = 'running'",
						false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not resume interrupted index builds");
		resumed = SPI_processed;
		SPI_finish();
	}
	else
		lookalike = pk_ib_requests_lookalike();
	pk_ib_commit();
	if (resumed > 0)
		ereport(LOG,
				(errmsg("perfkit: resuming %llu interrupted index build(s) in database \"%s\"",
						(unsigned long long) resumed, dbname)));
	if (lookalike)
		ereport(WARNING,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("perfkit: ignoring table %s.%s in database \"%s\"",
						PK_IB_SCHEMA, PK_IB_TABLE, dbname),
				 errdetail("The table is not the perfkit extension's own (a member of the extension, owned by a superuser); no index build is run from it."),
				 errhint("Drop that table, or run CREATE EXTENSION perfkit in the database if index builds are wanted there.")));
	return reqrel;
}

/* Claim the oldest due pending request; NULL when none (or *gone) */
static PkIbBuild *
pk_ib_claim(Oid reqrel, bool *gone)
{
	PkIbBuild  *b = NULL;
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1];

	pk_ib_begin("perfkit: claiming an index build");
	if (!pk_ib_table_present(reqrel))
	{
		*gone = true;
		pk_ib_commit();
		return NULL;
	}
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	values[0] = Int32GetDatum(MyProcPid);
	if (SPI_execute_with_args("UPDATE perfkit.index_build_requests r"
							  " SET status = 'running', started_at = now(), finished_at = NULL,"
							  " attempts = r.attempts + 1, worker_pid = $1, retry_at = NULL"
							  " WHERE r.id = (SELECT q.id FROM perfkit.index_build_requests q"
							  "  WHERE q.status = 'pending' AND (q.retry_at IS NULL OR q.retry_at <= now())"
							  "  ORDER BY q.id LIMIT 1 FOR UPDATE SKIP LOCKED)"
							  " RETURNING r.id, r.kind, r.relid, r.indexrelid, r.index_name::text,"
							  " r.definition, r.search_path, r.requested_by, r.attempts, r.error",
							  1, argtypes, values, NULL, false, 1) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not claim an index build");
	if (SPI_processed == 1)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		char	   *kind;

		b = MemoryContextAllocZero(pk_ib_cxt, sizeof(PkIbBuild));
		b->reqrel = reqrel;
		b->id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		kind = SPI_getvalue(tup, desc, 2);
		b->is_drop = strcmp(kind, "drop") == 0;
		b->relid = DatumGetObjectId(SPI_getbinval(tup, desc, 3, &isnull));
		b->indexrelid = DatumGetObjectId(SPI_getbinval(tup, desc, 4, &isnull));
		if (isnull)
			b->indexrelid = InvalidOid;
		b->index_name = pk_ib_spi_text(tup, desc, 5);
		b->definition = pk_ib_spi_text(tup, desc, 6);
		b->search_path = pk_ib_spi_text(tup, desc, 7);
		b->requested_by = DatumGetObjectId(SPI_getbinval(tup, desc, 8, &isnull));
		b->attempts = DatumGetInt32(SPI_getbinval(tup, desc, 9, &isnull));
		b->last_error = pk_ib_spi_text(tup, desc, 10);
		b->requester_exists = SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(b->requested_by));
		b->requester_is_super = b->requester_exists && superuser_arg(b->requested_by);
	}
	SPI_finish();
	pk_ib_commit();
	return b;
}

/* Record how a build ended; sets *gone when the requests table vanished */
static void
pk_ib_finish(PkIbBuild *b, PkIbOutcome *out, bool *gone)
{
	Oid			argtypes[6] = {INT8OID, TEXTOID, TEXTOID, OIDOID, TIMESTAMPTZOID, INT4OID};
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};

	pk_ib_begin("perfkit: recording an index build");
	if (!pk_ib_table_present(b->reqrel))
	{
		*gone = true;
		pk_ib_commit();
		return;
	}
	values[0] = Int64GetDatum(b->id);
	values[1] = CStringGetTextDatum(out->status);
	values[2] = out->error ? CStringGetTextDatum(out->error) : (Datum) 0;
	nulls[2] = out->error ? ' ' : 'n';
	values[3] = ObjectIdGetDatum(out->indexrelid);
	nulls[3] = OidIsValid(out->indexrelid) ? ' ' : 'n';
	values[4] = TimestampTzGetDatum(out->retry_at);
	nulls[4] = out->retry_at != 0 ? ' ' : 'n';
	values[5] = Int32GetDatum(MyProcPid);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args("UPDATE perfkit.index_build_requests"
							  " SET status = $2, error = $3, indexrelid = coalesce($4, indexrelid),"
							  " retry_at = $5, worker_pid = NULL,"
							  " finished_at = CASE WHEN $2 = 'pending' THEN NULL ELSE now() END"
							  " WHERE id = $1 AND status = 'running' AND worker_pid = $6",
							  6, argtypes, values, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not record the end of index build %lld", (long long) b->id);
	SPI_finish();
	pk_ib_commit();

	if (strcmp(out->status, "pending") == 0)
		ereport(LOG,
				(errmsg("perfkit: index build %lld (\"%s\") will be retried at %s: %s",
						(long long) b->id, b->index_name, timestamptz_to_str(out->retry_at),
						out->error ? out->error : "")));
	else
		ereport(LOG,
				(errmsg("perfkit: index build %lld (\"%s\") %s%s%s",
						(long long) b->id, b->index_name, out->status,
						out->error ? ": " : "", out->error ? out->error : "")));
}

/* When to look again for postponed retries: 0 when nothing is pending */
static TimestampTz
pk_ib_next_retry(Oid reqrel, bool *gone)
{
	TimestampTz next = 0;
	TimestampTz soon = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), PK_IB_RECHECK_MS);

	pk_ib_begin("perfkit: scheduling index build retries");
	if (!pk_ib_table_present(reqrel))
		*gone = true;
	else
	{
		bool		isnull;
		Datum		d;

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		if (SPI_execute("SELECT min(coalesce(retry_at, now())) FROM perfkit.index_build_requests"
						" WHERE status = 'pending'", false, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not read the pending index builds");
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (!isnull)
			next = Max(DatumGetTimestampTz(d), soon);	/* a due row was busy: soon */
		SPI_finish();
	}
	pk_ib_commit();
	return next;
}

/* ---------------------------------------------------------------------
 * Builder: running statements
 * ---------------------------------------------------------------------
 */

/* DROP INDEX CONCURRENTLY IF EXISTS nsp.name, as a parse tree */
static Node *
pk_ib_drop_stmt(const char *nspname, const char *name)
{
	DropStmt   *drop = makeNode(DropStmt);

	drop->objects = list_make1(list_make2(makeString(pstrdup(nspname)),
										  makeString(pstrdup(name))));
	drop->removeType = OBJECT_INDEX;
	drop->behavior = DROP_RESTRICT;
	drop->missing_ok = true;
	drop->concurrent = true;
	return (Node *) drop;
}

/*
 * Run one utility statement of build b at top level, the way
 * exec_simple_query does: an unnamed portal with one PlannedStmt, run with
 * isTopLevel = true outside any transaction block, so CREATE/DROP INDEX
 * CONCURRENTLY may commit and start transactions of its own.  As the
 * requester, with the lock and statement timeouts, cancellable.
 */
static void
pk_ib_run_toplevel(PkIbBuild *b, Node *stmt, const char *sql, CommandTag tag)
{
	MemoryContext old = MemoryContextSwitchTo(pk_ib_cxt);
	PlannedStmt *pstmt = makeNode(PlannedStmt);
	char	   *activity = psprintf("/* perfkit index build %lld */ %s", (long long) b->id, sql);
	List	   *stmts;
	Portal		portal;
	DestReceiver *receiver;
	QueryCompletion qc;

	pstmt->commandType = CMD_UTILITY;
	pstmt->canSetTag = true;
	pstmt->utilityStmt = stmt;
	pstmt->stmt_location = -1;
	pstmt->stmt_len = 0;
	/* like exec_simple_query's MessageContext: must outlive CIC's own commits */
	stmts = list_make1(pstmt);
	MemoryContextSwitchTo(old);

	pk_ib_step_begin(b, activity, false);
	debug_query_string = sql;

	portal = CreatePortal("", true, true);
	portal->visible = false;
	PortalDefineQuery(portal, NULL, sql, tag, stmts, NULL);
	PortalStart(portal, NULL, 0, InvalidSnapshot);
	receiver = CreateDestReceiver(DestNone);
	(void) pk_PortalRun(portal, FETCH_ALL, true, receiver, receiver, &qc);
	receiver->rDestroy(receiver);
	PortalDrop(portal, false);

	pk_ib_step_end();
}

/* DROP INDEX CONCURRENTLY IF EXISTS of an index of build b's table */
static void
pk_ib_run_drop(PkIbBuild *b, const char *nspname, const char *name)
{
	pk_ib_run_toplevel(b, pk_ib_drop_stmt(nspname, name),
					   psprintf("DROP INDEX CONCURRENTLY IF EXISTS %s",
								quote_qualified_identifier(nspname, name)),
					   CMDTAG_DROP_INDEX);
}

/*
 * What carries build b's index name on its table now (looked up as the
 * builder, without locking); the index's OID in *indexoid and, when the
 * table exists, its schema in *nspname (if not NULL).
 */
static PkIbNamed
pk_ib_index_now(PkIbBuild *b, Oid *indexoid, char **nspname)
{
	PkIbNamed	named = PK_IB_NAME_FREE;

	*indexoid = InvalidOid;
	if (nspname != NULL)
		*nspname = NULL;
	StartTransactionCommand();
	if (SearchSysCacheExists1(RELOID, ObjectIdGetDatum(b->relid)))
	{
		named = pk_ib_lookup_name(b->relid, b->index_name, indexoid);
		if (nspname != NULL)
			*nspname = MemoryContextStrdup(pk_ib_cxt,
										   get_namespace_name(get_rel_namespace(b->relid)));
	}
	CommitTransactionCommand();
	MemoryContextSwitchTo(pk_ib_cxt);
	return named;
}

/* Is there a valid index of the request's name on its table now? */
static Oid
pk_ib_valid_index(PkIbBuild *b)
{
	Oid			indexoid;

	return pk_ib_index_now(b, &indexoid, NULL) == PK_IB_NAME_VALID ? indexoid : InvalidOid;
}

/*
 * Decide what to do for a CREATE INDEX request, holding SHARE UPDATE
 * EXCLUSIVE on the table (so no other CIC on it is half-way): build, drop an
 * INVALID leftover first, or end here (skipped/failed, in *out).  Returns
 * the statement to run and the table's schema in *stmt_out, *nspname_out.
 */
static PkIbAction
pk_ib_inspect_create(PkIbBuild *b, PkIbOutcome *out, IndexStmt **stmt_out,
					 char **nspname_out)
{
	PkIbAction	action = PK_IB_DONE;

	pk_ib_step_begin(b, "perfkit: inspecting the table of an index build", true);

	if (SearchSysCacheExists1(RELOID, ObjectIdGetDatum(b->relid)))
		LockRelationOid(b->relid, ShareUpdateExclusiveLock);
	if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(b->relid)))
	{
		out->status = "failed";
		out->error = psprintf("the table (OID %u) no longer exists", b->relid);
	}
	else
	{
		Oid			nsp = get_rel_namespace(b->relid);
		Oid			existing;
		PkIbNamed	named = pk_ib_lookup_name(b->relid, b->index_name, &existing);
		MemoryContext old = MemoryContextSwitchTo(pk_ib_cxt);
		List	   *raw = pk_ib_parse(b->definition, 0, b->definition);
		IndexStmt  *stmt;
		bool		if_not_exists;
		PkIbShape	shape;

		if (list_length(raw) != 1 || !IsA(linitial_node(RawStmt, raw)->stmt, IndexStmt))
			elog(ERROR, "index build %lld has no CREATE INDEX statement", (long long) b->id);
		stmt = (IndexStmt *) linitial_node(RawStmt, raw)->stmt;
		if_not_exists = stmt->if_not_exists;
		stmt->relation = makeRangeVar(get_namespace_name(nsp), get_rel_name(b->relid), -1);
		stmt->idxname = pstrdup(b->index_name);
		stmt->concurrent = true;
		stmt->if_not_exists = false;
		*stmt_out = stmt;
		*nspname_out = get_namespace_name(nsp);
		MemoryContextSwitchTo(old);

		switch (named)
		{
			case PK_IB_NAME_FREE:
				action = PK_IB_BUILD;
				break;
			case PK_IB_NAME_OTHER:
				out->status = if_not_exists ? "skipped" : "failed";
				out->error = psprintf("relation \"%s\" already exists", b->index_name);
				break;
			case PK_IB_NAME_INVALID:
				action = PK_IB_REBUILD;
				break;
			case PK_IB_NAME_VALID:
				/* runs the requester's functions, restricted (see pk_ib_index_shape) */
				pk_ib_index_shape(b->relid, stmt, b->definition, &shape);
				out->indexrelid = existing;
				out->status = "skipped";
				if (pk_ib_index_matches(existing, &shape))
					out->error = psprintf("index \"%s\" already exists with the same definition",
										  b->index_name);
				else if (if_not_exists)
					out->error = psprintf("index \"%s\" already exists (IF NOT EXISTS), with a different definition",
										  b->index_name);
				else
				{
					out->status = "failed";
					out->indexrelid = InvalidOid;
					out->error = psprintf("index \"%s\" already exists with a different definition",
										  b->index_name);
				}
				break;
		}
	}
	if (out->error != NULL)
		out->error = MemoryContextStrdup(pk_ib_cxt, out->error);

	pk_ib_step_end();
	return action;
}

/*
 * After a failed or interrupted attempt: drop the INVALID index of the
 * request's name on its table, if there is one (for a DROP request, only
 * the index it was dropping: DROP INDEX CONCURRENTLY marks it INVALID
 * before it waits, so this completes the drop).  Looked up under SHARE
 * UPDATE EXCLUSIVE, so it is not someone's build in progress.  Runs like a
 * build's statements: as the requester, with the lock and statement
 * timeouts, cancellable.  Returns why it failed, else NULL; *found tells
 * whether there was an INVALID index to drop, *dropped whether it was.
 */
static char *
pk_ib_cleanup(PkIbBuild *b, bool *found, bool *dropped)
{
	char	   *volatile nspname = NULL;
	char	   *volatile failure = NULL;

	*found = false;
	*dropped = false;
	PG_TRY();
	{
		Oid			indexoid;

		pk_ib_step_begin(b, "perfkit: looking for the INVALID index of an index build", true);
		if (SearchSysCacheExists1(RELOID, ObjectIdGetDatum(b->relid)))
		{
			LockRelationOid(b->relid, ShareUpdateExclusiveLock);
			if (pk_ib_lookup_name(b->relid, b->index_name, &indexoid) == PK_IB_NAME_INVALID &&
				(!b->is_drop || indexoid == b->indexrelid))
				nspname = MemoryContextStrdup(pk_ib_cxt,
											  get_namespace_name(get_rel_namespace(b->relid)));
		}
		pk_ib_step_end();

		if (nspname != NULL)
		{
			*found = true;
			if (b->is_drop)
				ereport(LOG,
						(errmsg("perfkit: index build %lld completes the interrupted drop of the INVALID index \"%s\"",
								(long long) b->id, b->index_name)));
			else
				ereport(LOG,
						(errmsg("perfkit: index build %lld drops the INVALID index \"%s\" its failed attempt left",
								(long long) b->id, b->index_name)));
			pk_ib_run_drop(b, nspname, b->index_name);
			*dropped = true;
		}
	}
	PG_CATCH();
	{
		failure = pk_ib_recover()->message;
	}
	PG_END_TRY();
	return failure;
}

/*
 * Clean up after a failed attempt (pk_ib_cleanup) and say so in *out: a
 * DROP request whose index got dropped succeeded after all; a clean-up that
 * failed leaves the INVALID index, and the error tells what drops it.
 */
static void
pk_ib_clean_after_failure(PkIbBuild *b, PkIbOutcome *out)
{
	bool		found;
	bool		dropped;
	char	   *failure = pk_ib_cleanup(b, &found, &dropped);
	bool		retrying = strcmp(out->status, "pending") == 0;

	if (b->is_drop && dropped)
	{
		out->status = "succeeded";
		out->retry_at = 0;
		out->error = psprintf("%s; the index had already been made INVALID, so the drop was completed",
							  out->error);
	}
	else if (failure != NULL && found)
		out->error = psprintf("%s; the INVALID index \"%s\" could not be dropped (%s), %s",
							  out->error, b->index_name, failure,
							  retrying ? "the next attempt drops it" :
							  b->is_drop ? "request the drop again" :
							  "a new request of the index drops it first");
	else if (failure != NULL)
		out->error = psprintf("%s; looking for an INVALID index \"%s\" left behind failed (%s)",
							  out->error, b->index_name, failure);
}

/* Steps 2 and 3 of a CREATE INDEX request; errors propagate to pk_ib_attempt */
static void
pk_ib_do_create(PkIbBuild *b, PkIbOutcome *out)
{
	IndexStmt  *stmt = NULL;
	char	   *nspname = NULL;
	PkIbAction	action = pk_ib_inspect_create(b, out, &stmt, &nspname);

	if (action == PK_IB_DONE)
		return;
	if (action == PK_IB_REBUILD)
	{
		ereport(LOG,
				(errmsg("perfkit: index build %lld drops the INVALID index \"%s\" left by an earlier build",
						(long long) b->id, b->index_name)));
		pk_ib_run_drop(b, nspname, b->index_name);
	}
	pk_ib_ran = true;
	pk_ib_run_toplevel(b, (Node *) stmt, b->definition, CMDTAG_CREATE_INDEX);
	out->indexrelid = pk_ib_valid_index(b);
	out->status = OidIsValid(out->indexrelid) ? "succeeded" : "failed";
	if (!OidIsValid(out->indexrelid))
		out->error = pstrdup("the index was not found after the build (renamed or dropped meanwhile?)");
}

/*
 * Step 3 of a DROP INDEX request.  The stored OID alone is not trusted (it
 * may belong to another index by now): the index must still carry the
 * stored name, on the stored table.
 */
static void
pk_ib_do_drop(PkIbBuild *b, PkIbOutcome *out)
{
	Oid			indexoid;
	char	   *nspname;
	PkIbNamed	named = pk_ib_index_now(b, &indexoid, &nspname);
	bool		oid_is_index;

	if ((named == PK_IB_NAME_VALID || named == PK_IB_NAME_INVALID) &&
		indexoid == b->indexrelid)
	{
		pk_ib_ran = true;
		pk_ib_run_drop(b, nspname, b->index_name);
		out->status = "succeeded";
		return;
	}

	StartTransactionCommand();
	oid_is_index = get_rel_relkind(b->indexrelid) == RELKIND_INDEX;
	CommitTransactionCommand();
	MemoryContextSwitchTo(pk_ib_cxt);
	if (named == PK_IB_NAME_FREE && !oid_is_index)
	{
		out->status = "skipped";
		out->error = pstrdup("the index no longer exists");
	}
	else
	{
		out->status = "failed";
		out->error = psprintf("index \"%s\" was renamed or replaced since the request; nothing was dropped",
							  b->index_name);
	}
}

/* Retrying helps only against transient conflicts */
static bool
pk_ib_retryable(int sqlerrcode)
{
	return sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE ||
		sqlerrcode == ERRCODE_T_R_DEADLOCK_DETECTED ||
		sqlerrcode == ERRCODE_T_R_SERIALIZATION_FAILURE;
}

/* One attempt of a claimed request: run it, classify an error, clean up */
static void
pk_ib_attempt(PkIbBuild *b, PkIbOutcome *out)
{
	pk_ib_ran = false;
	PG_TRY();
	{
		if (b->is_drop)
			pk_ib_do_drop(b, out);
		else
			pk_ib_do_create(b, out);
	}
	PG_CATCH();
	{
		ErrorData  *edata = pk_ib_recover();
		bool		cancel_requested = pk_ib_take_cancel(b->id);
		bool		timed_out = edata->sqlerrcode == ERRCODE_QUERY_CANCELED &&
			pk_ib_statement_timeout > 0 && b->stmt_start != 0 &&
			TimestampDifferenceExceeds(b->stmt_start, GetCurrentTimestamp(),
									   pk_ib_statement_timeout);
		char	   *message = edata->detail ?
			psprintf("%s (%s)", edata->message, edata->detail) : pstrdup(edata->message);

		out->indexrelid = InvalidOid;
		out->retry_at = 0;
		if (cancel_requested)
		{
			out->status = "cancelled";
			out->error = pstrdup("cancelled by perfkit.cancel_index_build()");
		}
		else if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED && !timed_out)
		{
			out->status = "cancelled";
			out->error = message;
		}
		else if (pk_ib_retryable(edata->sqlerrcode) && b->attempts < pk_ib_max_attempts)
		{
			int			shift = Min(b->attempts - 1, PK_IB_MAX_BACKOFF_SHIFT);

			out->status = "pending";
			out->error = message;
			out->retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														(int64) pk_ib_retry_delay << shift);
		}
		else
		{
			out->status = "failed";
			out->error = message;
		}

		if (pk_ib_ran && !b->is_drop)
		{
			/* a cancel that came too late: CIC had already made the index valid */
			out->indexrelid = pk_ib_valid_index(b);
			if (OidIsValid(out->indexrelid))
			{
				out->status = "succeeded";
				out->error = NULL;
				out->retry_at = 0;
			}
			else
				pk_ib_clean_after_failure(b, out);
		}
		else if (pk_ib_ran)
			pk_ib_clean_after_failure(b, out);
	}
	PG_END_TRY();
}

/* Process one claimed request and record the outcome */
static void
pk_ib_process(PkIbBuild *b, bool *gone)
{
	PkIbOutcome out;

	memset(&out, 0, sizeof(out));
	pk_ib_current = b->id;
	if (!b->requester_exists)
	{
		out.status = "failed";
		out.error = psprintf("the role that requested the build (OID %u) no longer exists",
							 b->requested_by);
	}
	else if (b->attempts > pk_ib_max_attempts)
	{
		/* interrupted once too often (restarts, crashes): clean up, give up */
		out.status = "failed";
		out.error = psprintf("gave up after %d attempts; last: %s", b->attempts - 1,
							 b->last_error ? b->last_error : "interrupted");
		pk_ib_clean_after_failure(b, &out);
	}
	else
		pk_ib_attempt(b, &out);
	pk_ib_finish(b, &out, gone);
	pk_ib_take_cancel(b->id);
	pk_ib_current = 0;
}

/* Main of a database's builder */
void
pk_indexbuild_worker_main(Datum main_arg)
{
	Oid			dboid = DatumGetObjectId(main_arg);
	bool		gone = false;

	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGINT, pk_ib_sigint);
	BackgroundWorkerUnblockSignals();

	/* connect first: a builder that cannot connect never attaches */
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	if (!pk_ib_attach(dboid))
		proc_exit(0);
	on_shmem_exit(pk_ib_worker_exit, (Datum) 0);

	pk_ib_cxt = AllocSetContextCreate(TopMemoryContext, "perfkit index build",
									  ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(pk_ib_cxt);
	pk_ib_worker_userid = GetSessionUserId();
	/* the builder's statements are not the users' workload */
	SetConfigOption("perfkit.enabled", "off", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("compute_query_id", "off", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("application_name", "perfkit index builder", PGC_SUSET, PGC_S_OVERRIDE);
	pk_ib_reset_gucs();

	for (;;)
	{
		Oid			reqrel;
		TimestampTz next_retry = 0;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		MemoryContextReset(pk_ib_cxt);
		pk_ib_clear_wanted();
		reqrel = pk_ib_prepare();
		gone = !OidIsValid(reqrel);
		while (!gone)
		{
			PkIbBuild  *b;

			MemoryContextReset(pk_ib_cxt);
			b = pk_ib_claim(reqrel, &gone);
			if (b == NULL)
				break;
			pk_ib_process(b, &gone);
			CHECK_FOR_INTERRUPTS();
			if (ConfigReloadPending)
			{
				ConfigReloadPending = false;
				ProcessConfigFile(PGC_SIGHUP);
			}
		}
		if (!gone)
			next_retry = pk_ib_next_retry(reqrel, &gone);
		if (pk_ib_detach_if_idle(gone ? 0 : next_retry))
			break;
	}
	if (gone)
		ereport(DEBUG1,
				(errmsg("perfkit is not installed in database %u; index builder exiting", dboid)));
	proc_exit(0);
}
