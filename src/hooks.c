/*-------------------------------------------------------------------------
 *
 * hooks.c
 *	  Executor and utility hooks: time every statement and record it.
 *
 * The semantics follow pg_stat_statements so that both report the same
 * calls and rows for a query id when loaded together:
 *	- post_parse_analyze creates the entry of a new optimizable statement
 *	  while the positions of its constants are known, so its text can be
 *	  normalized;
 *	- ExecutorStart asks for whole-query instrumentation (timer and buffer
 *	  usage) when the statement will be recorded, and for per-node
 *	  instrumentation when perfkit.slow_analyze wants actual figures in the
 *	  plans of slow statements;
 *	- ExecutorRun/Finish and ProcessUtility keep pk_nesting_level, the depth
 *	  of statements run inside functions (perfkit.track = all records them
 *	  with toplevel = false);
 *	- ExecutorEnd and ProcessUtility publish the execution (stats.c);
 *	  ExecutorEnd also captures executions above perfkit.slow_threshold
 *	  (slowlog.c) while their plan state still exists;
 *	- the N+1 detector (nplusone.c) reads each statement's constants at
 *	  parse time, taps the rows of row-returning statements in ExecutorRun
 *	  and follows loops in ExecutorEnd;
 *	- the index advisor (advisor_collect.c) samples statements at ExecutorStart and
 *	  keeps their predicates at ExecutorEnd.
 * EXECUTE and PREPARE are not recorded themselves: the prepared statement's
 * own executor run is; DEALLOCATE is recorded from 17 on, as
 * pg_stat_statements does (PK_TIMED_UTILITY in compat.h).
 *
 * Every hook chains to the one installed before it.  No hook allocates
 * beyond the statement's memory, and none does I/O.
 *
 * Preload order: a library listed after perfkit in shared_preload_libraries
 * installs its hooks outside perfkit's, and may change what perfkit's hooks
 * see; pg_stat_statements clears the query id of a utility statement before
 * passing it on, and since it clears it in the statement itself, a utility
 * statement prepared through the extended protocol (a cached plan) comes
 * back without its id at every later execution, whatever the order.  So
 * perfkit takes nothing from another hook on trust: the query id of a
 * utility statement is remembered at parse analysis and found again in
 * ProcessUtility, and the nesting level goes up around every utility
 * statement but EXECUTE and PREPARE, recorded or not.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/parallel.h"
#include "executor/executor.h"
#include "common/hashfn.h"
#include "executor/instrument.h"
#include "parser/analyze.h"
#include "tcop/utility.h"

#include "advisor/advisor.h"
#include "core/compat.h"
#include "hooks.h"
#include "nplusone/nplusone.h"
#include "redis/redis.h"
#include "slowlog/slowlog.h"
#include "stats/stats.h"

static post_parse_analyze_hook_type prev_post_parse_analyze = NULL;
static ExecutorStart_hook_type prev_ExecutorStart = NULL;
static ExecutorRun_hook_type prev_ExecutorRun = NULL;
static ExecutorFinish_hook_type prev_ExecutorFinish = NULL;
static ExecutorEnd_hook_type prev_ExecutorEnd = NULL;
static ProcessUtility_hook_type prev_ProcessUtility = NULL;

/*
 * Query ids of recent utility statements, for ProcessUtility when another
 * hook cleared pstmt->queryId.  Direct-mapped by a hash of the statement's
 * text, which parse analysis and execution see the same (a plan cache may
 * copy the statement node, never its text).  A slot another statement took
 * since loses that statement's id: it then runs unrecorded.
 */
#define PK_UTILITY_ID_SLOTS	64

typedef struct PkUtilityId
{
	uint64		text_hash;
	uint64		queryid;
	NodeTag		tag;			/* of the utility statement */
} PkUtilityId;

static PkUtilityId pk_utility_ids[PK_UTILITY_ID_SLOTS];

/* Hash of a statement's own part of its source text (never 0) */
static uint64
pk_statement_text_hash(const char *source, int location, int len)
{
	const char *text = CleanQuerytext(source ? source : "", &location, &len);
	uint64		hash = hash_bytes_extended((const unsigned char *) text, len, 0);

	return hash == 0 ? 1 : hash;
}

