/*-------------------------------------------------------------------------
 *
 * advisor_whatif.c
 *	  Index advisor, what-if planning: plan a statement as if a set of
 *	  candidate indexes (a configuration) existed, without creating them and
 *	  without executing anything.
 *
 * perfkit's relation-info hook (get_relation_info_hook, from 19
 * build_simple_rel_hook: pk_relinfo_hook in compat.h) adds one hypothetical IndexOptInfo
 * (hypothetical = true) per candidate of the configuration to the planner's
 * view of that candidate's table while pk_whatif_plan() runs the planner;
 * at any other time the hook only chains.  The planner costs the hypothetical index with the access
 * method's own cost estimator, from a size computed here: leaf tuples of
 * the average column widths (pg_statistic, else the type's), pages filled
 * to the default 90%, plus the inner levels and metapage, then 10% more
 * for bloat, so that the estimate errs on the large side and an existing
 * real index of the same shape still wins a tie.
 *
 * The i-th hypothetical index of a configuration has the fake OID
 * PK_WHATIF_FAKE_OID + i (near the top of the OID space, where PostgreSQL
 * does not hand out OIDs for indexes in practice); pk_whatif_used() looks
 * for them in the plan.
 * The planner is called directly (standard_planner), so planner hooks of
 * other extensions never see these plans; perfkit's own planner_hook hides
 * the candidate from plannings nested in it (queries of functions that the
 * planner evaluates), which must see the real catalog only.
 *
 * No locks or shared memory: all of this is backend-local.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/amapi.h"
#include "access/itup.h"
#include "catalog/pg_am.h"
#include "nodes/makefuncs.h"
#include "optimizer/planner.h"
#include "storage/bufpage.h"
#include "utils/lsyscache.h"

#include "advisor/advisor_internal.h"
#include "core/compat.h"
#include "core/plan_walk.h"

#define PK_WHATIF_FAKE_OID	((Oid) 0xFFF00000)
#define PK_WHATIF_MAX		((int) (0xFFFFFF00 - 0xFFF00000))

static pk_relinfo_hook_type prev_relinfo = NULL;
static planner_hook_type prev_planner = NULL;

/* The configuration being planned (NULL when none) and its size */
static PkHypoIndex **pk_whatif_active = NULL;
static int	pk_whatif_nactive = 0;

/* Average stored width of a column, bytes */
static int32
pk_column_width(Oid relid, AttrNumber attnum)
{
	int32		width = get_attavgwidth(relid, attnum);
	Oid			typid;
	int32		typmod;
	Oid			collid;

	if (width > 0)
		return width;
	get_atttypetypmodcoll(relid, attnum, &typid, &typmod, &collid);
	return get_typavgwidth(typid, typmod);
}

/* Index tuples per page of the candidate */
static double
pk_tuples_per_page(const PkHypoIndex *hypo)
{
	double		width = sizeof(IndexTupleData);
	double		usable = (BLCKSZ - SizeOfPageHeaderData - MAXALIGN(16)) * 0.90;
	int			i;

	for (i = 0; i < hypo->ncolumns; i++)
		width += pk_column_width(hypo->relid, hypo->attnums[i]);
	return Max(floor(usable / (MAXALIGN((Size) width) + sizeof(ItemIdData))), 2.0);
}

/*
 * Pessimistic size in pages of the candidate over a table of `tuples` rows;
 * *height (if not NULL) receives the number of levels above the leaves
 */
double
pk_whatif_estimate_pages(const PkHypoIndex *hypo, double tuples, int *height)
{
	double		per_page = pk_tuples_per_page(hypo);
	double		level = ceil(Max(tuples, 1.0) / per_page);
	double		pages = level + 1;	/* leaves and the metapage */
	int			levels = 0;

	while (level > 1)
	{
		level = ceil(level / per_page);
		pages += level;
		levels++;
	}
	if (height != NULL)
		*height = levels;
	pages *= 1.10;
	/* entry trees and signature trees are larger than a btree over the same columns */
	if (hypo->amoid != BTREE_AM_OID)
		pages *= 2;
	return ceil(pages);
}

