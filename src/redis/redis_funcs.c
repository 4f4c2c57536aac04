/*-------------------------------------------------------------------------
 *
 * redis_funcs.c
 *	  SQL-callable functions of the Redis push: perfkit.redis_key() and the
 *	  row behind the perfkit.redis_status view.
 *
 * redis_key() computes the key exactly as the statement side does, from
 * the text an application sends: the raw parser finds the statement, the
 * same rule as for executions decides what part of the text is hashed
 * (and refuses texts that are never pushed), and the parameters are taken
 * as given, in their text form.  It needs no Redis and reads no shared
 * memory.  The status row copies the shared counters (atomics) and the
 * queue bounds, last error and times under the queue's spinlock.  Two
 * entry points give the row in the shape each SQL declaration expects:
 * perfkit_redis_status (0.1.0 and 0.2.0, 11 columns, still called by
 * databases not yet updated) and perfkit_redis_status_0_3 (13 columns).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "parser/parser.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "redis/redis_internal.h"

PG_FUNCTION_INFO_V1(perfkit_redis_key);
PG_FUNCTION_INFO_V1(perfkit_redis_status);
PG_FUNCTION_INFO_V1(perfkit_redis_status_0_3);

#define PK_REDIS_STATUS_COLS_0_1	11	/* perfkit._redis_status() of 0.1.0 and 0.2.0 */
#define PK_REDIS_STATUS_COLS_0_3	13	/* + last_connected_at, last_error_at */

/* Error unless perfkit's shared memory exists */
static void
pk_redis_require_loaded(void)
{
	pk_require_preloaded(pk_redis != NULL);
}

/* perfkit.redis_key(query text, params text[]): the Redis key of a statement's result */
Datum
perfkit_redis_key(PG_FUNCTION_ARGS)
{
	char	   *query;
	List	   *raw;
	RawStmt    *rs;
	const char *start;
	int			len;
	char	  **params = NULL;
	int			nparams = 0;
	char		hex[PK_REDIS_SHA1_HEX + 1];
	char	   *datname;
	char	   *rolname;

	pk_redis_require_loaded();
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("query must not be null"),
				 errhint("Pass the statement text exactly as the application sends it.")));
	query = text_to_cstring(PG_GETARG_TEXT_PP(0));

	raw = raw_parser(query, RAW_PARSE_DEFAULT);
	if (list_length(raw) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("query must hold exactly one statement"),
				 errdetail("It holds %d.", list_length(raw)),
				 errhint("Results are pushed only for texts that hold a single SELECT statement.")));
	rs = linitial_node(RawStmt, raw);
	if (!IsA(rs->stmt, SelectStmt))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("query must be a SELECT statement"),
				 errhint("Only the results of SELECT, VALUES and TABLE statements are pushed.")));
	if (!pk_redis_statement_text(query, rs->stmt_location, rs->stmt_len, &start, &len))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("query must not have text after its statement"),
				 errdetail("Only white space and semicolons may follow the statement."),
				 errhint("Results of such texts are never pushed: remove what follows the semicolon.")));

	if (!PG_ARGISNULL(1))
	{
		ArrayType  *arr = PG_GETARG_ARRAYTYPE_P(1);
		Datum	   *elems;
		bool	   *nulls;

		if (ARR_NDIM(arr) > 1)
			ereport(ERROR,
					(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
					 errmsg("params must be a one-dimensional array"),
					 errhint("Pass the parameters in order, e.g. ARRAY['42', 'abc'].")));
		deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &nparams);
		params = palloc0(sizeof(char *) * Max(nparams, 1));
		for (int i = 0; i < nparams; i++)
			params[i] = nulls[i] ? NULL : TextDatumGetCString(elems[i]);
	}

	if (!pk_redis_key_hash_texts(start, len, params, nparams, hex))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute the SHA-1 of the statement")));
	datname = get_database_name(MyDatabaseId);
	rolname = GetUserNameFromId(GetUserId(), false);
	PG_RETURN_TEXT_P(cstring_to_text(psprintf("%s:%s:%s:%s", pk_redis_prefix,
											  datname ? datname : "", rolname, hex)));
}