/* Remember the query id of a utility statement being parsed */
static void
pk_remember_utility_id(const char *source, Query *query)
{
	uint64		hash = pk_statement_text_hash(source, query->stmt_location, query->stmt_len);
	PkUtilityId *slot = &pk_utility_ids[hash % PK_UTILITY_ID_SLOTS];

	slot->text_hash = hash;
	slot->queryid = query->queryId;
	slot->tag = nodeTag(query->utilityStmt);
}

/*
 * The remembered query id of a utility statement, 0 when forgotten.  The
 * node tag tells the statement from the subcommands it runs with the same
 * text (CREATE TABLE's CREATE SEQUENCE for a serial column), which have no
 * query id of their own.
 */
static uint64
pk_recall_utility_id(const char *source, PlannedStmt *pstmt)
{
	uint64		hash = pk_statement_text_hash(source, pstmt->stmt_location, pstmt->stmt_len);
	PkUtilityId *slot = &pk_utility_ids[hash % PK_UTILITY_ID_SLOTS];

	if (slot->text_hash != hash || slot->tag != nodeTag(pstmt->utilityStmt))
		return UINT64CONST(0);
	return slot->queryid;
}

/* True when perfkit's shared memory exists and this level is tracked */
static inline bool
pk_active(void)
{
	return pk_shmem_attached && pk_tracking(pk_nesting_level);
}

/*
 * Create the entry of a new statement with its normalized text; utility
 * statements too, whose constants the jumbler records from 16 on
 * ("SET x = $1")
 */
static void
pk_post_parse_analyze(ParseState *pstate, Query *query, PkHookJumbleState *jstate)
{
	PkStatsKey	key;

	if (prev_post_parse_analyze)
		prev_post_parse_analyze(pstate, query, jstate);

	pk_nplusone_note_parse(pstate, query, jstate, pk_nesting_level);

	if (query->queryId == UINT64CONST(0))
		return;
	/* only the utility statements ProcessUtility will record */
	if (query->utilityStmt != NULL)
	{
		if (!pk_track_utility || !PK_TIMED_UTILITY(query->utilityStmt))
			return;
		if (pk_shmem_attached)
			pk_remember_utility_id(pstate->p_sourcetext, query);
	}
	if (!pk_active())
		return;
	/* without constants the text needs no normalizing: ExecutorEnd creates it */
	if (jstate == NULL || jstate->clocations_count == 0)
		return;

	pk_stats_make_key(&key, query->queryId, pk_nesting_level == 0);
	pk_stats_ensure_entry(&key, jstate, pstate->p_sourcetext,
						  query->stmt_location, query->stmt_len);
}

/* Ask for whole-query instrumentation when the statement will be recorded or followed */
static void
pk_ExecutorStart(QueryDesc *queryDesc, int eflags)
{
	bool		want_instr;

	/* per-node figures for slow plans: costly, so only on request */
	if (pk_slow_analyze && pk_slow_threshold >= 0 && pk_active() &&
		(eflags & EXEC_FLAG_EXPLAIN_ONLY) == 0)
		queryDesc->instrument_options |= INSTRUMENT_TIMER | INSTRUMENT_ROWS;
	/* the index advisor counts rows per node in the statements it samples */
	pk_advisor_executor_start(queryDesc, eflags, pk_nesting_level);

	/* decided before the executor starts: 19 allocates it there */
	want_instr = (pk_active() || pk_nplusone_enabled) &&
		queryDesc->plannedstmt->queryId != UINT64CONST(0);
	if (want_instr)
		pk_query_instr_request(queryDesc);

	if (prev_ExecutorStart)
		prev_ExecutorStart(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);

	pk_redis_executor_start(queryDesc, eflags);

	if (pk_nesting_level == 0)
		pk_nplusone_note_toplevel(queryDesc->plannedstmt->queryId);

	if (want_instr)
		pk_query_instr_alloc(queryDesc);
}