/* The planner's description of the hypothetical index on rel */
static IndexOptInfo *
pk_hypothetical_index(RelOptInfo *rel, const PkHypoIndex *hypo, Oid indexoid)
{
	IndexOptInfo *info = makeNode(IndexOptInfo);
	const IndexAmRoutine *am = GetIndexAmRoutineByAmId(hypo->amoid, false);
	int			n = hypo->ncolumns;
	int			i;

	info->indexoid = indexoid;
	info->reltablespace = rel->reltablespace;
	info->rel = rel;
	info->ncolumns = info->nkeycolumns = n;
	info->indexkeys = palloc(sizeof(int) * n);
	info->indexcollations = palloc(sizeof(Oid) * n);
	info->opfamily = palloc(sizeof(Oid) * n);
	info->opcintype = palloc(sizeof(Oid) * n);
	info->canreturn = palloc(sizeof(bool) * n);
	info->opclassoptions = palloc0(sizeof(bytea *) * n);
	info->relam = hypo->amoid;

	for (i = 0; i < n; i++)
	{
		Oid			typid;
		int32		typmod;
		Oid			collid;

		get_atttypetypmodcoll(hypo->relid, hypo->attnums[i], &typid, &typmod, &collid);
		info->indexkeys[i] = hypo->attnums[i];
		info->indexcollations[i] = collid;
		info->opfamily[i] = get_opclass_family(hypo->opclasses[i]);
		info->opcintype[i] = get_opclass_input_type(hypo->opclasses[i]);
		info->canreturn[i] = am->amcanreturn != NULL && hypo->amoid == BTREE_AM_OID;
		info->indextlist = lappend(info->indextlist,
								   makeTargetEntry((Expr *) makeVar(rel->relid, hypo->attnums[i],
																	typid, typmod, collid, 0),
												   i + 1, NULL, false));
	}

	if (hypo->amoid == BTREE_AM_OID)
	{
		info->sortopfamily = info->opfamily;
		info->reverse_sort = palloc(sizeof(bool) * n);
		info->nulls_first = palloc(sizeof(bool) * n);
		for (i = 0; i < n; i++)
		{
			info->reverse_sort[i] = hypo->desc[i];
			info->nulls_first[i] = hypo->nulls_first[i];
		}
	}

	info->amcanorderbyop = am->amcanorderbyop;
	info->amoptionalkey = am->amoptionalkey;
	info->amsearcharray = am->amsearcharray;
	info->amsearchnulls = am->amsearchnulls;
	info->amcanparallel = am->amcanparallel;
	info->amhasgettuple = am->amgettuple != NULL;
	info->amhasgetbitmap = am->amgetbitmap != NULL;
	info->amcanmarkpos = am->ammarkpos != NULL && am->amrestrpos != NULL;
	info->amcostestimate = am->amcostestimate;

	info->tuples = rel->tuples;
	info->pages = (BlockNumber) Min(pk_whatif_estimate_pages(hypo, rel->tuples, &info->tree_height),
									(double) MaxBlockNumber);
	info->unique = false;
	info->immediate = true;
	info->hypothetical = true;
	return info;
}

/* Relation-info hook: add the active configuration's candidates to their table's indexes */
static void
pk_relation_info(PK_RELINFO_PARAMS)
{
	int			i;

	if (prev_relinfo)
		prev_relinfo(PK_RELINFO_ARGS);
	if (pk_whatif_active == NULL || PK_RELINFO_INHPARENT)
		return;
	for (i = 0; i < pk_whatif_nactive; i++)
		if (PK_RELINFO_RELID == pk_whatif_active[i]->relid)
			rel->indexlist = lcons(pk_hypothetical_index(rel, pk_whatif_active[i],
														 PK_WHATIF_FAKE_OID + i),
								   rel->indexlist);
}

