/*-------------------------------------------------------------------------
 *
 * slowlog.c
 *	  Capture executions that cross perfkit.slow_threshold: their text,
 *	  bind parameters and plan, into a shared ring; optionally log them.
 *
 * Capture runs in ExecutorEnd, before the executor state is freed, and
 * only for executions that already crossed the threshold: the plan text is
 * printed from the plan state in memory (no re-planning, no second
 * execution).  With perfkit.slow_analyze the executor was asked at start
 * to instrument every node, so the plan shows actual rows and times.
 *
 * The ring holds the latest perfkit.slow_max captures in fixed-size slots
 * (PK_SLOW_TEXT_BYTES of text each), so its memory never grows; a text
 * that does not fit is cut at a character boundary and ends with a
 * "[... truncated]" marker.  The ring has its own LWLock, taken exclusive
 * for the memcpy of one slot and shared by readers.  Only slow statements
 * ever write, so this lock is not on the common statement path.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "catalog/pg_authid.h"
#include "commands/explain.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "mb/stringinfo_mb.h"
#include "miscadmin.h"
#include "nodes/params.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "storage/shmem.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/tuplestore.h"

#include "core/compat.h"
#include "slowlog/slowlog.h"

#define PK_TRUNCATED_MARK	"\n[... truncated]"

/* One captured slow execution, in the shared ring */
typedef struct PkSlowEntry
{
	TimestampTz ts;				/* when the execution ended */
	int			pid;			/* backend process id */
	Oid			userid;			/* role */
	Oid			dbid;			/* database */
	uint64		queryid;		/* fingerprint */
	int			level;			/* nesting level, 0 = sent by the client */
	double		duration_ms;	/* execution time */
	int64		rows;			/* rows returned or affected */
	char		application_name[NAMEDATALEN];	/* client's application_name */
	int			query_len;		/* bytes of query at text[0] */
	int			params_len;		/* bytes of params after it, -1 = none */
	int			plan_len;		/* bytes of plan after them */
	char		text[PK_SLOW_TEXT_BYTES];	/* query, params, plan, each NUL-ended */
} PkSlowEntry;

/* The ring of the latest perfkit.slow_max slow executions */
typedef struct PkSlowRing
{
	LWLock	   *lock;			/* protects everything below */
	uint64		captured;		/* executions captured since reset; next slot = captured % size */
	PkSlowEntry entries[FLEXIBLE_ARRAY_MEMBER];
} PkSlowRing;

/* Settings */
int			pk_slow_threshold = 1000;
int			pk_slow_max = 100;
bool		pk_slow_log = false;
bool		pk_slow_analyze = false;
int			pk_slow_params_max_length = 256;

static PkSlowRing *pk_slow_ring = NULL;

