/*-------------------------------------------------------------------------
 *
 * redis_safe.c
 *	  What may be pushed to Redis: the statement's text, its plan, the
 *	  relations it reads, and the user's exclusions.
 *
 * A pushed result must be exactly what any later execution of the same
 * text with the same parameters by the same role would return, until a
 * write to one of the relations it read is committed (then it is
 * invalidated).  So a result is pushed only when:
 *	- the source text holds this one statement (the key hashes it);
 *	- the plan is a plain SELECT: no FOR UPDATE/SHARE, no data-modifying
 *	  WITH, no node whose output perfkit cannot reason about (foreign and
 *	  custom scans, TABLESAMPLE, transition tables);
 *	- every function, operator, aggregate and cast it calls is IMMUTABLE,
 *	  and it uses no clock or session value other than the current role
 *	  and database (which are part of the key);
 *	- every relation it reads is an ordinary, partitioned or materialized
 *	  table or a view, permanent (not temporary or unlogged), without row
 *	  level security, and not a system catalog.
 * The relations are recorded with their write generations; a partition
 * read directly is also linked to its ancestors, because rows inserted
 * through the parent are counted as writes of the parent.
 *
 * Everything here is read-only and runs only for hot statements: a walk of
 * the plan tree and a syscache lookup per relation, no table scans (except
 * pg_inherits for a partition queried directly).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/partition.h"
#include "catalog/pg_class.h"
#include "catalog/pg_proc.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "nodes/pathnodes.h"
#include "parser/scansup.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/varlena.h"

#include "core/compat.h"
#include "core/plan_walk.h"
#include "redis/redis_internal.h"

/* Parsed perfkit.redis_exclude_queries */
typedef struct PkExcludeQueries
{
	int			n;
	int64		ids[FLEXIBLE_ARRAY_MEMBER];
} PkExcludeQueries;

/* One entry of perfkit.redis_exclude_tables: table or schema.table */
typedef struct PkExcludeTable
{
	char		schema[NAMEDATALEN];	/* "" = any schema */
	char		name[NAMEDATALEN];
} PkExcludeTable;

/* Parsed perfkit.redis_exclude_tables */
typedef struct PkExcludeTables
{
	int			n;
	PkExcludeTable tables[FLEXIBLE_ARRAY_MEMBER];
} PkExcludeTables;

static PkExcludeQueries *pk_excluded_queries = NULL;
static PkExcludeTables *pk_excluded_tables = NULL;

/* Callback of check_functions_in_node: true for a function that is not immutable */
static bool
pk_not_immutable(Oid funcid, void *context)
{
	return func_volatile(funcid) != PROVOLATILE_IMMUTABLE;
}

/* True when an expression calls something whose result is not a function of its input */
static bool
pk_unsafe_expr(Node *node, void *context)
{
	if (node == NULL)
		return false;
	if (check_functions_in_node(node, pk_not_immutable, NULL))
		return true;
	if (IsA(node, SQLValueFunction))
	{
		switch (((SQLValueFunction *) node)->op)
		{
			case SVFOP_CURRENT_ROLE:
			case SVFOP_CURRENT_USER:
			case SVFOP_USER:
			case SVFOP_CURRENT_CATALOG:
				break;			/* the key holds the role and the database */
			default:
				return true;	/* clocks, session_user, current_schema */
		}
	}
	if (IsA(node, NextValueExpr))
		return true;
	return expression_tree_walker(node, pk_unsafe_expr, context);
}

/* True when the expressions of run-time partition pruning are unsafe */
static bool
pk_unsafe_pruning(PartitionPruneInfo *info)
{
	ListCell   *lc1;

	if (info == NULL)
		return false;
	foreach(lc1, info->prune_infos)
	{
		ListCell   *lc2;

		foreach(lc2, (List *) lfirst(lc1))
		{
			PartitionedRelPruneInfo *pinfo = lfirst(lc2);
			List	   *steps = list_concat_copy(pinfo->initial_pruning_steps,
												 pinfo->exec_pruning_steps);
			ListCell   *lc3;

			foreach(lc3, steps)
			{
				Node	   *step = lfirst(lc3);

				if (IsA(step, PartitionPruneStepOp) &&
					pk_unsafe_expr((Node *) ((PartitionPruneStepOp *) step)->exprs, NULL))
					return true;
			}
		}
	}
	return false;
}

