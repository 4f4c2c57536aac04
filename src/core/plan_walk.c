/*-------------------------------------------------------------------------
 *
 * plan_walk.c
 *	  The child plans of a plan node (see plan_walk.h).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "core/plan_walk.h"

/*
 * Child plans of a node besides lefttree and righttree: the members of
 * Append, MergeAppend, BitmapAnd and BitmapOr, a SubqueryScan's subquery,
 * a CustomScan's plans and an Agg's chain.  The list may be the node's own:
 * the caller must not change it.
 */
List *
pk_plan_children(Plan *plan)
{
	switch (nodeTag(plan))
	{
		case T_Append:
			return ((Append *) plan)->appendplans;
		case T_MergeAppend:
			return ((MergeAppend *) plan)->mergeplans;
		case T_BitmapAnd:
			return ((BitmapAnd *) plan)->bitmapplans;
		case T_BitmapOr:
			return ((BitmapOr *) plan)->bitmapplans;
		case T_SubqueryScan:
			return list_make1(((SubqueryScan *) plan)->subplan);
		case T_CustomScan:
			return ((CustomScan *) plan)->custom_plans;
		case T_Agg:
			return ((Agg *) plan)->chain;
		default:
			return NIL;
	}
}