/* Run the plan one nesting level deeper */
static void
pk_ExecutorRun(PK_EXECUTOR_RUN_PARAMS)
{
	DestReceiver *dest = queryDesc->dest;
	DestReceiver *tap = pk_nplusone_tap(queryDesc, queryDesc->plannedstmt->queryId);

	/* the N+1 detector, then the Redis capture, see the rows on their way to the client */
	if (tap != NULL)
		queryDesc->dest = tap;
	tap = pk_redis_tap(queryDesc);
	if (tap != NULL)
		queryDesc->dest = tap;
	pk_nesting_level++;
	PG_TRY();
	{
		if (prev_ExecutorRun)
			prev_ExecutorRun(PK_EXECUTOR_RUN_ARGS);
		else
			standard_ExecutorRun(PK_EXECUTOR_RUN_ARGS);
	}
	PG_FINALLY();
	{
		pk_nesting_level--;
		queryDesc->dest = dest;
	}
	PG_END_TRY();
}

/* Finish the plan (AFTER triggers) one nesting level deeper */
static void
pk_ExecutorFinish(QueryDesc *queryDesc)
{
	pk_nesting_level++;
	PG_TRY();
	{
		if (prev_ExecutorFinish)
			prev_ExecutorFinish(queryDesc);
		else
			standard_ExecutorFinish(queryDesc);
	}
	PG_FINALLY();
	{
		pk_nesting_level--;
	}
	PG_END_TRY();
}

/* Publish the finished execution */
static void
pk_ExecutorEnd(QueryDesc *queryDesc)
{
	uint64		queryid = queryDesc->plannedstmt->queryId;
	Instrumentation *instr = pk_query_instr(queryDesc);
	double		duration_ms = 0;
	TimestampTz end_time = 0;

	if (instr != NULL)
		duration_ms = pk_query_instr_ms(instr);

	/* one clock read serves the N+1 detector and the statistics */
	if (queryid != UINT64CONST(0) && (pk_nplusone_enabled || pk_active()))
		end_time = GetCurrentTimestamp();

	pk_nplusone_statement_end(queryDesc, queryid, duration_ms, pk_nesting_level, end_time);

	if (queryid != UINT64CONST(0) && instr != NULL && pk_active())
	{
		PkExecution exec;
		PkStatsKey	key;

		memset(&exec, 0, sizeof(exec));
		exec.end_time = end_time;
		exec.duration_ms = duration_ms;
		exec.rows = PK_STATEMENT_ROWS(queryDesc->estate);
		exec.shared_blks_hit = instr->bufusage.shared_blks_hit;
		exec.shared_blks_read = instr->bufusage.shared_blks_read;
		exec.temp_blks_written = instr->bufusage.temp_blks_written;
		exec.slow = pk_is_slow(exec.duration_ms);

		if (exec.slow)
			pk_slowlog_capture(queryDesc, queryid, exec.duration_ms, exec.rows);

		pk_stats_make_key(&key, queryid, pk_nesting_level == 0);
		pk_stats_record(&key, queryDesc->sourceText,
						queryDesc->plannedstmt->stmt_location,
						queryDesc->plannedstmt->stmt_len, &exec);
	}

	pk_redis_executor_end(queryDesc);
	pk_advisor_executor_end(queryDesc, pk_nesting_level);

	if (prev_ExecutorEnd)
		prev_ExecutorEnd(queryDesc);
	else
		standard_ExecutorEnd(queryDesc);
}

/* Rows a utility statement reports, as pg_stat_statements counts them */
static int64
pk_utility_rows(const QueryCompletion *qc)
{
	if (qc == NULL)
		return 0;
	switch (qc->commandTag)
	{
		case CMDTAG_COPY:
		case CMDTAG_FETCH:
		case CMDTAG_SELECT:
		case CMDTAG_REFRESH_MATERIALIZED_VIEW:
			return (int64) qc->nprocessed;
		default:
			return 0;
	}
}

/* Call the next ProcessUtility in the chain */
static inline void
pk_next_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
					   bool readOnlyTree, ProcessUtilityContext context,
					   ParamListInfo params, QueryEnvironment *queryEnv,
					   DestReceiver *dest, QueryCompletion *qc)
{
	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context,
							params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
}

