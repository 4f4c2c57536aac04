/*-------------------------------------------------------------------------
 *
 * indexbuild_funcs.c
 *	  Index builds: the SQL-callable functions (create, drop, cancel, wait).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "catalog/dependency.h"
#include "catalog/index.h"
#include "commands/defrem.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "pgstat.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "indexbuild/indexbuild_internal.h"

PG_FUNCTION_INFO_V1(perfkit_create_index_concurrently);
PG_FUNCTION_INFO_V1(perfkit_create_index_concurrently_columns);
PG_FUNCTION_INFO_V1(perfkit_drop_index_concurrently);
PG_FUNCTION_INFO_V1(perfkit_cancel_index_build);
PG_FUNCTION_INFO_V1(perfkit_wait_for_index_builds);

/* Poll interval of perfkit.wait_for_index_builds(), ms */
#define PK_IB_WAIT_POLL_MS	200

/* Longest timeout of perfkit.wait_for_index_builds() with a deadline (100 years), ms */
#define PK_IB_WAIT_MAX_MS	(100.0 * 366 * 86400 * 1000)

/* perfkit.create_index_concurrently(definition text): request a build, return its id */
Datum
perfkit_create_index_concurrently(PG_FUNCTION_ARGS)
{
	pk_ib_require_loaded();
	pk_ib_not_null(fcinfo, 0, "index definition",
				   "Pass a statement such as 'CREATE INDEX orders_customer_idx ON orders (customer_id)'.");
	pk_ib_require_standard_strings();
	PG_RETURN_INT64(pk_ib_request_create(text_to_cstring(PG_GETARG_TEXT_PP(0))));
}

/*
 * perfkit.create_index_concurrently(tbl, columns, name, method, predicate,
 * include, is_unique): build the statement from quoted identifiers, then
 * validate and request it like a written definition.
 */
Datum
perfkit_create_index_concurrently_columns(PG_FUNCTION_ARGS)
{
	Oid			relid;
	List	   *columns;
	List	   *include = NIL;
	char	   *name = NULL;
	char	   *method;
	char	   *predicate = NULL;
	StringInfoData def;
	ListCell   *lc;
	Oid			atttype;
	Oid			attcoll;

	pk_ib_require_loaded();
	pk_ib_not_null(fcinfo, 0, "table", NULL);
	pk_ib_not_null(fcinfo, 1, "columns", "Pass the column names as an array, e.g. ARRAY['customer_id'].");
	pk_ib_not_null(fcinfo, 3, "method", "Leave it out for a btree index.");
	pk_ib_not_null(fcinfo, 6, "is_unique", NULL);
	pk_ib_require_standard_strings();

	relid = PG_GETARG_OID(0);
	if (SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relid)))
		pk_ib_owner_before_lock(relid);
	LockRelationOid(relid, AccessShareLock);
	if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relid)))
	{
		UnlockRelationOid(relid, AccessShareLock);
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	}
	pk_ib_check_table(relid, true);

	columns = pk_ib_text_array(PG_GETARG_ARRAYTYPE_P(1), "columns");
	if (columns == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("columns must name at least one column"),
				 errhint("For an index on expressions, pass a CREATE INDEX statement instead.")));
	foreach(lc, columns)
	{
		pk_ib_check_name_length("column name", lfirst(lc));
		(void) pk_ib_column(relid, lfirst(lc), &atttype, &attcoll);
	}
	if (!PG_ARGISNULL(5))
	{
		include = pk_ib_text_array(PG_GETARG_ARRAYTYPE_P(5), "include");
		foreach(lc, include)
		{
			pk_ib_check_name_length("column name", lfirst(lc));
			(void) pk_ib_column(relid, lfirst(lc), &atttype, &attcoll);
		}
	}
	if (!PG_ARGISNULL(2))
	{
		name = text_to_cstring(PG_GETARG_TEXT_PP(2));
		pk_ib_check_index_name(name);
	}
	method = text_to_cstring(PG_GETARG_TEXT_PP(3));
	pk_ib_check_name_length("access method name", method);
	if (!OidIsValid(get_index_am_oid(method, true)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("access method \"%s\" does not exist", method),
				 errhint("Index access methods are listed in pg_am with amtype 'i', for example btree, hash, gist, gin and brin.")));
	if (!PG_ARGISNULL(4))
	{
		predicate = text_to_cstring(PG_GETARG_TEXT_PP(4));
		pk_ib_check_predicate(predicate);
	}

	initStringInfo(&def);
	appendStringInfo(&def, "CREATE %sINDEX ", PG_GETARG_BOOL(6) ? "UNIQUE " : "");
	if (name != NULL)
		appendStringInfo(&def, "%s ", quote_identifier(name));
	appendStringInfo(&def, "ON %s USING %s (",
					 quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
												get_rel_name(relid)),
					 quote_identifier(method));
	foreach(lc, columns)
		appendStringInfo(&def, "%s%s", foreach_current_index(lc) > 0 ? ", " : "",
						 quote_identifier(lfirst(lc)));
	appendStringInfoChar(&def, ')');
	if (include != NIL)
	{
		appendStringInfoString(&def, " INCLUDE (");
		foreach(lc, include)
			appendStringInfo(&def, "%s%s", foreach_current_index(lc) > 0 ? ", " : "",
							 quote_identifier(lfirst(lc)));
		appendStringInfoChar(&def, ')');
	}
	/* a trailing "--" comment in the predicate must not swallow the parenthesis */
	if (predicate != NULL)
		appendStringInfo(&def, " WHERE (%s%s)", predicate,
						 strstr(predicate, "--") ? "\n" : "");

	PG_RETURN_INT64(pk_ib_request_create(def.data));
}

