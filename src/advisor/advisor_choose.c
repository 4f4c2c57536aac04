/*-------------------------------------------------------------------------
 *
 * advisor_choose.c
 *	  Index advisor: choose a configuration of indexes for the whole workload.
 *
 * The objective is the workload's cost under a configuration C of new
 * indexes: the sum over the statements of calls x planned cost under C,
 * plus, for each index of C, the cost of maintaining it under the observed
 * writes to its table and a price for its size (perfkit.advisor_space_cost).
 *
 * The search is greedy and sees interactions (AutoAdmin's greedy, Kossmann
 * et al. 2020): a step is one candidate, or a pair for a join (the inner
 * side's join column with a filter of the outer side), and every step is
 * judged by planning the statements with the indexes chosen so far plus the
 * step's.  The step that lowers the objective most is taken, until the best
 * one saves less than PK_ADV_MIN_STEP_SHARE of the workload's cost or the
 * budget is spent.  After a step only the statements that use the leading
 * column of a new index are planned again: no other statement's plan can
 * change.  A pair is taken only when it beats both of its halves alone
 * (PK_ADV_PAIR_MARGIN): the second index must add something of its own.
 *
 * Before the search, a multi-column candidate goes when one of its prefixes
 * alone gets PK_ADV_PREFIX_SHARE of its benefit, so that of two indexes
 * serving a statement about equally the smaller one is proposed.
 *
 * No locks or shared memory: all of this is backend-local.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <float.h>
#include <math.h>

#include "access/htup_details.h"
#include "catalog/pg_am.h"
#include "utils/fmgrprotos.h"
#include "utils/syscache.h"

#include "advisor/advisor_internal.h"

/* A step of the search: one candidate or a pair */
typedef struct PkAdvOption
{
	PkAdvCand  *m[2];			/* members */
	int			n;				/* 1 or 2 */
	bool		dead;			/* taken, or a member is chosen or dropped */
	int			nrel;			/* statements it may help */
	int		   *rel_stmt;		/* their numbers */
	int		   *rel_slot;		/* its slot in each one's opts[] */
	double		net;			/* last computed net saving */
	bool		both;			/* a pair with a statement whose plan uses both */
} PkAdvOption;

/* The state of one search */
typedef struct PkAdvSearch
{
	PkAdvStmt  *stmts;
	int			nstmts;
	PkAdvOption *opts;
	int			nopts;
	PkHypoIndex **conf;			/* the configuration chosen so far */
	int			nconf;
	MemoryContext scratch;		/* parse trees and plans, reset after each statement */
} PkAdvSearch;

/* True when p's key columns are a proper prefix of c's */
static bool
pk_adv_is_prefix(const PkHypoIndex *p, const PkHypoIndex *c)
{
	return p->relid == c->relid && p->amoid == c->amoid && p->ncolumns < c->ncolumns &&
		memcmp(p->attnums, c->attnums, sizeof(AttrNumber) * p->ncolumns) == 0;
}

/* True when the statement has a join clause on the candidate's (single) column */
static bool
pk_adv_is_join_column(const PkAdvStmt *s, const PkHypoIndex *h)
{
	if (h->ncolumns != 1 || h->amoid != BTREE_AM_OID)
		return false;
	for (int i = 0; i < s->nquals; i++)
		if (s->quals[i].cls == PK_CLASS_JOIN && s->quals[i].q.relid == h->relid &&
			s->quals[i].q.attnum == h->attnums[0])
			return true;
	return false;
}

/* True when the statement filters or sorts on the candidate's leading column */
static bool
pk_adv_is_filter_lead(const PkAdvStmt *s, const PkHypoIndex *h)
{
	for (int i = 0; i < s->nquals; i++)
	{
		const PkAdvQual *aq = &s->quals[i];

		if (aq->cls != PK_CLASS_NONE && aq->cls != PK_CLASS_JOIN &&
			aq->q.relid == h->relid && aq->q.attnum == h->attnums[0])
			return true;
	}
	return false;
}

/* The tables a statement has usable predicates on */
static List *
pk_adv_stmt_relids(const PkAdvStmt *s)
{
	List	   *relids = NIL;

	for (int j = 0; j < s->nquals; j++)
		if (s->quals[j].cls != PK_CLASS_NONE)
			relids = list_append_unique_oid(relids, s->quals[j].q.relid);
	return relids;
}

