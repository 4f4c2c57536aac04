/*-------------------------------------------------------------------------
 *
 * compat.h
 *	  Every difference between the PostgreSQL majors perfkit supports.
 *
 * perfkit builds from one source tree against PostgreSQL 15 and later.
 * Every PG_VERSION_NUM test lives in this file and nowhere else: a version
 * difference becomes a macro or a static inline function named for what it
 * does, and the rest of the code calls that.  When a major changes an API,
 * add the shim here (newest form first) and say which major changed it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PERFKIT_COMPAT_H
#define PERFKIT_COMPAT_H

#include "postgres.h"

#if PG_VERSION_NUM < 150000
#error "perfkit requires PostgreSQL 15 or later"
#endif

/* The server's major times 100 (1500 for 15): the stats file records it, so another major's file is ignored */
#define PK_PG_MAJOR_X100	(PG_VERSION_NUM / 100)

/* 16 moved the query jumbler from utils/ to nodes/ */
#if PG_VERSION_NUM >= 160000
#include "nodes/queryjumble.h"
#else
#include "utils/queryjumble.h"
#endif

/* 16 replaced the per-kind ownership and ACL checks by object_* functions */
#if PG_VERSION_NUM >= 160000
#include "catalog/pg_class.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_tablespace.h"
#define pk_class_ownercheck(relid, roleid) \
	object_ownercheck(RelationRelationId, (relid), (roleid))
#define pk_namespace_aclcheck(nsp, roleid, mode) \
	object_aclcheck(NamespaceRelationId, (nsp), (roleid), (mode))
#define pk_tablespace_aclcheck(spc, roleid, mode) \
	object_aclcheck(TableSpaceRelationId, (spc), (roleid), (mode))
#else
#define pk_class_ownercheck(relid, roleid) pg_class_ownercheck((relid), (roleid))
#define pk_namespace_aclcheck(nsp, roleid, mode) \
	pg_namespace_aclcheck((nsp), (roleid), (mode))
#define pk_tablespace_aclcheck(spc, roleid, mode) \
	pg_tablespace_aclcheck((spc), (roleid), (mode))
#endif

/*
 * Memory of a GUC check hook's "extra": the GUC machinery frees it.  Up to
 * 15 it does so with free(), so it must come from malloc(); from 16 it is
 * freed with guc_free() (a pfree), so it must come from guc_malloc(): a
 * malloc'ed extra makes the next change of the setting fail with "pfree
 * called with invalid pointer" (at COMMIT when the change is
 * transactional).  NULL when out of memory, which the hook reports as false.
 */
#if PG_VERSION_NUM >= 160000
#define pk_guc_malloc(size)		guc_malloc(LOG, (size))
#define pk_guc_free(ptr)		guc_free(ptr)
#else
#define pk_guc_malloc(size)		malloc(size)
#define pk_guc_free(ptr)		free(ptr)
#endif

/* 17 moved the local transaction id of a PGPROC into its vxid */
#if PG_VERSION_NUM >= 170000
#define PK_MY_LXID			(MyProc->vxid.lxid)
#else
#define PK_MY_LXID			(MyProc->lxid)
#endif

/*
 * Rows of a statement as pg_stat_statements counts them: 16 added
 * es_total_processed (all ExecutorRun calls); up to 15 es_processed, which
 * counts the last ExecutorRun only.
 */
#if PG_VERSION_NUM >= 160000
#define PK_STATEMENT_ROWS(estate)	((estate)->es_total_processed)
#else
#define PK_STATEMENT_ROWS(estate)	((estate)->es_processed)
#endif

/*
 * Utility statements timed as themselves (EXECUTE, PREPARE are timed by the
 * executor or not at all): 17 gave DEALLOCATE a query id ("DEALLOCATE $1")
 * and pg_stat_statements times it from then on.
 */
#if PG_VERSION_NUM >= 170000
#define PK_TIMED_UTILITY(node) \
	(!IsA(node, ExecuteStmt) && !IsA(node, PrepareStmt))
#else
#define PK_TIMED_UTILITY(node) \
	(!IsA(node, ExecuteStmt) && !IsA(node, PrepareStmt) && !IsA(node, DeallocateStmt))
#endif