/* perfkit.drop_index_concurrently(idx regclass): request DROP INDEX CONCURRENTLY */
Datum
perfkit_drop_index_concurrently(PG_FUNCTION_ARGS)
{
	Oid			indexoid;
	Oid			relid;
	Oid			constraint;
	char		relkind;
	char	   *name;
	char	   *nspname;

	pk_ib_require_loaded();
	pk_ib_not_null(fcinfo, 0, "index", NULL);
	indexoid = PG_GETARG_OID(0);

	relkind = get_rel_relkind(indexoid);
	if (relkind == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("index with OID %u does not exist", indexoid)));
	name = get_rel_name(indexoid);
	if (relkind == RELKIND_PARTITIONED_INDEX)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot drop partitioned index \"%s\" concurrently", name)));
	if (relkind != RELKIND_INDEX)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not an index", name),
				 errhint("perfkit.drop_index_concurrently() drops indexes only.")));

	relid = IndexGetRelation(indexoid, false);
	pk_ib_owner_before_lock(relid);
	LockRelationOid(relid, AccessShareLock);
	pk_ib_check_table(relid, false);
	constraint = get_index_constraint(indexoid);
	if (OidIsValid(constraint))
		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("cannot drop index \"%s\" because constraint \"%s\" requires it",
						name, get_constraint_name(constraint)),
				 errhint("Drop the constraint with ALTER TABLE ... DROP CONSTRAINT instead.")));

	nspname = get_namespace_name(get_rel_namespace(indexoid));
	PG_RETURN_INT64(pk_ib_insert_request("drop", relid, indexoid, name,
										 psprintf("DROP INDEX CONCURRENTLY %s",
												  quote_qualified_identifier(nspname, name))));
}

/*
 * Ask the builder to interrupt a running build (it drops what it left).
 * The signal is decided while the build's statement runs and counted in
 * cancel_signalling until kill() returns: the builder waits for that count
 * before its next statement, so the SIGINT cannot hit another build.
 */
