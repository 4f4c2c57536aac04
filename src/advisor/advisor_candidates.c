/*-------------------------------------------------------------------------
 *
 * advisor_candidates.c
 *	  Index advisor: classify the collected predicates through the catalog and
 *	  derive candidate indexes per statement and table.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/transam.h"
#include "catalog/pg_am.h"
#include "commands/defrem.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "advisor/advisor_internal.h"
#include "core/compat.h"


/* True for a table the advisor may recommend an index on */
static bool
pk_adv_table_ok(Oid relid)
{
	HeapTuple	tup;
	Form_pg_class form;
	bool		ok;

	if (relid < FirstNormalObjectId)
		return false;
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tup))
		return false;
	form = (Form_pg_class) GETSTRUCT(tup);
	ok = (form->relkind == RELKIND_RELATION || form->relkind == RELKIND_MATVIEW) &&
		form->relpersistence != RELPERSISTENCE_TEMP &&
		form->relpages >= PK_ADV_MIN_PAGES;
	ReleaseSysCache(tup);
	return ok;
}

/* GetDefaultOpClass() scans pg_opclass: remember its answers for one computation */
typedef struct PkOpclassMemo
{
	Oid			typid;
	Oid			amoid;
	Oid			opclass;
} PkOpclassMemo;
static List *pk_adv_opclass_memo = NIL;

/* The default operator class of a type for an access method, memoized */
static Oid
pk_adv_default_opclass(Oid typid, Oid amoid)
{
	ListCell   *lc;
	PkOpclassMemo *m;

	foreach(lc, pk_adv_opclass_memo)
	{
		m = (PkOpclassMemo *) lfirst(lc);
		if (m->typid == typid && m->amoid == amoid)
			return m->opclass;
	}
	m = palloc(sizeof(PkOpclassMemo));
	m->typid = typid;
	m->amoid = amoid;
	m->opclass = GetDefaultOpClass(typid, amoid);
	pk_adv_opclass_memo = lappend(pk_adv_opclass_memo, m);
	return m->opclass;
}

/* Forget the memoized operator classes (their list lived in the last computation's context) */
void
pk_adv_forget_opclasses(void)
{
	pk_adv_opclass_memo = NIL;
}

/* Classify one predicate through the catalog */
static void
pk_adv_classify(PkAdvQual *aq)
{
	static const Oid other_ams[] = {GIN_AM_OID, GIST_AM_OID, SPGIST_AM_OID};
	Oid			typid = get_atttype(aq->q.relid, aq->q.attnum);
	Oid			btclass;
	int			i;

	aq->cls = PK_CLASS_NONE;
	aq->amoid = BTREE_AM_OID;
	if (!OidIsValid(typid) || !pk_adv_table_ok(aq->q.relid))
		return;
	btclass = pk_adv_default_opclass(typid, BTREE_AM_OID);
	aq->opclass = btclass;

	if (aq->q.kind == PK_QUAL_SORT)
	{
		Oid			opfamily;
		Oid			opcintype;
		bool		descending;

		if (OidIsValid(btclass) &&
			pk_get_ordering_op_properties(aq->q.opno, &opfamily, &opcintype, &descending) &&
			opfamily == get_opclass_family(btclass))
		{
			aq->cls = PK_CLASS_SORT;
			aq->desc = descending;
		}
		return;
	}
	if (aq->q.kind == PK_QUAL_FILTER && aq->q.kept >= PK_ADV_MAX_KEPT)
		return;
	if (OidIsValid(btclass))
	{
		int			strategy = get_op_opfamily_strategy(aq->q.opno, get_opclass_family(btclass));

		if (strategy == BTEqualStrategyNumber)
			aq->cls = aq->q.kind == PK_QUAL_JOIN ? PK_CLASS_JOIN : PK_CLASS_EQ;
		else if (strategy != 0 && aq->q.kind != PK_QUAL_JOIN)
			aq->cls = PK_CLASS_RANGE;
		if (aq->cls != PK_CLASS_NONE)
			return;
	}
	if (aq->q.kind == PK_QUAL_JOIN || aq->q.is_array)
		return;
	for (i = 0; i < lengthof(other_ams); i++)
	{
		Oid			opclass = pk_adv_default_opclass(typid, other_ams[i]);

		if (OidIsValid(opclass) && op_in_opfamily(aq->q.opno, get_opclass_family(opclass)))
		{
			aq->cls = PK_CLASS_OTHER;
			aq->amoid = other_ams[i];
			aq->opclass = opclass;
			return;
		}
	}
}

