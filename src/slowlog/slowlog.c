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
#include "commands/explain.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "mb/stringinfo_mb.h"
#include "miscadmin.h"
#include "nodes/params.h"
#include "storage/shmem.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "slowlog/slowlog.h"

#define PK_TRUNCATED_MARK	"\n[... truncated]"

PkSlowRing *pk_slow_ring = NULL;

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
		pk_slow_ring->lock = &(GetNamedLWLockTranche("perfkit"))[1].lock;
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