static void
pk_ib_cancel_running(int64 id)
{
	PkIbDatabase *slot;
	int			pid = 0;

	SpinLockAcquire(&pk_ib->mutex);
	slot = pk_ib_slot_locked(MyDatabaseId, true);
	if (slot != NULL)
	{
		slot->cancel_id = id;
		if (slot->worker_pid != 0 && slot->running_id == id)
		{
			pid = slot->worker_pid;
			slot->cancel_signalling++;
		}
	}
	SpinLockRelease(&pk_ib->mutex);

	/* the builder accepts SIGINT only while it runs a build's statement */
	if (pid != 0)
	{
		(void) kill(pid, SIGINT);
		/* the slot stays this database's while the count is nonzero */
		SpinLockAcquire(&pk_ib->mutex);
		slot->cancel_signalling--;
		SpinLockRelease(&pk_ib->mutex);
	}
	pk_ib_wake_database(MyDatabaseId);
}

/*
 * perfkit.cancel_index_build(id): cancel a pending build (in the caller's
 * transaction) or interrupt a running one; false when it already ended.
 */
Datum
perfkit_cancel_index_build(PG_FUNCTION_ARGS)
{
	MemoryContext cxt = CurrentMemoryContext;
	int64		id;
	Oid			reqrel;
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1];
	PkSavedIdentity saved;
	char	   *status = NULL;
	Oid			requested_by = InvalidOid;
	bool		found = false;
	bool		cancelled = false;
	bool		isnull;

	pk_ib_require_loaded();
	pk_ib_not_null(fcinfo, 0, "index build id", "Pass an id from perfkit.index_builds.");
	id = PG_GETARG_INT64(0);
	values[0] = Int64GetDatum(id);
	reqrel = pk_ib_requests_table();

	pk_ib_become_owner(reqrel, &saved);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args("SELECT status, requested_by FROM perfkit.index_build_requests"
							  " WHERE id OPERATOR(pg_catalog.=) $1",
							  1, argtypes, values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read index build %lld", (long long) id);
	if (SPI_processed == 1)
	{
		found = true;
		status = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		requested_by = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
													  SPI_tuptable->tupdesc, 2, &isnull));
	}
	if (found && has_privs_of_role(saved.userid, requested_by) && strcmp(status, "pending") == 0)
	{
		if (SPI_execute_with_args("UPDATE perfkit.index_build_requests"
								  " SET status = 'cancelled', finished_at = pg_catalog.now(), retry_at = NULL"
								  " WHERE id OPERATOR(pg_catalog.=) $1"
								  " AND status OPERATOR(pg_catalog.=) 'pending'",
								  1, argtypes, values, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not cancel index build %lld", (long long) id);
		cancelled = SPI_processed == 1;
		if (!cancelled)
		{
			/* the builder claimed it meanwhile */
			if (SPI_execute_with_args("SELECT status FROM perfkit.index_build_requests"
									  " WHERE id OPERATOR(pg_catalog.=) $1",
									  1, argtypes, values, NULL, false, 1) == SPI_OK_SELECT &&
				SPI_processed == 1)
				status = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		}
	}
	if (status != NULL)
		status = MemoryContextStrdup(cxt, status);
	SPI_finish();
	pk_run_as_end(&saved);

	if (!found)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("index build %lld does not exist", (long long) id),
				 errhint("The builds of this database are listed in perfkit.index_builds.")));
	if (!has_privs_of_role(GetUserId(), requested_by))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to cancel index build %lld", (long long) id),
				 errdetail("Only the role that requested a build, its members and superusers can cancel it.")));
	if (!cancelled && strcmp(status, "running") == 0)
	{
		pk_ib_cancel_running(id);
		cancelled = true;
	}
	PG_RETURN_BOOL(cancelled);
}

/*
 * Number of this database's pending and running builds, read as the
 * requests table's owner; -1 when the extension is gone.
 */