/* Copy and classify a statement's predicates */
void
pk_adv_set_quals(PkAdvStmt *s, const PkQual *quals, int count)
{
	int			i;

	s->quals = palloc0(sizeof(PkAdvQual) * Max(count, 1));
	s->nquals = count;
	for (i = 0; i < count; i++)
	{
		s->quals[i].q = quals[i];
		pk_adv_classify(&s->quals[i]);
	}
}

/* Number of statements with an equality predicate on the column */
int
pk_adv_eq_frequency(PkAdvStmt *stmts, int nstmts, Oid relid, AttrNumber attnum)
{
	int			n = 0;
	int			i,
				j;

	for (i = 0; i < nstmts; i++)
		for (j = 0; j < stmts[i].nquals; j++)
		{
			PkAdvQual  *aq = &stmts[i].quals[j];

			if (aq->cls == PK_CLASS_EQ && aq->q.relid == relid && aq->q.attnum == attnum)
			{
				n++;
				break;
			}
		}
	return n;
}

/* True when the candidate's key columns are a prefix of an existing valid index */
bool
pk_adv_already_indexed(const PkHypoIndex *h)
{
	Relation	rel;
	List	   *indexes;
	ListCell   *lc;
	bool		covered = false;

	rel = try_relation_open(h->relid, AccessShareLock);
	if (rel == NULL)
		return true;
	indexes = RelationGetIndexList(rel);
	foreach(lc, indexes)
	{
		Relation	idx = index_open(lfirst_oid(lc), AccessShareLock);
		Form_pg_index form = idx->rd_index;
		int			i;

		if (form->indisvalid && idx->rd_rel->relam == h->amoid &&
			form->indnkeyatts >= h->ncolumns &&
			heap_attisnull(idx->rd_indextuple, Anum_pg_index_indpred, NULL))
		{
			for (i = 0; i < h->ncolumns; i++)
				if (form->indkey.values[i] != h->attnums[i])
					break;
			covered = (i == h->ncolumns);
		}
		index_close(idx, AccessShareLock);
		if (covered)
			break;
	}
	list_free(indexes);
	relation_close(rel, AccessShareLock);
	return covered;
}

/* Add a candidate unless an equal one exists; returns it (the existing one), NULL for no columns */
PkAdvCand *
pk_adv_add_candidate(List **cands, const PkHypoIndex *h)
{
	ListCell   *lc;
	PkAdvCand  *c;

	if (h->ncolumns == 0)
		return NULL;
	foreach(lc, *cands)
	{
		PkAdvCand  *o = (PkAdvCand *) lfirst(lc);

		if (o->hypo.relid == h->relid && o->hypo.amoid == h->amoid &&
			o->hypo.ncolumns == h->ncolumns &&
			memcmp(o->hypo.attnums, h->attnums, sizeof(AttrNumber) * h->ncolumns) == 0 &&
			memcmp(o->hypo.desc, h->desc, sizeof(bool) * h->ncolumns) == 0 &&
			memcmp(o->hypo.nulls_first, h->nulls_first, sizeof(bool) * h->ncolumns) == 0)
			return o;
	}
	c = palloc0(sizeof(PkAdvCand));
	c->hypo = *h;
	*cands = lappend(*cands, c);
	return c;
}

/* Add a btree candidate and each of its proper prefixes */
static void
pk_adv_add_with_prefixes(List **cands, const PkHypoIndex *h)
{
	PkHypoIndex p = *h;

	for (p.ncolumns = h->ncolumns; p.ncolumns >= 1; p.ncolumns--)
		pk_adv_add_candidate(cands, &p);
}

/* Append a column to a candidate unless present or full; true if appended */
static bool
pk_adv_push_column(PkHypoIndex *h, const PkAdvQual *aq, bool desc, bool nulls_first)
{
	int			i;

	for (i = 0; i < h->ncolumns; i++)
		if (h->attnums[i] == aq->q.attnum)
			return false;
	if (h->ncolumns >= PK_ADV_MAX_COLUMNS)
		return false;
	h->attnums[h->ncolumns] = aq->q.attnum;
	h->opclasses[h->ncolumns] = aq->opclass;
	h->desc[h->ncolumns] = desc;
	h->nulls_first[h->ncolumns] = nulls_first;
	h->ncolumns++;
	return true;
}