/* Remember the pair (a, b) unless known; pairs is a List of two-element arrays */
static void
pk_adv_add_pair(List **pairs, PkAdvCand *a, PkAdvCand *b)
{
	ListCell   *lc;
	PkAdvCand **p;

	foreach(lc, *pairs)
	{
		p = (PkAdvCand **) lfirst(lc);
		if (p[0] == a && p[1] == b)
			return;
	}
	p = palloc(sizeof(PkAdvCand *) * 2);
	p[0] = a;
	p[1] = b;
	*pairs = lappend(*pairs, p);
}

/*
 * The candidates of every statement (those an existing index covers marked
 * dropped) and, in *pairs, for each join, its join column on one side with
 * each filter candidate of the other side
 */
static List *
pk_adv_all_candidates(PkAdvStmt *stmts, int nstmts, List **pairs)
{
	List	   *cands = NIL;
	ListCell   *lc;

	*pairs = NIL;
	for (int i = 0; i < nstmts; i++)
		for (int j = 0; j < stmts[i].nquals; j++)
			if (stmts[i].quals[j].cls == PK_CLASS_EQ)
				stmts[i].quals[j].eq_freq = pk_adv_eq_frequency(stmts, nstmts,
																stmts[i].quals[j].q.relid,
																stmts[i].quals[j].q.attnum);
	for (int i = 0; i < nstmts; i++)
	{
		PkAdvStmt  *s = &stmts[i];
		List	   *relids = pk_adv_stmt_relids(s);
		List	   *local = NIL;
		List	   *mine = NIL;
		ListCell   *la;
		ListCell   *lb;

		foreach(lc, relids)
			pk_adv_candidates_for(&local, s, lfirst_oid(lc));
		foreach(lc, local)
			mine = lappend(mine, pk_adv_add_candidate(&cands, &((PkAdvCand *) lfirst(lc))->hypo));
		if (list_length(relids) > 1)
			foreach(la, mine)
			{
				PkAdvCand  *a = (PkAdvCand *) lfirst(la);

				if (!pk_adv_is_join_column(s, &a->hypo))
					continue;
				foreach(lb, mine)
				{
					PkAdvCand  *b = (PkAdvCand *) lfirst(lb);

					if (b->hypo.relid != a->hypo.relid && pk_adv_is_filter_lead(s, &b->hypo))
						pk_adv_add_pair(pairs, a, b);
				}
			}
		list_free(relids);
		list_free_deep(local);
		list_free(mine);
	}
	foreach(lc, cands)
	{
		PkAdvCand  *c = (PkAdvCand *) lfirst(lc);

		c->dropped = pk_adv_already_indexed(&c->hypo);
		c->single = -1;
	}
	return cands;
}

/* The options: each live candidate alone, then each pair of live candidates */
static void
pk_adv_make_options(PkAdvSearch *S, List *cands, List *pairs)
{
	ListCell   *lc;
	int			n = 0;

	S->opts = palloc0(sizeof(PkAdvOption) * Max(list_length(cands) + list_length(pairs), 1));
	foreach(lc, cands)
	{
		PkAdvCand  *c = (PkAdvCand *) lfirst(lc);

		if (c->dropped)
			continue;
		c->single = n;
		S->opts[n].m[0] = c;
		S->opts[n++].n = 1;
	}
	foreach(lc, pairs)
	{
		PkAdvCand **p = (PkAdvCand **) lfirst(lc);

		if (p[0]->dropped || p[1]->dropped)
			continue;
		S->opts[n].m[0] = p[0];
		S->opts[n].m[1] = p[1];
		S->opts[n++].n = 2;
	}
	S->nopts = n;
}