static bool pk_unsafe_plan(Plan *plan, PlannedStmt *pstmt);

/* True when one of a list of plans is unsafe */
static bool
pk_unsafe_plans(List *plans, PlannedStmt *pstmt)
{
	ListCell   *lc;

	foreach(lc, plans)
		if (pk_unsafe_plan((Plan *) lfirst(lc), pstmt))
			return true;
	return false;
}

/*
 * The expressions a plan node holds besides its target list, qual and
 * initPlans, into e[0..3]; false for node types whose results are never
 * cacheable.
 */
static bool
pk_plan_node_exprs(Plan *plan, Node **e)
{
	switch (nodeTag(plan))
	{
		case T_Result:
			e[0] = ((Result *) plan)->resconstantqual;
			break;
		case T_IndexScan:
			e[0] = (Node *) ((IndexScan *) plan)->indexqual;
			e[1] = (Node *) ((IndexScan *) plan)->indexqualorig;
			e[2] = (Node *) ((IndexScan *) plan)->indexorderby;
			e[3] = (Node *) ((IndexScan *) plan)->indexorderbyorig;
			break;
		case T_IndexOnlyScan:
			e[0] = (Node *) ((IndexOnlyScan *) plan)->indexqual;
			e[1] = (Node *) ((IndexOnlyScan *) plan)->recheckqual;
			e[2] = (Node *) ((IndexOnlyScan *) plan)->indexorderby;
			e[3] = (Node *) ((IndexOnlyScan *) plan)->indextlist;
			break;
		case T_BitmapIndexScan:
			e[0] = (Node *) ((BitmapIndexScan *) plan)->indexqual;
			e[1] = (Node *) ((BitmapIndexScan *) plan)->indexqualorig;
			break;
		case T_BitmapHeapScan:
			e[0] = (Node *) ((BitmapHeapScan *) plan)->bitmapqualorig;
			break;
		case T_TidScan:
			e[0] = (Node *) ((TidScan *) plan)->tidquals;
			break;
		case T_TidRangeScan:
			e[0] = (Node *) ((TidRangeScan *) plan)->tidrangequals;
			break;
		case T_FunctionScan:
			e[0] = (Node *) ((FunctionScan *) plan)->functions;
			break;
		case T_ValuesScan:
			e[0] = (Node *) ((ValuesScan *) plan)->values_lists;
			break;
		case T_TableFuncScan:
			e[0] = (Node *) ((TableFuncScan *) plan)->tablefunc;
			break;
		case T_NestLoop:
			e[0] = (Node *) ((Join *) plan)->joinqual;
			break;
		case T_MergeJoin:
			e[0] = (Node *) ((Join *) plan)->joinqual;
			e[1] = (Node *) ((MergeJoin *) plan)->mergeclauses;
			break;
		case T_HashJoin:
			e[0] = (Node *) ((Join *) plan)->joinqual;
			e[1] = (Node *) ((HashJoin *) plan)->hashclauses;
			e[2] = (Node *) ((HashJoin *) plan)->hashkeys;
			break;
		case T_Hash:
			e[0] = (Node *) ((Hash *) plan)->hashkeys;
			break;
		case T_Memoize:
			e[0] = (Node *) ((Memoize *) plan)->param_exprs;
			break;
		case T_WindowAgg:
			e[0] = ((WindowAgg *) plan)->startOffset;
			e[1] = ((WindowAgg *) plan)->endOffset;
			e[2] = (Node *) ((WindowAgg *) plan)->runCondition;
			break;
		case T_Limit:
			e[0] = ((Limit *) plan)->limitOffset;
			e[1] = ((Limit *) plan)->limitCount;
			break;
		case T_Append:
		case T_MergeAppend:
		case T_BitmapAnd:
		case T_BitmapOr:
		case T_SubqueryScan:
		case T_Agg:
		case T_ProjectSet:
		case T_RecursiveUnion:
		case T_SeqScan:
		case T_CteScan:
		case T_WorkTableScan:
		case T_Material:
		case T_Sort:
		case T_IncrementalSort:
		case T_Group:
		case T_Unique:
		case T_Gather:
		case T_GatherMerge:
		case T_SetOp:
			break;
		default:
			/* ModifyTable, LockRows, SampleScan, foreign, custom, tuplestores... */
			return false;
	}

	return true;
}