/* Register the slow-query settings (from _PG_init) */
void
pk_slowlog_init(void)
{
	DefineCustomIntVariable("perfkit.slow_threshold",
							"Executions at or above this duration are captured as slow queries; -1 disables.",
							NULL, &pk_slow_threshold, 1000, -1, INT_MAX,
							PGC_SUSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("perfkit.slow_max",
							"Number of slow executions kept in the shared ring; the oldest are overwritten.",
							NULL, &pk_slow_max, 100, 0, 10000,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomBoolVariable("perfkit.slow_log",
							 "Also writes each slow execution to the server log, as auto_explain does.",
							 NULL, &pk_slow_log, false,
							 PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomBoolVariable("perfkit.slow_analyze",
							 "Instruments every plan node so that slow plans show actual rows and times (costs throughput).",
							 NULL, &pk_slow_analyze, false,
							 PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("perfkit.slow_params_max_length",
							"Bytes kept of each bind parameter value of a slow execution; 0 keeps none, -1 keeps them whole.",
							NULL, &pk_slow_params_max_length, 256, -1, PK_SLOW_PARAMS_MAX,
							PGC_SUSET, GUC_UNIT_BYTE, NULL, NULL, NULL);
}

/* Shared memory needed by the ring */
Size
pk_slowlog_shmem_size(void)
{
	return add_size(offsetof(PkSlowRing, entries),
					mul_size(pk_slow_max, sizeof(PkSlowEntry)));
}

/* Attach to (or create) the ring; the caller holds AddinShmemInitLock */
void
pk_slowlog_shmem_init(void)
{
	bool		found;

	pk_slow_ring = ShmemInitStruct("perfkit slow queries", pk_slowlog_shmem_size(), &found);
	if (!found)
	{
		pk_slow_ring->lock = pk_lwlock(PK_LOCK_SLOWLOG);
		pk_slow_ring->captured = 0;
	}
}

/*
 * Copy src (len bytes) to dst, which has room for cap bytes plus a NUL;
 * a text that does not fit is cut at a character boundary and marked.
 * Returns the bytes written, without the NUL.
 */
static int
pk_copy_capped(char *dst, const char *src, int len, int cap)
{
	if (len > cap)
	{
		int			mark = strlen(PK_TRUNCATED_MARK);

		len = pg_mbcliplen(src, len, cap - mark);
		memcpy(dst, src, len);
		memcpy(dst + len, PK_TRUNCATED_MARK, mark);
		len += mark;
	}
	else
		memcpy(dst, src, len);
	dst[len] = '\0';
	return len;
}

/*
 * "$1 = '42', $2 = 'abc'" for client bind parameters (as BuildParamLogString
 * writes them), NULL when there are none.  A value larger than
 * PK_SLOW_PARAM_CONVERT_MAX bytes is shown by its size, never converted to
 * text: a 600 MB bytea would need twice that in memory and could fail the
 * user's statement.
 */
#define PK_SLOW_PARAM_CONVERT_MAX	(1024 * 1024)
static char *
pk_format_params(QueryDesc *queryDesc)
{
	ParamListInfo params = queryDesc->params;
	int			maxlen = Max(pk_slow_params_max_length, 0);
	StringInfoData buf;
	int			i;

	if (pk_slow_params_max_length == 0 || params == NULL || params->numParams <= 0)
		return NULL;
	/* parameters fetched on demand (PL/pgSQL variables) are not materialized */
	if (params->paramFetch != NULL)
		return NULL;
	initStringInfo(&buf);
	for (i = 0; i < params->numParams; i++)
	{
		ParamExternData *prm = &params->params[i];
		Oid			typoutput;
		bool		varlena;
		char	   *value;

		appendStringInfo(&buf, "%s$%d = ", i > 0 ? ", " : "", i + 1);
		if (prm->isnull || !OidIsValid(prm->ptype))
		{
			appendStringInfoString(&buf, "NULL");
			continue;
		}
		getTypeOutputInfo(prm->ptype, &typoutput, &varlena);
		if (varlena && toast_raw_datum_size(prm->value) > PK_SLOW_PARAM_CONVERT_MAX)
		{
			appendStringInfo(&buf, "[%zu bytes]", toast_raw_datum_size(prm->value) - VARHDRSZ);
			continue;
		}
		value = OidOutputFunctionCall(typoutput, prm->value);
		appendStringInfoStringQuoted(&buf, value, maxlen);
		pfree(value);
	}
	return buf.data;
}

/* EXPLAIN text of the plan that ran (with actual figures when instrumented) */
static char *
pk_format_plan(QueryDesc *queryDesc)
{
	ExplainState *es = NewExplainState();
	/* row counts the index advisor asked for in a sampled statement are not shown */
	bool		analyzed = queryDesc->planstate != NULL &&
		queryDesc->planstate->instrument != NULL &&
		(pk_slow_analyze || (queryDesc->instrument_options & INSTRUMENT_TIMER) != 0);

	es->format = EXPLAIN_FORMAT_TEXT;
	es->costs = true;
	es->analyze = analyzed;
	es->timing = analyzed && (queryDesc->instrument_options & INSTRUMENT_TIMER) != 0;
	es->summary = false;
	es->verbose = false;
	es->buffers = false;

	ExplainBeginOutput(es);
	ExplainPrintPlan(es, queryDesc);
	if (analyzed)
		ExplainPrintTriggers(es, queryDesc);
	ExplainEndOutput(es);

	/* drop the trailing newline */
	while (es->str->len > 0 && es->str->data[es->str->len - 1] == '\n')
		es->str->data[--es->str->len] = '\0';
	return es->str->data;
}

/* Write one capture into the next slot of the ring */
static void
pk_slowlog_store(const PkSlowEntry *head, const char *query, int query_len,
				 const char *params, const char *plan)
{
	PkSlowEntry *slot;
	int			used;

	if (pk_slow_max <= 0)
		return;

	LWLockAcquire(pk_slow_ring->lock, LW_EXCLUSIVE);
	slot = &pk_slow_ring->entries[pk_slow_ring->captured % pk_slow_max];
	pk_slow_ring->captured++;

	memcpy(slot, head, offsetof(PkSlowEntry, query_len));
	slot->query_len = pk_copy_capped(slot->text, query, query_len, PK_SLOW_QUERY_MAX);
	used = slot->query_len + 1;
	if (params != NULL)
	{
		slot->params_len = pk_copy_capped(slot->text + used, params, strlen(params),
										  PK_SLOW_PARAMS_MAX);
		used += slot->params_len + 1;
	}
	else
		slot->params_len = -1;
	slot->plan_len = pk_copy_capped(slot->text + used, plan, strlen(plan),
									PK_SLOW_TEXT_BYTES - used - 1);
	LWLockRelease(pk_slow_ring->lock);
}

/*
 * Record a slow execution: called from ExecutorEnd, before the plan state
 * is freed.  Works in its own short-lived memory context.
 */
void
pk_slowlog_capture(QueryDesc *queryDesc, uint64 queryid, double duration_ms, int64 rows)
{
	MemoryContext cxt;
	MemoryContext oldcxt;
	PkSlowEntry head;
	const char *query;
	int			location = queryDesc->plannedstmt->stmt_location;
	int			query_len = queryDesc->plannedstmt->stmt_len;
	char	   *params;
	char	   *plan;

	if (pk_slow_ring == NULL)
		return;

	cxt = AllocSetContextCreate(CurrentMemoryContext, "perfkit slow query",
								ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(cxt);

	query = CleanQuerytext(queryDesc->sourceText ? queryDesc->sourceText : "",
						   &location, &query_len);
	params = pk_format_params(queryDesc);
	plan = pk_format_plan(queryDesc);

	memset(&head, 0, offsetof(PkSlowEntry, query_len));
	head.ts = GetCurrentTimestamp();
	head.pid = MyProcPid;
	head.userid = GetUserId();
	head.dbid = MyDatabaseId;
	head.queryid = queryid;
	head.level = pk_nesting_level;
	head.duration_ms = duration_ms;
	head.rows = rows;
	strlcpy(head.application_name, application_name ? application_name : "", NAMEDATALEN);

	pk_slowlog_store(&head, query, query_len, params, plan);

	/* the format of auto_explain, which log analyzers parse */
	if (pk_slow_log)
		ereport(LOG,
				(errmsg("duration: %.3f ms  plan:\nQuery Text: %.*s%s%s\n%s",
						duration_ms, query_len, query,
						params ? "\nQuery Parameters: " : "", params ? params : "",
						plan),
				 errhidestmt(true)));

	MemoryContextSwitchTo(oldcxt);
	MemoryContextDelete(cxt);
}

/* Forget every capture */
void
pk_slowlog_reset(void)
{
	LWLockAcquire(pk_slow_ring->lock, LW_EXCLUSIVE);
	pk_slow_ring->captured = 0;
	LWLockRelease(pk_slow_ring->lock);
}

/* ---------------------------------------------------------------------
 * SQL-callable functions
 * ---------------------------------------------------------------------
 */

PG_FUNCTION_INFO_V1(perfkit_slow_queries);
PG_FUNCTION_INFO_V1(perfkit_reset_slow_queries);
PG_FUNCTION_INFO_V1(perfkit_slow_captured);

#define PK_SLOW_COLS		13

/* Rows of perfkit.slow_queries, newest first */
Datum
perfkit_slow_queries(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			viewer = GetUserId();
	bool		read_all = has_privs_of_role(viewer, ROLE_PG_READ_ALL_STATS);
	uint64		captured;
	uint64		oldest;

	pk_require_preloaded(pk_slow_ring != NULL);
	InitMaterializedSRF(fcinfo, 0);
	if (pk_slow_max <= 0)
		return (Datum) 0;

	LWLockAcquire(pk_slow_ring->lock, LW_SHARED);
	captured = pk_slow_ring->captured;
	oldest = captured > (uint64) pk_slow_max ? captured - pk_slow_max : 0;
	for (uint64 n = captured; n > oldest; n--)
	{
		PkSlowEntry *e = &pk_slow_ring->entries[(n - 1) % pk_slow_max];
		Datum		values[PK_SLOW_COLS];
		bool		nulls[PK_SLOW_COLS];
		bool		visible = read_all || e->userid == viewer;
		const char *params = e->text + e->query_len + 1;
		const char *plan = params + (e->params_len >= 0 ? e->params_len + 1 : 0);
		int			i = 0;

		memset(nulls, 0, sizeof(nulls));
		values[i++] = TimestampTzGetDatum(e->ts);
		values[i++] = Int32GetDatum(e->pid);
		values[i++] = ObjectIdGetDatum(e->userid);
		values[i++] = ObjectIdGetDatum(e->dbid);
		values[i++] = CStringGetTextDatum(e->application_name);
		values[i++] = Int64GetDatum((int64) e->queryid);
		values[i++] = Int32GetDatum(e->level);
		values[i++] = Float8GetDatum(e->duration_ms);
		values[i++] = Int64GetDatum(e->rows);
		if (visible)
			values[i] = PointerGetDatum(cstring_to_text_with_len(e->text, e->query_len));
		nulls[i++] = !visible;
		if (visible && e->params_len >= 0)
			values[i] = PointerGetDatum(cstring_to_text_with_len(params, e->params_len));
		nulls[i] = !(visible && e->params_len >= 0);
		i++;
		if (visible)
			values[i] = PointerGetDatum(cstring_to_text_with_len(plan, e->plan_len));
		nulls[i++] = !visible;
		values[i++] = BoolGetDatum(visible);
		Assert(i == PK_SLOW_COLS);

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	LWLockRelease(pk_slow_ring->lock);

	return (Datum) 0;
}

/* Executions captured since the last reset (the ring keeps the latest perfkit.slow_max) */
Datum
perfkit_slow_captured(PG_FUNCTION_ARGS)
{
	uint64		captured;

	pk_require_preloaded(pk_slow_ring != NULL);
	LWLockAcquire(pk_slow_ring->lock, LW_SHARED);
	captured = pk_slow_ring->captured;
	LWLockRelease(pk_slow_ring->lock);
	PG_RETURN_INT64((int64) captured);
}

/* perfkit.reset_slow_queries(): forget every captured slow execution */
Datum
perfkit_reset_slow_queries(PG_FUNCTION_ARGS)
{
	pk_require_preloaded(pk_slow_ring != NULL);
	pk_slowlog_reset();
	PG_RETURN_VOID();
}