/* Link each statement with the options that may help it (it uses all their columns) */
static void
pk_adv_link(PkAdvSearch *S)
{
	int		   *count = palloc0(sizeof(int) * Max(S->nopts, 1));

	for (int i = 0; i < S->nstmts; i++)
	{
		PkAdvStmt  *s = &S->stmts[i];
		int		   *mine = palloc(sizeof(int) * Max(S->nopts, 1));
		List	   *relids = pk_adv_stmt_relids(s);

		s->nopts = 0;
		for (int o = 0; o < S->nopts; o++)
		{
			PkAdvOption *op = &S->opts[o];
			bool		ok = true;

			for (int k = 0; k < op->n && ok; k++)
				ok = list_member_oid(relids, op->m[k]->hypo.relid) &&
					pk_adv_may_help(s, &op->m[k]->hypo);
			if (ok)
			{
				mine[s->nopts++] = o;
				count[o]++;
			}
		}
		s->opts = mine;
		s->ocost = palloc(sizeof(double) * Max(s->nopts, 1));
		s->oused = palloc0(sizeof(uint8) * Max(s->nopts, 1));
		list_free(relids);
	}
	for (int o = 0; o < S->nopts; o++)
	{
		S->opts[o].rel_stmt = palloc(sizeof(int) * Max(count[o], 1));
		S->opts[o].rel_slot = palloc(sizeof(int) * Max(count[o], 1));
	}
	for (int i = 0; i < S->nstmts; i++)
		for (int k = 0; k < S->stmts[i].nopts; k++)
		{
			PkAdvOption *op = &S->opts[S->stmts[i].opts[k]];

			op->rel_stmt[op->nrel] = i;
			op->rel_slot[op->nrel++] = k;
		}
	pfree(count);
}

/* Plan statement i under the configuration and with each of its live options; false if it failed */
static bool
pk_adv_replan(PkAdvSearch *S, int i)
{
	PkAdvStmt  *s = &S->stmts[i];
	PkAdvPlanReq *reqs = palloc(sizeof(PkAdvPlanReq) * Max(s->nopts, 1));
	int		   *slot = palloc(sizeof(int) * Max(s->nopts, 1));
	int			n = 0;
	double		cost;

	for (int k = 0; k < s->nopts; k++)
	{
		PkAdvOption *op = &S->opts[s->opts[k]];

		if (op->dead)
			continue;
		reqs[n].nextra = op->n;
		reqs[n].extra[0] = &op->m[0]->hypo;
		reqs[n].extra[1] = op->n > 1 ? &op->m[1]->hypo : NULL;
		slot[n++] = k;
	}
	if (!pk_adv_plan_statement(s, S->conf, S->nconf, reqs, n, &cost, S->scratch))
	{
		pfree(reqs);
		pfree(slot);
		return false;
	}
	s->cur_cost = cost;
	for (int r = 0; r < n; r++)
	{
		s->ocost[slot[r]] = reqs[r].cost;
		s->oused[slot[r]] = reqs[r].used;
	}
	pfree(reqs);
	pfree(slot);
	return true;
}

/* True when option slot k of statement s helps it: an index of it is used and the plan is cheaper */
static bool
pk_adv_slot_helps(const PkAdvStmt *s, int k)
{
	return s->base_cost > 0 && s->oused[k] != 0 && s->ocost[k] < s->cur_cost * 0.99;
}

/* Read saving of an option over the configuration so far; sets op->both */
static double
pk_adv_read_saving(PkAdvSearch *S, PkAdvOption *op)
{
	double		saving = 0;

	op->both = false;
	for (int r = 0; r < op->nrel; r++)
	{
		PkAdvStmt  *s = &S->stmts[op->rel_stmt[r]];
		int			k = op->rel_slot[r];

		if (!pk_adv_slot_helps(s, k))
			continue;
		saving += s->calls * (s->cur_cost - s->ocost[k]);
		if (s->oused[k] == 3)
			op->both = true;
	}
	return saving;
}

/* Net saving of an option: read saving minus its indexes' maintenance and space */
static double
pk_adv_net(PkAdvSearch *S, PkAdvOption *op)
{
	double		net = pk_adv_read_saving(S, op);

	for (int k = 0; k < op->n; k++)
		net -= op->m[k]->maintenance + op->m[k]->space;
	op->net = net;
	return net;
}

/*
 * A multi-column candidate goes when a prefix alone gets PK_ADV_PREFIX_SHARE
 * of its benefit on the statements it helps (benefits with no new index)
 */