/*
 * planner_hook: a planning that starts while a candidate is being planned
 * (a query of a function the planner evaluates) must not see the candidate
 */
static PlannedStmt *
pk_planner(PK_PLANNER_PARAMS)
{
	PkHypoIndex **saved = pk_whatif_active;
	int			nsaved = pk_whatif_nactive;
	PlannedStmt *result;

	if (saved == NULL)
		return prev_planner ? prev_planner(PK_PLANNER_ARGS) : standard_planner(PK_PLANNER_ARGS);
	pk_whatif_active = NULL;
	pk_whatif_nactive = 0;
	PG_TRY();
	{
		result = prev_planner ? prev_planner(PK_PLANNER_ARGS) : standard_planner(PK_PLANNER_ARGS);
	}
	PG_FINALLY();
	{
		pk_whatif_active = saved;
		pk_whatif_nactive = nsaved;
	}
	PG_END_TRY();
	return result;
}

/* Install the planner hooks (from _PG_init) */
void
pk_whatif_install_hook(void)
{
	prev_relinfo = pk_relinfo_hook;
	pk_relinfo_hook = pk_relation_info;
	prev_planner = planner_hook;
	planner_hook = pk_planner;
}

/* Plan a copy of query with the hypothetical indexes hypos[0 .. n-1] (none when n is 0) */
PlannedStmt *
pk_whatif_plan(Query *query, const char *text, ParamListInfo params, PkHypoIndex **hypos, int n)
{
	Query	   *copy = copyObject(query);
	PkHypoIndex **saved = pk_whatif_active;
	int			nsaved = pk_whatif_nactive;
	PlannedStmt *pstmt;

	if (n > PK_WHATIF_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many hypothetical indexes in one configuration"),
				 errhint("Lower max_indexes.")));
	pk_whatif_active = n > 0 ? hypos : NULL;
	pk_whatif_nactive = n;
	PG_TRY();
	{
		pstmt = pk_standard_planner(copy, text, CURSOR_OPT_PARALLEL_OK, params);
	}
	PG_FINALLY();
	{
		pk_whatif_active = saved;
		pk_whatif_nactive = nsaved;
	}
	PG_END_TRY();
	return pstmt;
}

/* Mark in used[] the hypothetical indexes (fake OIDs below n) the plan tree scans */
static void
pk_plan_uses(Plan *plan, int n, bool *used)
{
	ListCell   *lc;
	Oid			indexoid = InvalidOid;

	if (plan == NULL)
		return;
	switch (nodeTag(plan))
	{
		case T_IndexScan:
			indexoid = ((IndexScan *) plan)->indexid;
			break;
		case T_IndexOnlyScan:
			indexoid = ((IndexOnlyScan *) plan)->indexid;
			break;
		case T_BitmapIndexScan:
			indexoid = ((BitmapIndexScan *) plan)->indexid;
			break;
		default:
			break;
	}
	if (indexoid >= PK_WHATIF_FAKE_OID && indexoid < PK_WHATIF_FAKE_OID + (Oid) n)
		used[indexoid - PK_WHATIF_FAKE_OID] = true;
	foreach(lc, pk_plan_children(plan))
		pk_plan_uses((Plan *) lfirst(lc), n, used);
	pk_plan_uses(plan->lefttree, n, used);
	pk_plan_uses(plan->righttree, n, used);
}

/* Set used[i] when the planned statement (subplans included) scans hypothetical index i of n */
void
pk_whatif_used(PlannedStmt *pstmt, int n, bool *used)
{
	ListCell   *lc;

	memset(used, 0, sizeof(bool) * n);
	pk_plan_uses(pstmt->planTree, n, used);
	foreach(lc, pstmt->subplans)
		pk_plan_uses((Plan *) lfirst(lc), n, used);
}