/* True when a plan node, its expressions or its children are not cacheable */
static bool
pk_unsafe_plan(Plan *plan, PlannedStmt *pstmt)
{
	Node	   *e[4] = {NULL, NULL, NULL, NULL};

	if (plan == NULL)
		return false;
	check_stack_depth();

	if (!pk_plan_node_exprs(plan, e))
		return true;
	if (pk_unsafe_pruning(pk_plan_prune_info(plan, pstmt)))
		return true;

	return pk_unsafe_expr((Node *) plan->targetlist, NULL) ||
		pk_unsafe_expr((Node *) plan->qual, NULL) ||
		pk_unsafe_expr((Node *) plan->initPlan, NULL) ||
		pk_unsafe_expr(e[0], NULL) || pk_unsafe_expr(e[1], NULL) ||
		pk_unsafe_expr(e[2], NULL) || pk_unsafe_expr(e[3], NULL) ||
		pk_unsafe_plan(plan->lefttree, pstmt) || pk_unsafe_plan(plan->righttree, pstmt) ||
		pk_unsafe_plans(pk_plan_children(plan), pstmt);
}

/* Whether the plan of a statement is a cacheable plain SELECT */
PkRedisSkip
pk_redis_plan_safe(PlannedStmt *pstmt)
{
	if (pstmt->commandType != CMD_SELECT || pstmt->hasModifyingCTE ||
		pstmt->rowMarks != NIL || pstmt->utilityStmt != NULL ||
		PK_HAS_RESULT_RELATIONS(pstmt))
		return PK_SKIP_UNSAFE;
	if (pk_unsafe_plan(pstmt->planTree, pstmt) || pk_unsafe_plans(pstmt->subplans, pstmt))
		return PK_SKIP_UNSAFE;
	return PK_SKIP_NONE;
}

/* Add a relation to a list without duplicates; false when the list is full */
static bool
pk_add_relid(Oid *relids, int *n, Oid relid)
{
	for (int i = 0; i < *n; i++)
		if (relids[i] == relid)
			return true;
	if (*n >= PK_REDIS_MAX_TABLES)
		return false;
	relids[(*n)++] = relid;
	return true;
}

/* True when a relation is in perfkit.redis_exclude_tables */
static bool
pk_table_excluded(Form_pg_class rel)
{
	char	   *nspname = NULL;
	bool		hit = false;

	if (pk_excluded_tables == NULL)
		return false;
	for (int i = 0; i < pk_excluded_tables->n && !hit; i++)
	{
		PkExcludeTable *t = &pk_excluded_tables->tables[i];

		if (strcmp(t->name, NameStr(rel->relname)) != 0)
			continue;
		if (t->schema[0] == '\0')
			hit = true;
		else
		{
			if (nspname == NULL)
				nspname = get_namespace_name(rel->relnamespace);
			hit = nspname != NULL && strcmp(t->schema, nspname) == 0;
		}
	}
	return hit;
}

/*
 * The relations a statement reads, into relids (at most PK_REDIS_MAX_TABLES).
 * With check, also verify each relation (kind, persistence, row security,
 * catalogs, exclusions) and add the ancestors of partitions read directly.
 */