static void
pk_adv_drop_long_prefixed(PkAdvSearch *S)
{
	for (int o = 0; o < S->nopts; o++)
		if (S->opts[o].n == 1)
			S->opts[o].m[0]->benefit = pk_adv_read_saving(S, &S->opts[o]);
	for (int o = 0; o < S->nopts; o++)
	{
		PkAdvOption *oc = &S->opts[o];
		PkAdvCand  *c = oc->m[0];

		if (oc->n != 1 || c->hypo.ncolumns < 2)
			continue;
		for (int q = 0; q < S->nopts; q++)
		{
			PkAdvOption *opf = &S->opts[q];
			double		where = 0;

			if (opf->n != 1 || opf->dead || !pk_adv_is_prefix(&opf->m[0]->hypo, &c->hypo))
				continue;
			/* the prefix's benefit on the statements c helps */
			for (int r = 0; r < oc->nrel; r++)
			{
				PkAdvStmt  *s = &S->stmts[oc->rel_stmt[r]];

				if (!pk_adv_slot_helps(s, oc->rel_slot[r]))
					continue;
				for (int k = 0; k < s->nopts; k++)
					if (s->opts[k] == q && pk_adv_slot_helps(s, k))
						where += s->calls * (s->cur_cost - s->ocost[k]);
			}
			if (where >= PK_ADV_PREFIX_SHARE * c->benefit)
			{
				c->dropped = true;
				break;
			}
		}
	}
	for (int o = 0; o < S->nopts; o++)
		for (int k = 0; k < S->opts[o].n; k++)
			if (S->opts[o].m[k]->dropped)
				S->opts[o].dead = true;
}

/* Maintenance and space prices of each live candidate */
static void
pk_adv_price(PkAdvSearch *S, PkAdvWorkload *w)
{
	for (int o = 0; o < S->nopts; o++)
	{
		PkAdvCand  *c = S->opts[o].m[0];
		double		entries = 0;
		ListCell   *lc;

		if (S->opts[o].n != 1)
			continue;
		c->est_bytes = pk_whatif_estimate_pages(&c->hypo, pk_adv_table_tuples(c->hypo.relid),
												NULL) * BLCKSZ;
		c->space = pk_advisor_space_cost * c->est_bytes / (1024.0 * 1024.0);
		c->maintenance = 0;
		if (!w->weigh_writes)
			continue;
		foreach(lc, w->writes)
		{
			PkAdvWrite *wr = (PkAdvWrite *) lfirst(lc);

			if (wr->relid == c->hypo.relid)
				entries += wr->entries;
		}
		/* other methods write more per row (a GIN entry per element) */
		c->maintenance = entries * PK_ADV_ENTRY_COST * (c->hypo.amoid == BTREE_AM_OID ? 1 : 2);
	}
}

/* Net saving of the single option of c (minus infinity when it has none or it is dead) */
static double
pk_adv_single_net(PkAdvSearch *S, PkAdvCand *c)
{
	if (c->single < 0 || S->opts[c->single].dead)
		return -DBL_MAX;
	return S->opts[c->single].net;
}

/* Take option op as step `step`: credit its statements, extend the configuration */
static void
pk_adv_take(PkAdvSearch *S, PkAdvOption *op, int step)
{
	double		ms = 0;

	for (int r = 0; r < op->nrel; r++)
	{
		int			i = op->rel_stmt[r];
		PkAdvStmt  *s = &S->stmts[i];
		int			k = op->rel_slot[r];

		if (!pk_adv_slot_helps(s, k))
			continue;
		if (s->total_time >= 0)
			ms += s->total_time * (s->cur_cost - s->ocost[k]) / s->base_cost;
		for (int m = 0; m < op->n; m++)
			op->m[m]->served = lappend_int(op->m[m]->served, i);
	}
	for (int m = 0; m < op->n; m++)
	{
		PkAdvCand  *c = op->m[m];

		c->step = step;
		c->saving = op->net / op->n;
		c->saving_ms = ms / op->n;
		S->conf[S->nconf++] = &c->hypo;
	}
	/* options with a chosen member are done: what is left of a pair is its other half alone */
	for (int o = 0; o < S->nopts; o++)
		for (int k = 0; k < S->opts[o].n; k++)
			if (S->opts[o].m[k]->step > 0)
				S->opts[o].dead = true;
}