/* Order equality predicates: most shared column first, then by column number */
static int
pk_adv_cmp_eq(const void *a, const void *b)
{
	const PkAdvQual *x = *(PkAdvQual *const *) a;
	const PkAdvQual *y = *(PkAdvQual *const *) b;

	if (x->eq_freq != y->eq_freq)
		return y->eq_freq - x->eq_freq;
	return x->q.attnum - y->q.attnum;
}

/* The candidates of one statement on one table */
void
pk_adv_candidates_for(List **cands, PkAdvStmt *s, Oid relid)
{
	PkAdvQual  *eq[PK_ADV_QUALS_PER_STMT];
	PkAdvQual  *sort[PK_ADV_MAX_COLUMNS];
	PkAdvQual  *range = NULL;
	int			neq = 0;
	int			nsort = 0;
	PkHypoIndex base;
	PkHypoIndex h;
	int			i;

	memset(&base, 0, sizeof(base));
	base.relid = relid;
	base.amoid = BTREE_AM_OID;
	memset(sort, 0, sizeof(sort));

	for (i = 0; i < s->nquals; i++)
	{
		PkAdvQual  *aq = &s->quals[i];

		if (aq->q.relid != relid)
			continue;
		switch (aq->cls)
		{
			case PK_CLASS_EQ:
				eq[neq++] = aq;
				break;
			case PK_CLASS_RANGE:
				if (range == NULL || aq->q.attnum < range->q.attnum)
					range = aq;
				break;
			case PK_CLASS_SORT:
				if (aq->q.position < PK_ADV_MAX_COLUMNS)
				{
					sort[aq->q.position] = aq;
					nsort = Max(nsort, aq->q.position + 1);
				}
				break;
			case PK_CLASS_JOIN:
				h = base;
				pk_adv_push_column(&h, aq, false, false);
				pk_adv_add_candidate(cands, &h);
				break;
			case PK_CLASS_OTHER:
				h = base;
				h.amoid = aq->amoid;
				pk_adv_push_column(&h, aq, false, false);
				pk_adv_add_candidate(cands, &h);
				break;
			case PK_CLASS_NONE:
				break;
		}
	}

	/* equality columns, most shared first */
	qsort(eq, neq, sizeof(PkAdvQual *), pk_adv_cmp_eq);
	h = base;
	for (i = 0; i < neq && h.ncolumns < PK_ADV_MAX_COLUMNS - 1; i++)
		pk_adv_push_column(&h, eq[i], false, false);

	/* then a range column */
	if (range != NULL)
	{
		PkHypoIndex r = h;

		pk_adv_push_column(&r, range, false, false);
		pk_adv_add_with_prefixes(cands, &r);
	}
	else
		pk_adv_add_with_prefixes(cands, &h);

	/* or the sort keys, in the direction of the first one (scanned backward if need be) */
	for (i = 0; i < nsort; i++)
		if (sort[i] == NULL)
			nsort = 0;
	if (nsort > 0)
	{
		bool		flip = sort[0]->desc;
		PkHypoIndex o = h;

		for (i = 0; i < nsort; i++)
			pk_adv_push_column(&o, sort[i], sort[i]->desc != flip,
							   sort[i]->q.nulls_first != flip);
		pk_adv_add_with_prefixes(cands, &o);
	}
}

/* True when the statement has a usable predicate on the column */
static bool
pk_adv_uses_column(const PkAdvStmt *s, Oid relid, AttrNumber attnum)
{
	int			i;

	for (i = 0; i < s->nquals; i++)
	{
		const PkAdvQual *aq = &s->quals[i];

		if (aq->cls != PK_CLASS_NONE && aq->q.relid == relid && aq->q.attnum == attnum)
			return true;
	}
	return false;
}

/*
 * True when the candidate is worth planning the statement with: the statement
 * uses every one of its columns.  (A candidate with a column the statement
 * does not use serves it at best as well as its prefix, which is tried too.)
 */
bool
pk_adv_may_help(const PkAdvStmt *s, const PkHypoIndex *h)
{
	int			i;

	for (i = 0; i < h->ncolumns; i++)
		if (!pk_adv_uses_column(s, h->relid, h->attnums[i]))
			return false;
	return true;
}

/*
 * True when the planner may use the index for the statement at all: the
 * statement uses its leading column.  An index chosen for the configuration
 * can change the plans of these statements only.
 */
bool
pk_adv_may_use(const PkAdvStmt *s, const PkHypoIndex *h)
{
	return h->ncolumns > 0 && pk_adv_uses_column(s, h->relid, h->attnums[0]);
}