PkRedisSkip
pk_redis_collect_tables(PlannedStmt *pstmt, bool check, Oid *relids, int *nrelids)
{
	Bitmapset  *children = NULL;
	ListCell   *lc;
	Index		rti = 0;

	*nrelids = 0;
	if (check)
	{
		foreach(lc, pstmt->appendRelations)
			children = bms_add_member(children, ((AppendRelInfo *) lfirst(lc))->child_relid);
	}

	foreach(lc, pstmt->rtable)
	{
		RangeTblEntry *rte = lfirst(lc);
		HeapTuple	tup;
		Form_pg_class rel;
		PkRedisSkip verdict = PK_SKIP_NONE;
		bool		partition;

		rti++;
		if (rte->rtekind == RTE_NAMEDTUPLESTORE)
			return PK_SKIP_UNSAFE;
		if (rte->rtekind != RTE_RELATION)
			continue;
		if (!pk_add_relid(relids, nrelids, rte->relid))
			return PK_SKIP_UNSAFE;
		if (!check)
			continue;

		if (rte->relid < FirstNormalObjectId)
			return PK_SKIP_UNSAFE;	/* catalogs, information_schema */
		tup = SearchSysCache1(RELOID, ObjectIdGetDatum(rte->relid));
		if (!HeapTupleIsValid(tup))
			return PK_SKIP_UNSAFE;
		rel = (Form_pg_class) GETSTRUCT(tup);
		if ((rel->relkind != RELKIND_RELATION && rel->relkind != RELKIND_PARTITIONED_TABLE &&
			 rel->relkind != RELKIND_VIEW && rel->relkind != RELKIND_MATVIEW) ||
			rel->relpersistence != RELPERSISTENCE_PERMANENT || rel->relrowsecurity)
			verdict = PK_SKIP_UNSAFE;
		else if (pk_table_excluded(rel))
			verdict = PK_SKIP_EXCLUDED;
		partition = rel->relispartition;
		ReleaseSysCache(tup);
		if (verdict != PK_SKIP_NONE)
			return verdict;

		/* a partition read on its own: writes through its parents count too */
		if (partition && !bms_is_member(rti, children))
		{
			ListCell   *lc2;

			foreach(lc2, get_partition_ancestors(rte->relid))
				if (!pk_add_relid(relids, nrelids, lfirst_oid(lc2)))
					return PK_SKIP_UNSAFE;
		}
	}
	return PK_SKIP_NONE;
}

/* True when text[0..len) holds only white space and SQL comments */
static bool
pk_only_blanks(const char *text, int len)
{
	int			i = 0;

	while (i < len)
	{
		if (scanner_isspace(text[i]))
			i++;
		else if (text[i] == '-' && i + 1 < len && text[i + 1] == '-')
		{
			while (i < len && text[i] != '\n' && text[i] != '\r')
				i++;
		}
		else if (text[i] == '/' && i + 1 < len && text[i + 1] == '*')
		{
			int			depth = 1;	/* SQL block comments nest */

			for (i += 2; i < len && depth > 0; i++)
			{
				if (text[i] == '/' && i + 1 < len && text[i + 1] == '*')
					depth++, i++;
				else if (text[i] == '*' && i + 1 < len && text[i + 1] == '/')
					depth--, i++;
			}
			if (depth > 0)
				return false;
		}
		else
			return false;
	}
	return true;
}

/*
 * The part of a source text that is this statement: from the start of the
 * text up to location + len (len 0 = to the end).  False when the text
 * holds anything else than this statement, a terminating semicolon and
 * white space.  The statement starts at 0 whatever the parser said: up to
 * 17 it put a text's first statement at 0, from 18 at its first token,
 * after any leading blanks and comments, which belong to the text the
 * client sent (and to the key).
 */