/* 19 made the JumbleState given to post_parse_analyze_hook const */
#if PG_VERSION_NUM >= 190000
typedef const JumbleState PkHookJumbleState;
#else
typedef JumbleState PkHookJumbleState;
#endif

/*
 * Normalizing a statement's text as pg_stat_statements of the same major:
 * 18 squashes constant lists (a location with squashed set and its length
 * already known, printed as "$n" and a ", ..." comment), marks client $n
 * parameters (extern_param: kept as written unless lists were squashed,
 * then renumbered) and numbers placeholders by constants replaced; up to 17
 * the number is the constant's index in the sorted locations.
 */
#if PG_VERSION_NUM >= 180000
#define PK_LOC_SQUASHED(loc)			((loc).squashed)
#define PK_LOC_EXTERN_PARAM(loc)		((loc).extern_param)
#define PK_JUMBLE_HAS_SQUASHED(jstate)	((jstate)->has_squashed_lists)
#define PK_PLACEHOLDER_INDEX(i, nreplaced)	(nreplaced)
#else
#define PK_LOC_SQUASHED(loc)			((void) (loc), false)
#define PK_LOC_EXTERN_PARAM(loc)		((void) (loc), false)
#define PK_JUMBLE_HAS_SQUASHED(jstate)	((void) (jstate), false)
#define PK_PLACEHOLDER_INDEX(i, nreplaced)	(i)
#endif

/* 19 removed escape_string_warning (the lexer no longer warns); before, silence re-lexing */
#if PG_VERSION_NUM >= 190000
#define PK_SCANNER_QUIET(extra)		((void) (extra))
#else
#define PK_SCANNER_QUIET(extra)		((extra).escape_string_warning = false)
#endif

/* 19 removed the standard_conforming_strings variable: it is always on */
#if PG_VERSION_NUM >= 190000
#define PK_STANDARD_CONFORMING_STRINGS	true
#else
#define PK_STANDARD_CONFORMING_STRINGS	standard_conforming_strings
#endif

/*
 * Evaluating index expressions as CREATE INDEX does: 17 runs them with
 * search_path restricted to pg_catalog, pg_temp (RestrictSearchPath) in a
 * GUC nest level of their own.  Begin returns the level for End.
 */
#if PG_VERSION_NUM >= 170000
#include "utils/guc.h"
/* Open a GUC nest level with search_path restricted; returns the level */
static inline int
pk_index_search_path_begin(void)
{
	int			level = NewGUCNestLevel();

	RestrictSearchPath();
	return level;
}

/* End the nest level opened by pk_index_search_path_begin() */
static inline void
pk_index_search_path_end(int level)
{
	AtEOXact_GUC(false, level);
}
#else
/* Nothing to restrict before 17 */
static inline int
pk_index_search_path_begin(void)
{
	return 0;
}

/* Nothing to close before 17 */
static inline void
pk_index_search_path_end(int level)
{
}
#endif

/* 18 moved ExplainState to explain_state.h and the format enums to explain_format.h */
#if PG_VERSION_NUM >= 180000
#include "commands/explain_format.h"
#include "commands/explain_state.h"
#endif

/* 18 dropped ExecutorRun's execute_once argument (hooks and standard_ExecutorRun) */
#if PG_VERSION_NUM >= 180000
#define PK_EXECUTOR_RUN_PARAMS \
	QueryDesc *queryDesc, ScanDirection direction, uint64 count
#define PK_EXECUTOR_RUN_ARGS	queryDesc, direction, count
#else
#define PK_EXECUTOR_RUN_PARAMS \
	QueryDesc *queryDesc, ScanDirection direction, uint64 count, bool execute_once
#define PK_EXECUTOR_RUN_ARGS	queryDesc, direction, count, execute_once
#endif

/* 18 dropped PortalRun's run_once argument; earlier majors get true (the portal runs once) */
#if PG_VERSION_NUM >= 180000
#define pk_PortalRun(portal, count, top, dest, altdest, qc) \
	PortalRun((portal), (count), (top), (dest), (altdest), (qc))
#else
#define pk_PortalRun(portal, count, top, dest, altdest, qc) \
	PortalRun((portal), (count), (top), true, (dest), (altdest), (qc))
#endif