static int64
pk_ib_outstanding(void)
{
	Oid			reqrel = pk_ib_requests_relid(NoLock);
	PkSavedIdentity saved;
	bool		isnull;
	int64		n;

	if (!OidIsValid(reqrel))
		return -1;
	pk_ib_become_owner(reqrel, &saved);
	if (SPI_execute("SELECT pg_catalog.count(*) FROM perfkit.index_build_requests"
					" WHERE status OPERATOR(pg_catalog.=) 'pending'"
					" OR status OPERATOR(pg_catalog.=) 'running'",
					false, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not count the pending index builds");
	n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	pk_run_as_end(&saved);
	return n;
}

/*
 * CALL perfkit.wait_for_index_builds(timeout): wait until this database has
 * no pending or running build, or the timeout passes; returns finished.
 *
 * A build waits for every transaction whose snapshot is older than its own,
 * so the waiter must hold none while it sleeps: this procedure commits
 * after each look at the table (SPI_commit) and sleeps on its latch between
 * looks, outside any snapshot.  That is only possible in a non-atomic CALL,
 * i.e. not inside a transaction block or a function: there it fails at
 * once instead of waiting for a build that waits for it.
 */
Datum
perfkit_wait_for_index_builds(PG_FUNCTION_ARGS)
{
	CallContext *callctx = (fcinfo->context && IsA(fcinfo->context, CallContext)) ?
		(CallContext *) fcinfo->context : NULL;
	Interval   *timeout;
	double		timeout_total_ms;
	int64		timeout_ms;
	TimestampTz deadline;
	bool		finished = false;
	TupleDesc	tupdesc;
	Datum		values[1];
	bool		nulls[1] = {false};

	pk_ib_require_loaded();
	if (callctx == NULL || callctx->atomic)
	{
		if (IsTransactionBlock())
			ereport(ERROR,
					(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
					 errmsg("perfkit.wait_for_index_builds() cannot run inside a transaction block"),
					 errdetail("Builds start when the requesting transaction commits, and each build waits for all older transactions, this one included."),
					 errhint("COMMIT first, then CALL perfkit.wait_for_index_builds() on its own.")));
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("perfkit.wait_for_index_builds() must be run with CALL outside any function"),
				 errdetail("A function holds its statement's snapshot, which the builds would wait for."),
				 errhint("Run CALL perfkit.wait_for_index_builds() as a statement of its own.")));
	}
	pk_ib_not_null(fcinfo, 0, "timeout", "Pass an interval such as '10 minutes'.");
	timeout = PG_GETARG_INTERVAL_P(0);
	/* in floating point: months and days of a huge interval overflow int64 microseconds */
	timeout_total_ms = (double) timeout->time / 1000.0 +
		((double) timeout->day + (double) timeout->month * DAYS_PER_MONTH) *
		(double) (USECS_PER_DAY / 1000);
	if (timeout_total_ms < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout must not be negative")));
	/* beyond about 100 years, wait without a deadline */
	if (timeout_total_ms > PK_IB_WAIT_MAX_MS)
		deadline = DT_NOEND;
	else
	{
		timeout_ms = (int64) timeout_total_ms;
		deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	}

	if (SPI_connect_ext(SPI_OPT_NONATOMIC) != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	for (bool first = true;; first = false)
	{
		int64		outstanding = pk_ib_outstanding();
		TimestampTz now;
		long		sleep_ms;

		/* end the transaction: no snapshot, no lock while we sleep */
		SPI_commit();
		if (outstanding <= 0)
		{
			finished = true;
			break;
		}
		/* a nudge covers requests nobody woke the builder for (e.g. inserted by hand) */
		if (first)
			pk_ib_wake_database(MyDatabaseId);
		now = GetCurrentTimestamp();
		if (now >= deadline)
			break;
		sleep_ms = Min(PK_IB_WAIT_POLL_MS, (deadline - now + 999) / 1000);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 sleep_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	SPI_finish();

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);
	values[0] = BoolGetDatum(finished);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
