/*-------------------------------------------------------------------------
 *
 * advisor_choose.c
 *	  Index advisor: measure each candidate over the statements it may help
 *	  and choose the set of recommendations.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "utils/fmgrprotos.h"

#include "advisor/advisor_internal.h"


/* True when p's key columns are a proper prefix of c's */
static bool
pk_adv_is_prefix(const PkHypoIndex *p, const PkHypoIndex *c)
{
	return p->relid == c->relid && p->amoid == c->amoid && p->ncolumns < c->ncolumns &&
		memcmp(p->attnums, c->attnums, sizeof(AttrNumber) * p->ncolumns) == 0;
}

/* The trial of candidate c on statement i, or NULL */
static PkAdvTrial *
pk_adv_trial_for(const PkAdvCand *c, int i)
{
	ListCell   *lc;

	foreach(lc, c->trials)
	{
		PkAdvTrial *t = (PkAdvTrial *) lfirst(lc);

		if (t->stmt == i)
			return t;
	}
	return NULL;
}

/*
 * A chosen index that is a prefix of another chosen one (same method) goes
 * when the longer one, planned for the statements credited to the prefix,
 * serves each of them within PK_ADV_PREFIX_SLACK of the prefix's cost; its
 * statements are credited to the longer one.
 */
static void
pk_adv_merge_prefixes(List *chosen, PkAdvStmt *stmts, int nstmts, PkAdvCand **owner,
					  MemoryContext scratch)
{
	ListCell   *lc;
	ListCell   *lp;
	int			i;

	foreach(lc, chosen)
	{
		PkAdvCand  *c = (PkAdvCand *) lfirst(lc);

		foreach(lp, chosen)
		{
			PkAdvCand  *p = (PkAdvCand *) lfirst(lp);
			bool		serves = true;

			if (p == c || p->dropped || c->dropped || !pk_adv_is_prefix(&p->hypo, &c->hypo))
				continue;
			for (i = 0; i < nstmts && serves; i++)
			{
				PkAdvTrial *tc;
				PkAdvTrial *tp;

				if (owner[i] != p)
					continue;
				if (pk_adv_trial_for(c, i) == NULL)
					pk_adv_plan_statement(stmts, i, list_make1(c), true, scratch);
				tc = pk_adv_trial_for(c, i);
				tp = pk_adv_trial_for(p, i);
				serves = tc != NULL && tp != NULL && tc->used &&
					tc->cost <= tp->cost * PK_ADV_PREFIX_SLACK;
			}
			if (!serves)
				continue;
			p->dropped = true;
			for (i = 0; i < nstmts; i++)
				if (owner[i] == p)
					owner[i] = c;
		}
	}
}

/* Statistics-based share of writes among rows read and written on the table */
static double
pk_adv_write_ratio(Oid relid)
{
	Datum		oid = ObjectIdGetDatum(relid);
	double		writes = DatumGetInt64(DirectFunctionCall1(pg_stat_get_tuples_inserted, oid)) +
		DatumGetInt64(DirectFunctionCall1(pg_stat_get_tuples_updated, oid)) +
		DatumGetInt64(DirectFunctionCall1(pg_stat_get_tuples_deleted, oid));
	double		reads = DatumGetInt64(DirectFunctionCall1(pg_stat_get_tuples_returned, oid)) +
		DatumGetInt64(DirectFunctionCall1(pg_stat_get_tuples_fetched, oid));

	if (writes + reads <= 0)
		return 0;
	return writes / (writes + reads);
}

/*
 * True when trial t counts for candidate c: the planner used the index and
 * the plan got cheaper than bar (the base cost, or what other indexes give);
 * with owner[] set, only for the statements c serves best.
 */
bool
pk_adv_helps(const PkAdvCand *c, const PkAdvTrial *t, const PkAdvStmt *stmts, double bar,
			 PkAdvCand *const *owner)
{
	return t->used && stmts[t->stmt].base_cost > 0 && t->cost < bar * 0.99 &&
		(owner == NULL || owner[t->stmt] == c);
}

