/*-------------------------------------------------------------------------
 *
 * plan_walk.h
 *	  Walking a plan tree: the child plans of a node, for the capabilities
 *	  that inspect plans (the advisor's what-if check, Redis's safety check).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PERFKIT_PLAN_WALK_H
#define PERFKIT_PLAN_WALK_H

#include "nodes/plannodes.h"

extern List *pk_plan_children(Plan *plan);

#endif							/* PERFKIT_PLAN_WALK_H */