bool
pk_redis_statement_text(const char *source, int location, int len,
						const char **start, int *length)
{
	int			total;
	int			end;

	if (source == NULL)
		return false;
	total = strlen(source);
	if (location > total)
		return false;
	/* something (even only ";") comes before it */
	if (location > 0 && !pk_only_blanks(source, location))
		return false;
	if (location < 0)
		location = 0;			/* -1: unknown, the whole text */
	end = (len <= 0 || location + len > total) ? total : location + len;
	for (const char *p = source + end; *p != '\0'; p++)
		if (*p != ';' && !scanner_isspace(*p))
			return false;
	*start = source;
	*length = end;
	return true;
}

/* True when a fingerprint is in perfkit.redis_exclude_queries */
bool
pk_redis_query_excluded(uint64 queryid)
{
	if (pk_excluded_queries == NULL)
		return false;
	for (int i = 0; i < pk_excluded_queries->n; i++)
		if ((uint64) pk_excluded_queries->ids[i] == queryid)
			return true;
	return false;
}

/* Check hook of perfkit.redis_exclude_queries: a comma-separated list of query ids */
bool
pk_redis_check_exclude_queries(char **newval, void **extra, GucSource source)
{
	char	   *copy = pstrdup(*newval ? *newval : "");
	List	   *items;
	ListCell   *lc;
	PkExcludeQueries *parsed;
	int			i = 0;

	if (!SplitGUCList(copy, ',', &items))
	{
		GUC_check_errdetail("The list syntax is invalid.");
		return false;
	}
	/* the GUC machinery frees extras: allocated its way (compat.h) */
	parsed = pk_guc_malloc(offsetof(PkExcludeQueries, ids) + Max(list_length(items), 1) * sizeof(int64));
	if (parsed == NULL)
		return false;
	foreach(lc, items)
	{
		char	   *end;
		int64		v;

		errno = 0;
		v = strtoi64((char *) lfirst(lc), &end, 10);
		if (errno != 0 || *end != '\0' || end == (char *) lfirst(lc))
		{
			GUC_check_errdetail("\"%s\" is not a query id (a bigint, as in perfkit.statements.queryid).",
								(char *) lfirst(lc));
			pk_guc_free(parsed);
			return false;
		}
		parsed->ids[i++] = v;
	}
	parsed->n = i;
	*extra = parsed;
	return true;
}

/* Assign hook of perfkit.redis_exclude_queries */
void
pk_redis_assign_exclude_queries(const char *newval, void *extra)
{
	pk_excluded_queries = (PkExcludeQueries *) extra;
}

/* Check hook of perfkit.redis_exclude_tables: comma-separated table or schema.table names */
bool
pk_redis_check_exclude_tables(char **newval, void **extra, GucSource source)
{
	char	   *copy = pstrdup(*newval ? *newval : "");
	List	   *items;
	ListCell   *lc;
	PkExcludeTables *parsed;
	int			i = 0;

	if (!SplitIdentifierString(copy, ',', &items))
	{
		GUC_check_errdetail("The list syntax is invalid.");
		return false;
	}
	parsed = pk_guc_malloc(offsetof(PkExcludeTables, tables) +
					Max(list_length(items), 1) * sizeof(PkExcludeTable));
	if (parsed == NULL)
		return false;
	foreach(lc, items)
	{
		char	   *item = lfirst(lc);
		char	   *dot = strrchr(item, '.');
		PkExcludeTable *t = &parsed->tables[i++];

		t->schema[0] = '\0';
		if (dot != NULL)
		{
			*dot = '\0';
			strlcpy(t->schema, item, NAMEDATALEN);
			item = dot + 1;
		}
		strlcpy(t->name, item, NAMEDATALEN);
		if (t->name[0] == '\0' || (dot != NULL && t->schema[0] == '\0'))
		{
			GUC_check_errdetail("Entries are table or schema.table names.");
			pk_guc_free(parsed);
			return false;
		}
	}
	parsed->n = i;
	*extra = parsed;
	return true;
}

/* Assign hook of perfkit.redis_exclude_tables */
void
pk_redis_assign_exclude_tables(const char *newval, void *extra)
{
	pk_excluded_tables = (PkExcludeTables *) extra;
}