/* Figures of a candidate over the statements it helps beyond best[] (NULL: base costs) */
static void
pk_adv_measure(PkAdvCand *c, PkAdvStmt *stmts, const double *best, PkAdvCand *const *owner)
{
	ListCell   *lc;

	c->benefit = c->before = c->after = 0;
	foreach(lc, c->trials)
	{
		PkAdvTrial *t = (PkAdvTrial *) lfirst(lc);
		PkAdvStmt  *s = &stmts[t->stmt];
		double		bar = best ? best[t->stmt] : s->base_cost;

		if (!pk_adv_helps(c, t, stmts, bar, owner))
			continue;
		c->benefit += s->calls * (bar - t->cost);
		c->before += s->calls * s->base_cost;
		c->after += s->calls * t->cost;
	}
	c->improvement = c->before > 0 ? 100.0 * (1.0 - c->after / c->before) : 0;
}

/* Benefit of candidate p on the statements that candidate c helps */
static double
pk_adv_benefit_where(const PkAdvCand *p, const PkAdvCand *c, PkAdvStmt *stmts)
{
	double		benefit = 0;
	ListCell   *lp;
	ListCell   *lc;

	foreach(lp, p->trials)
	{
		PkAdvTrial *tp = (PkAdvTrial *) lfirst(lp);
		PkAdvStmt  *s = &stmts[tp->stmt];

		if (!pk_adv_helps(p, tp, stmts, s->base_cost, NULL))
			continue;
		foreach(lc, c->trials)
		{
			PkAdvTrial *tc = (PkAdvTrial *) lfirst(lc);

			if (tc->stmt == tp->stmt && pk_adv_helps(c, tc, stmts, s->base_cost, NULL))
			{
				benefit += s->calls * (s->base_cost - tp->cost);
				break;
			}
		}
	}
	return benefit;
}

/* Order candidates by score, best first; ties by fewer columns */
static int
pk_adv_cmp_score(const void *a, const void *b)
{
	const PkAdvCand *x = *(PkAdvCand *const *) a;
	const PkAdvCand *y = *(PkAdvCand *const *) b;

	if (x->score != y->score)
		return x->score > y->score ? -1 : 1;
	return x->hypo.ncolumns - y->hypo.ncolumns;
}

/* Step 2: the candidates of every statement, those an existing index covers marked dropped */
static List *
pk_adv_all_candidates(PkAdvStmt *stmts, int nstmts)
{
	List	   *cands = NIL;
	ListCell   *lc;

	for (int i = 0; i < nstmts; i++)
		for (int j = 0; j < stmts[i].nquals; j++)
			if (stmts[i].quals[j].cls == PK_CLASS_EQ)
				stmts[i].quals[j].eq_freq = pk_adv_eq_frequency(stmts, nstmts,
																stmts[i].quals[j].q.relid,
																stmts[i].quals[j].q.attnum);
	for (int i = 0; i < nstmts; i++)
	{
		List	   *relids = NIL;

		for (int j = 0; j < stmts[i].nquals; j++)
			if (stmts[i].quals[j].cls != PK_CLASS_NONE)
				relids = list_append_unique_oid(relids, stmts[i].quals[j].q.relid);
		foreach(lc, relids)
			pk_adv_candidates_for(&cands, &stmts[i], lfirst_oid(lc));
		list_free(relids);
	}
	foreach(lc, cands)
	{
		PkAdvCand  *c = (PkAdvCand *) lfirst(lc);

		c->dropped = pk_adv_already_indexed(&c->hypo);
	}
	return cands;
}

/* Step 3: plan each statement that some live candidate may help, without and with them */
static void
pk_adv_plan_all(PkAdvStmt *stmts, int nstmts, List *cands, MemoryContext scratch)
{
	for (int i = 0; i < nstmts; i++)
	{
		PkAdvStmt  *s = &stmts[i];
		bool		any = false;
		ListCell   *lc;

		s->base_cost = -1;
		foreach(lc, cands)
		{
			PkAdvCand  *c = (PkAdvCand *) lfirst(lc);

			if (!c->dropped && pk_adv_may_help(s, &c->hypo))
			{
				any = true;
				break;
			}
		}
		if (any)
			pk_adv_plan_statement(stmts, i, cands, false, scratch);
	}
}

/*
 * Step 4: the candidates whose benefit reaches min_improvement, scored, a
 * multi-column one dropped when a prefix gets most of its benefit; returns
 * them in an array of *n.
 */