/* Plan again the statements whose plans the new indexes of op may change */
static void
pk_adv_refresh(PkAdvSearch *S, PkAdvOption *op)
{
	for (int i = 0; i < S->nstmts; i++)
	{
		PkAdvStmt  *s = &S->stmts[i];
		bool		touched = false;

		if (s->base_cost < 0)
			continue;
		for (int m = 0; m < op->n && !touched; m++)
			touched = pk_adv_may_use(s, &op->m[m]->hypo);
		if (touched && !pk_adv_replan(S, i))
			s->base_cost = -1;	/* it no longer plans: out of the search */
	}
}

/* The greedy search; returns the chosen candidates in step order */
static List *
pk_adv_search(PkAdvSearch *S, PkAdvWorkload *w)
{
	List	   *chosen = NIL;
	double		min_step = PK_ADV_MIN_STEP_SHARE * w->total_cost;
	int			step = 0;

	S->conf = palloc(sizeof(PkHypoIndex *) * Max(S->nopts + 2, 1));
	for (;;)
	{
		int			left = w->max_indexes < 0 ? INT_MAX : w->max_indexes - S->nconf;
		PkAdvOption *best = NULL;

		if (left <= 0)
			break;
		for (int o = 0; o < S->nopts; o++)
			if (!S->opts[o].dead && S->opts[o].n == 1)
				pk_adv_net(S, &S->opts[o]);
		for (int o = 0; o < S->nopts; o++)
		{
			PkAdvOption *op = &S->opts[o];

			if (op->dead)
				continue;
			if (op->n == 2)
			{
				double		half = Max(pk_adv_single_net(S, op->m[0]),
									   pk_adv_single_net(S, op->m[1]));

				pk_adv_net(S, op);
				/* a pair must fit the budget and beat its better half by something of its own */
				if (left < 2 || !op->both || op->net < half * PK_ADV_PAIR_MARGIN ||
					op->net - half < min_step)
					continue;
			}
			if (best == NULL || op->net > best->net)
				best = op;
		}
		if (best == NULL || best->net <= 0 || best->net < min_step)
			break;
		step++;
		pk_adv_take(S, best, step);
		for (int m = 0; m < best->n; m++)
			chosen = lappend(chosen, best->m[m]);
		pk_adv_refresh(S, best);
	}
	return chosen;
}

/*
 * Run the advisor over stmts; returns the chosen candidates that reach
 * w->min_improvement, in step order.  Statements with s->query set are
 * planned as they are; others are replayed from their entry.
 */
List *
pk_adv_compute(PkAdvStmt *stmts, int nstmts, PkAdvWorkload *w)
{
	PkAdvSearch S;
	List	   *cands;
	List	   *pairs;
	List	   *chosen;
	List	   *result = NIL;
	ListCell   *lc;

	memset(&S, 0, sizeof(S));
	S.stmts = stmts;
	S.nstmts = nstmts;
	cands = pk_adv_all_candidates(stmts, nstmts, &pairs);
	pk_adv_make_options(&S, cands, pairs);
	pk_adv_link(&S);
	S.scratch = AllocSetContextCreate(CurrentMemoryContext, "perfkit advisor plans",
									  ALLOCSET_DEFAULT_SIZES);

	/* every statement that some option may help, planned without and with each */
	w->total_cost = 0;
	for (int i = 0; i < nstmts; i++)
	{
		stmts[i].base_cost = -1;
		if (stmts[i].nopts == 0 || !pk_adv_replan(&S, i))
			continue;
		stmts[i].base_cost = stmts[i].cur_cost;
		w->total_cost += stmts[i].calls * stmts[i].base_cost;
	}
	pk_adv_drop_long_prefixed(&S);
	pk_adv_price(&S, w);
	chosen = pk_adv_search(&S, w);
	MemoryContextDelete(S.scratch);

	/* each chosen index: its statements' cost before and under the whole configuration */
	foreach(lc, chosen)
	{
		PkAdvCand  *c = (PkAdvCand *) lfirst(lc);
		ListCell   *ls;

		c->before = c->after = 0;
		foreach(ls, c->served)
		{
			PkAdvStmt  *s = &stmts[lfirst_int(ls)];

			c->before += s->calls * s->base_cost;
			c->after += s->calls * Min(s->cur_cost, s->base_cost);
		}
		c->improvement = c->before > 0 ? 100.0 * (1.0 - c->after / c->before) : 0;
		if (c->served != NIL && c->improvement >= w->min_improvement)
			result = lappend(result, c);
	}
	return result;
}