/* Run the next ProcessUtility one nesting level deeper */
static void
pk_nested_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
						 bool readOnlyTree, ProcessUtilityContext context,
						 ParamListInfo params, QueryEnvironment *queryEnv,
						 DestReceiver *dest, QueryCompletion *qc)
{
	pk_nesting_level++;
	PG_TRY();
	{
		pk_next_ProcessUtility(pstmt, queryString, readOnlyTree, context,
							   params, queryEnv, dest, qc);
	}
	PG_FINALLY();
	{
		pk_nesting_level--;
	}
	PG_END_TRY();
}

/* Time a utility statement (DDL, COPY, ...) when perfkit.track_utility is on */
static void
pk_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
				  bool readOnlyTree, ProcessUtilityContext context,
				  ParamListInfo params, QueryEnvironment *queryEnv,
				  DestReceiver *dest, QueryCompletion *qc)
{
	/* read before the chain runs: other extensions may clear it */
	uint64		queryid = pstmt->queryId;
	int			location = pstmt->stmt_location;
	int			len = pstmt->stmt_len;
	instr_time	start;
	instr_time	duration;
	BufferUsage bufstart;
	BufferUsage bufdelta;
	PkExecution exec;
	PkStatsKey	key;

	bool		timed = pk_track_utility && PK_TIMED_UTILITY(pstmt->utilityStmt);

	/* another hook (pg_stat_statements) cleared the id; subcommands never had one */
	if (queryid == UINT64CONST(0) && timed && pk_shmem_attached &&
		context != PROCESS_UTILITY_SUBCOMMAND)
		queryid = pk_recall_utility_id(queryString, pstmt);

	if (pk_nesting_level == 0 && PK_TIMED_UTILITY(pstmt->utilityStmt))
		pk_nplusone_note_toplevel(queryid);

	pk_redis_utility(pstmt);

	/*
	 * Statements run inside a utility statement are nested, whether it is
	 * recorded or not (as pg_stat_statements does from 17 on); but not
	 * inside EXECUTE or PREPARE, whose statement is the client's own.
	 */
	if (!timed && (IsA(pstmt->utilityStmt, ExecuteStmt) || IsA(pstmt->utilityStmt, PrepareStmt)))
	{
		pk_next_ProcessUtility(pstmt, queryString, readOnlyTree, context,
							   params, queryEnv, dest, qc);
		return;
	}
	if (!timed || !pk_active() || queryid == UINT64CONST(0))
	{
		pk_nested_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								 params, queryEnv, dest, qc);
		return;
	}

	bufstart = pgBufferUsage;
	INSTR_TIME_SET_CURRENT(start);
	pk_nested_ProcessUtility(pstmt, queryString, readOnlyTree, context,
							 params, queryEnv, dest, qc);
	INSTR_TIME_SET_CURRENT(duration);
	INSTR_TIME_SUBTRACT(duration, start);

	memset(&bufdelta, 0, sizeof(bufdelta));
	BufferUsageAccumDiff(&bufdelta, &pgBufferUsage, &bufstart);

	memset(&exec, 0, sizeof(exec));
	exec.duration_ms = INSTR_TIME_GET_MILLISEC(duration);
	exec.rows = pk_utility_rows(qc);
	exec.shared_blks_hit = bufdelta.shared_blks_hit;
	exec.shared_blks_read = bufdelta.shared_blks_read;
	exec.temp_blks_written = bufdelta.temp_blks_written;
	exec.slow = pk_is_slow(exec.duration_ms);
	exec.end_time = GetCurrentTimestamp();

	pk_stats_make_key(&key, queryid, pk_nesting_level == 0);
	pk_stats_record(&key, queryString, location, len, &exec);
}

/* Install the hooks of this file, saving the previous ones */
void
pk_install_statement_hooks(void)
{
	prev_post_parse_analyze = post_parse_analyze_hook;
	post_parse_analyze_hook = pk_post_parse_analyze;
	prev_ExecutorStart = ExecutorStart_hook;
	ExecutorStart_hook = pk_ExecutorStart;
	prev_ExecutorRun = ExecutorRun_hook;
	ExecutorRun_hook = pk_ExecutorRun;
	prev_ExecutorFinish = ExecutorFinish_hook;
	ExecutorFinish_hook = pk_ExecutorFinish;
	prev_ExecutorEnd = ExecutorEnd_hook;
	ExecutorEnd_hook = pk_ExecutorEnd;
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = pk_ProcessUtility;
}