/* The single row of perfkit.redis_status, with the first ncols columns */
static Datum
pk_redis_status_row(FunctionCallInfo fcinfo, int ncols)
{
	TupleDesc	tupdesc;
	Datum		values[PK_REDIS_STATUS_COLS_0_3];
	bool		nulls[PK_REDIS_STATUS_COLS_0_3];
	char		last_error[PK_REDIS_ERROR_LEN];
	TimestampTz last_error_at;
	TimestampTz last_connected_at;
	uint64		head;
	uint64		tail;
	int			i = 0;

	pk_redis_require_loaded();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (tupdesc->natts != ncols)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("perfkit's Redis status function returns %d columns, not %d",
						tupdesc->natts, ncols),
				 errhint("Update the extension: ALTER EXTENSION perfkit UPDATE.")));

	/* this backend's own pending counts first */
	pk_redis_flush_local_counts();
	SpinLockAcquire(&pk_redis->mutex);
	head = pk_redis->head;
	tail = pk_redis->tail;
	strlcpy(last_error, pk_redis->last_error, sizeof(last_error));
	last_error_at = pk_redis->last_error_at;
	last_connected_at = pk_redis->last_connected_at;
	SpinLockRelease(&pk_redis->mutex);

	memset(nulls, 0, sizeof(nulls));
	values[i++] = BoolGetDatum(pg_atomic_read_u32(&pk_redis->enabled) != 0);
	values[i++] = BoolGetDatum(pg_atomic_read_u32(&pk_redis->connected) != 0);
	values[i++] = Int64GetDatum((int64) pg_atomic_read_u64(&pk_redis->pushed));
	values[i++] = Int64GetDatum((int64) pg_atomic_read_u64(&pk_redis->invalidated));
	values[i++] = Int64GetDatum((int64) pg_atomic_read_u64(&pk_redis->skipped_unsafe));
	values[i++] = Int64GetDatum((int64) pg_atomic_read_u64(&pk_redis->skipped_too_big));
	values[i++] = Int64GetDatum((int64) pg_atomic_read_u64(&pk_redis->dropped_queue_full));
	values[i++] = Int64GetDatum((int64) pg_atomic_read_u64(&pk_redis->dropped_stale));
	values[i++] = Int64GetDatum((int64) pg_atomic_read_u64(&pk_redis->errors));
	/* errors may name hosts: only for roles that may read all statistics */
	if (last_error[0] != '\0' && has_privs_of_role(GetUserId(), ROLE_PG_READ_ALL_STATS))
		values[i++] = CStringGetTextDatum(last_error);
	else
		nulls[i++] = true;
	values[i++] = Int64GetDatum((int64) (head - tail));
	if (ncols >= PK_REDIS_STATUS_COLS_0_3)
	{
		/* the times say nothing about hosts: shown to every role */
		nulls[i] = last_connected_at == 0;
		values[i++] = TimestampTzGetDatum(last_connected_at);
		nulls[i] = last_error_at == 0;
		values[i++] = TimestampTzGetDatum(last_error_at);
	}
	Assert(i == ncols);

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/* perfkit._redis_status() of 0.1.0 and 0.2.0 */
Datum
perfkit_redis_status(PG_FUNCTION_ARGS)
{
	return pk_redis_status_row(fcinfo, PK_REDIS_STATUS_COLS_0_1);
}

/* perfkit._redis_status_0_3(): the row of perfkit.redis_status from 0.3.0 on */
Datum
perfkit_redis_status_0_3(PG_FUNCTION_ARGS)
{
	return pk_redis_status_row(fcinfo, PK_REDIS_STATUS_COLS_0_3);
}