/*
 * Run-time partition pruning of an Append or MergeAppend (NULL for other
 * nodes or none): 18 moved it from the node (part_prune_info) to
 * PlannedStmt->partPruneInfos, indexed by the node's part_prune_index.
 */
#include "nodes/plannodes.h"
#if PG_VERSION_NUM >= 180000
/* The run-time partition pruning of an Append or MergeAppend, else NULL */
static inline PartitionPruneInfo *
pk_plan_prune_info(Plan *plan, PlannedStmt *pstmt)
{
	int			index = -1;

	if (IsA(plan, Append))
		index = ((Append *) plan)->part_prune_index;
	else if (IsA(plan, MergeAppend))
		index = ((MergeAppend *) plan)->part_prune_index;
	if (index < 0)
		return NULL;
	return list_nth_node(PartitionPruneInfo, pstmt->partPruneInfos, index);
}
#else
/* The run-time partition pruning of an Append or MergeAppend, else NULL */
static inline PartitionPruneInfo *
pk_plan_prune_info(Plan *plan, PlannedStmt *pstmt)
{
	if (IsA(plan, Append))
		return ((Append *) plan)->part_prune_info;
	if (IsA(plan, MergeAppend))
		return ((MergeAppend *) plan)->part_prune_info;
	return NULL;
}
#endif

/* 18 reports an ordering operator's comparison (CompareType) instead of its btree strategy */
#include "access/stratnum.h"
#include "utils/lsyscache.h"
#if PG_VERSION_NUM >= 180000
/* Ordering family, input type and direction of an ordering operator; false if it is none */
static inline bool
pk_get_ordering_op_properties(Oid opno, Oid *opfamily, Oid *opcintype, bool *descending)
{
	CompareType cmptype;

	if (!get_ordering_op_properties(opno, opfamily, opcintype, &cmptype))
		return false;
	*descending = (cmptype == COMPARE_GT);
	return true;
}
#else
/* Ordering family, input type and direction of an ordering operator; false if it is none */
static inline bool
pk_get_ordering_op_properties(Oid opno, Oid *opfamily, Oid *opcintype, bool *descending)
{
	int16		strategy;

	if (!get_ordering_op_properties(opno, opfamily, opcintype, &strategy))
		return false;
	*descending = (strategy == BTGreaterStrategyNumber);
	return true;
}
#endif

/* 19 replaced the target relations list of PlannedStmt by a Bitmapset (resultRelationRelids) */
#if PG_VERSION_NUM >= 190000
#define PK_HAS_RESULT_RELATIONS(pstmt)	(!bms_is_empty((pstmt)->resultRelationRelids))
#else
#define PK_HAS_RESULT_RELATIONS(pstmt)	((pstmt)->resultRelations != NIL)
#endif

/* 19 sizes a shared hash by its maximum only (ShmemInitHash lost init_size) */
#if PG_VERSION_NUM >= 190000
#define pk_ShmemInitHash(name, init_size, max_size, info, flags) \
	ShmemInitHash((name), (max_size), (info), (flags))
#else
#define pk_ShmemInitHash(name, init_size, max_size, info, flags) \
	ShmemInitHash((name), (init_size), (max_size), (info), (flags))
#endif

/* 19 added the sender's info to SIGNAL_ARGS: pass them on to another handler */
#if PG_VERSION_NUM >= 190000
#define PK_SIGNAL_ARGS_PASS			postgres_signal_arg, pg_siginfo
#define PK_SIG_IGN					PG_SIG_IGN
#else
#define PK_SIGNAL_ARGS_PASS			postgres_signal_arg
#define PK_SIG_IGN					SIG_IGN
#endif

/*
 * Whole-statement instrumentation (time, buffers).  19 has the executor
 * allocate it (QueryDesc->query_instr) when asked by query_instr_options
 * before ExecutorStart, and keeps its total as an instr_time; up to 18 a
 * module allocates QueryDesc->totaltime after ExecutorStart, and
 * InstrEndLoop() folds the loop into total (seconds as a double).
 */
#include "executor/execdesc.h"
#include "executor/instrument.h"
#include "utils/memutils.h"
#if PG_VERSION_NUM >= 190000
/* Per-node instrumentation of a PlanState (19 split it from Instrumentation) */
typedef NodeInstrumentation PkNodeInstrumentation;