static PkAdvCand **
pk_adv_worthwhile(List *cands, PkAdvStmt *stmts, double min_improvement, int *n)
{
	PkAdvCand **order = palloc(sizeof(PkAdvCand *) * Max(list_length(cands), 1));
	ListCell   *lc;

	*n = 0;
	foreach(lc, cands)
	{
		PkAdvCand  *c = (PkAdvCand *) lfirst(lc);

		if (c->dropped)
			continue;
		pk_adv_measure(c, stmts, NULL, NULL);
		if (c->benefit <= 0 || c->improvement < min_improvement)
			continue;
		c->write_ratio = pk_adv_write_ratio(c->hypo.relid);
		c->score = c->benefit * (1.0 - 0.5 * c->write_ratio);
		order[(*n)++] = c;
	}
	for (int i = 0; i < *n; i++)
		for (int j = 0; j < *n; j++)
			if (i != j && !order[j]->dropped && pk_adv_is_prefix(&order[j]->hypo, &order[i]->hypo) &&
				pk_adv_benefit_where(order[j], order[i], stmts) >=
				PK_ADV_PREFIX_SHARE * order[i]->benefit)
			{
				order[i]->dropped = true;
				break;
			}
	return order;
}

/* Greedy choice by score: each index must add to what the chosen ones give; best[] ends as their costs */
static List *
pk_adv_choose_greedily(PkAdvCand **order, int n, PkAdvStmt *stmts, int nstmts, double *best)
{
	List	   *chosen = NIL;

	qsort(order, n, sizeof(PkAdvCand *), pk_adv_cmp_score);
	for (int i = 0; i < nstmts; i++)
		best[i] = stmts[i].base_cost;
	for (int i = 0; i < n; i++)
	{
		PkAdvCand  *c = order[i];
		PkAdvCand	extra = *c;
		ListCell   *lc;

		if (c->dropped)
			continue;
		pk_adv_measure(&extra, stmts, best, NULL);
		if (extra.benefit < 0.1 * c->benefit)
			continue;
		foreach(lc, c->trials)
		{
			PkAdvTrial *t = (PkAdvTrial *) lfirst(lc);

			if (t->used && t->cost < best[t->stmt])
				best[t->stmt] = t->cost;
		}
		chosen = lappend(chosen, c);
	}
	return chosen;
}

/* Per statement, the chosen index that serves it best (NULL where none helps) */
static PkAdvCand **
pk_adv_credit(List *chosen, PkAdvStmt *stmts, int nstmts, const double *best)
{
	PkAdvCand **owner = palloc0(sizeof(PkAdvCand *) * Max(nstmts, 1));
	ListCell   *lc;

	foreach(lc, chosen)
	{
		PkAdvCand  *c = (PkAdvCand *) lfirst(lc);
		ListCell   *t;

		foreach(t, c->trials)
		{
			PkAdvTrial *tr = (PkAdvTrial *) lfirst(t);

			if (pk_adv_helps(c, tr, stmts, stmts[tr->stmt].base_cost, NULL) &&
				tr->cost <= best[tr->stmt])
				owner[tr->stmt] = c;
		}
	}
	return owner;
}

/*
 * Run the advisor over stmts; returns the chosen candidates, best first.
 * Statements with s->query set are planned as they are; others are
 * replayed from their entry.
 */
List *
pk_adv_compute(PkAdvStmt *stmts, int nstmts, double min_improvement)
{
	List	   *cands;
	List	   *chosen;
	List	   *result = NIL;
	PkAdvCand **order;
	PkAdvCand **owner;
	MemoryContext scratch;
	double	   *best = palloc(sizeof(double) * Max(nstmts, 1));
	ListCell   *lc;
	int			n;

	cands = pk_adv_all_candidates(stmts, nstmts);
	scratch = AllocSetContextCreate(CurrentMemoryContext, "perfkit advisor plans",
									ALLOCSET_DEFAULT_SIZES);
	pk_adv_plan_all(stmts, nstmts, cands, scratch);
	order = pk_adv_worthwhile(cands, stmts, min_improvement, &n);
	chosen = pk_adv_choose_greedily(order, n, stmts, nstmts, best);
	owner = pk_adv_credit(chosen, stmts, nstmts, best);
	pk_adv_merge_prefixes(chosen, stmts, nstmts, owner, scratch);
	MemoryContextDelete(scratch);

	/* report on the chosen indexes, with the statements credited to each */
	foreach(lc, chosen)
	{
		PkAdvCand  *c = (PkAdvCand *) lfirst(lc);

		if (c->dropped)
			continue;
		pk_adv_measure(c, stmts, NULL, owner);
		c->owner = owner;
		c->score = c->benefit * (1.0 - 0.5 * c->write_ratio);
		if (c->benefit > 0 && c->improvement >= min_improvement)
			result = lappend(result, c);
	}
	return result;
}