/* Before ExecutorStart: ask for the statement's instrumentation */
static inline void
pk_query_instr_request(QueryDesc *queryDesc)
{
	queryDesc->query_instr_options |= INSTRUMENT_ALL;
}

/* After ExecutorStart: nothing to do, the executor allocated it */
static inline void
pk_query_instr_alloc(QueryDesc *queryDesc)
{
}

/* The statement's instrumentation, NULL when nobody asked for it */
#define pk_query_instr(queryDesc)	((queryDesc)->query_instr)

/* Milliseconds the statement's instrumentation measured */
static inline double
pk_query_instr_ms(Instrumentation *instr)
{
	return INSTR_TIME_GET_MILLISEC(instr->total);
}
#else
typedef Instrumentation PkNodeInstrumentation;

/* Before ExecutorStart: nothing to do before 19 */
static inline void
pk_query_instr_request(QueryDesc *queryDesc)
{
}

/* After ExecutorStart: allocate the statement's instrumentation unless another module did */
static inline void
pk_query_instr_alloc(QueryDesc *queryDesc)
{
	if (queryDesc->totaltime == NULL)
	{
		MemoryContext oldcxt = MemoryContextSwitchTo(queryDesc->estate->es_query_cxt);

		queryDesc->totaltime = InstrAlloc(1, INSTRUMENT_ALL, false);
		MemoryContextSwitchTo(oldcxt);
	}
}

#define pk_query_instr(queryDesc)	((queryDesc)->totaltime)

/* Milliseconds measured; ends the timing loop (harmless if another module did) */
static inline double
pk_query_instr_ms(Instrumentation *instr)
{
	InstrEndLoop(instr);
	return instr->total * 1000.0;
}
#endif

/* 19 gave planner_hook and standard_planner the EXPLAIN state (NULL outside EXPLAIN) */
#if PG_VERSION_NUM >= 190000
#define PK_PLANNER_PARAMS \
	Query *parse, const char *query_string, int cursorOptions, \
	ParamListInfo boundParams, ExplainState *es
#define PK_PLANNER_ARGS		parse, query_string, cursorOptions, boundParams, es
#define pk_standard_planner(parse, text, options, params) \
	standard_planner((parse), (text), (options), (params), NULL)
#else
#define PK_PLANNER_PARAMS \
	Query *parse, const char *query_string, int cursorOptions, \
	ParamListInfo boundParams
#define PK_PLANNER_ARGS		parse, query_string, cursorOptions, boundParams
#define pk_standard_planner(parse, text, options, params) \
	standard_planner((parse), (text), (options), (params))
#endif

/*
 * The hook that lets a module add hypothetical indexes to a relation the
 * planner looks at: 19 replaced get_relation_info_hook by
 * build_simple_rel_hook (run right after get_relation_info(), for every
 * kind of range table entry).  PK_RELINFO_RELID is the table's OID
 * (InvalidOid for other entries), PK_RELINFO_INHPARENT whether the entry
 * stands for an inheritance tree's parent.
 */
#if PG_VERSION_NUM >= 190000
#include "optimizer/pathnode.h"
#define pk_relinfo_hook_type		build_simple_rel_hook_type
#define pk_relinfo_hook				build_simple_rel_hook
#define PK_RELINFO_PARAMS	PlannerInfo *root, RelOptInfo *rel, RangeTblEntry *rte
#define PK_RELINFO_ARGS		root, rel, rte
#define PK_RELINFO_RELID	(rte->rtekind == RTE_RELATION ? rte->relid : InvalidOid)
#define PK_RELINFO_INHPARENT	(rte->inh)
#else
#include "optimizer/plancat.h"
#define pk_relinfo_hook_type		get_relation_info_hook_type
#define pk_relinfo_hook				get_relation_info_hook
#define PK_RELINFO_PARAMS \
	PlannerInfo *root, Oid relationObjectId, bool inhparent, RelOptInfo *rel
#define PK_RELINFO_ARGS		root, relationObjectId, inhparent, rel
#define PK_RELINFO_RELID	relationObjectId
#define PK_RELINFO_INHPARENT	inhparent
#endif

#endif							/* PERFKIT_COMPAT_H */
