/*-------------------------------------------------------------------------
 *
 * advisor.c
 *	  Index advisor: candidates from the collected predicates, validated by
 *	  what-if planning; perfkit.index_recommendations and
 *	  perfkit.recommend_indexes().
 *
 * One computation, for the statements collected in this database (view)
 * or for one statement given by the user (recommend_indexes):
 *	1. Classify each predicate through the catalog: the operator's strategy
 *	   in the column type's default btree operator family makes it an
 *	   equality or a range; an operator only a GIN, GiST or SP-GiST default
 *	   operator class knows maps to that method.  Filters that kept more
 *	   than half of the rows they saw, tables under PK_ADV_MIN_PAGES pages,
 *	   catalogs and temporary tables are dropped here.
 *	2. Candidates per statement and table: equality columns first (the
 *	   columns most statements compare for equality leading), then one
 *	   range column, or the sort keys (ORDER BY ... LIMIT); join columns
 *	   alone; every proper prefix of a multi-column candidate too.
 *	   A candidate that is a prefix of an existing valid index of the same
 *	   method is dropped.
 *	3. Plan every statement a candidate could serve (predicates on all its
 *	   columns) without it and with it (whatif.c), each statement in
 *	   a subtransaction, as the role that ran it, under its search_path,
 *	   in a security-restricted context; a statement that no longer plans
 *	   (dropped table, changed column) is skipped.  A candidate helps a
 *	   statement when the planner uses it and the plan gets cheaper.
 *	4. Keep candidates whose call-weighted cost cut over the statements
 *	   they help reaches min_improvement; drop a multi-column candidate
 *	   when one of its prefixes alone gets 90% of its benefit on the same
 *	   statements; then choose greedily by score (benefit, reduced by up
 *	   to half for tables that are mostly written), each new index having
 *	   to beat what the indexes already chosen give the statements it
 *	   helps.  Each statement is then
 *	   credited to the chosen index that serves it best; a chosen index
 *	   that is a prefix of another chosen one is dropped when the longer
 *	   one, planned for its statements too, is within 10% of its cost for
 *	   each.  A recommendation's figures (queryids, calls, costs) cover
 *	   the statements credited to it.
 *
 * Memory: everything lives in a context of the calling function; parse
 * trees and plans of one statement go into a scratch context reset after
 * it, so a computation over thousands of statements stays small.
 *
 * Visibility: a statement is replayed as the role that ran it, so only
 * viewers with that role's privileges (the role itself, its members,
 * superusers) get recommendations from it; pg_read_all_stats is not enough,
 * as it would let its holder have code run as other roles (e.g. through a
 * temporary view shadowing a table the statement names).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/genam.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "commands/defrem.h"
#include "executor/executor.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/analyze.h"
#include "parser/parse_param.h"
#include "parser/parser.h"
#include "rewrite/rewriteHandler.h"
#include "storage/lmgr.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "advisor/advisor.h"
#include "stats/stats.h"

#define PK_ADV_MIN_PAGES		10		/* smaller tables get no index */
#define PK_ADV_MAX_KEPT			0.5		/* filters keeping more than this share lead nothing */
#define PK_ADV_PREFIX_SHARE		0.9		/* a prefix with this share of the benefit wins */
#define PK_ADV_PREFIX_SLACK		1.1		/* a longer index this close to its prefix replaces it */
#define PK_ADV_REC_COLS			12

PG_FUNCTION_INFO_V1(perfkit_index_recommendations);
PG_FUNCTION_INFO_V1(perfkit_recommend_indexes);
PG_FUNCTION_INFO_V1(perfkit_reset_index_advisor);

/* How a predicate can use an index */
typedef enum PkQualClass
{
	PK_CLASS_NONE,				/* not indexable (or dropped) */
	PK_CLASS_EQ,				/* btree equality */
	PK_CLASS_RANGE,				/* btree <, <=, >, >= */
	PK_CLASS_SORT,				/* btree sort key */
	PK_CLASS_JOIN,				/* equality join column */
	PK_CLASS_OTHER				/* operator of another method (amoid) */
} PkQualClass;

/* A classified predicate */
typedef struct PkAdvQual
{
	PkQual		q;
	PkQualClass cls;
	Oid			amoid;			/* method that supports it */
	Oid			opclass;		/* that method's default opclass for the column */
	bool		desc;			/* sort keys: descending */
	int			eq_freq;		/* equalities: statements comparing this column */
} PkAdvQual;

/* A statement under analysis */
typedef struct PkAdvStmt
{
	uint64		queryid;
	Oid			userid;
	double		calls;
	PkAdvQual  *quals;
	int			nquals;
	/* representative execution (collected statements) */
	const PkAdvEntry *entry;
	/* the analyzed statement (recommend_indexes) */
	Query	   *query;
	const char *text;
	double		base_cost;		/* plan cost without candidates; < 0 if not planned */
} PkAdvStmt;

typedef struct PkAdvCand PkAdvCand;

/* What planning one statement with one candidate gave */
typedef struct PkAdvTrial
{
	PkAdvCand  *cand;			/* the candidate */
	int			stmt;			/* index into the statement array */
	double		cost;
	bool		used;
} PkAdvTrial;

/* A candidate index */
struct PkAdvCand
{
	PkHypoIndex hypo;
	List	   *trials;			/* PkAdvTrial * */
	double		benefit;		/* sum over helped statements of calls * (base - cost) */
	double		before;			/* sum of calls * base over helped statements */
	double		after;			/* sum of calls * cost over helped statements */
	double		improvement;	/* percent */
	double		write_ratio;
	double		score;
	bool		dropped;
	PkAdvCand **owner;			/* per statement: the chosen index serving it best */
};

/* Raise the usual error when perfkit is not preloaded */
static void
pk_adv_require_loaded(void)
{
	if (!pk_advisor_loaded())
		pk_stats_require_loaded();
}

/* Calls of a statement from perfkit.statements, else its samples */
static double
pk_adv_calls(Oid userid, uint64 queryid, int64 samples)
{
	double		calls = (double) pk_stats_calls(userid, MyDatabaseId, queryid);

	return calls > 0 ? calls : (double) Max(samples, 1);
}

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
		int16		strategy;

		if (OidIsValid(btclass) &&
			get_ordering_op_properties(aq->q.opno, &opfamily, &opcintype, &strategy) &&
			opfamily == get_opclass_family(btclass))
		{
			aq->cls = PK_CLASS_SORT;
			aq->desc = (strategy == BTGreaterStrategyNumber);
		}
		return;
	}
	if (aq->q.kind == PK_QUAL_FILTER && aq->q.kept > PK_ADV_MAX_KEPT)
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
static void
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
static int
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
static bool
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

/* Add a candidate unless an equal one exists; returns its index or -1 */
static int
pk_adv_add_candidate(List **cands, const PkHypoIndex *h)
{
	ListCell   *lc;
	PkAdvCand  *c;
	int			i = 0;

	if (h->ncolumns == 0)
		return -1;
	foreach(lc, *cands)
	{
		PkHypoIndex *o = &((PkAdvCand *) lfirst(lc))->hypo;

		if (o->relid == h->relid && o->amoid == h->amoid && o->ncolumns == h->ncolumns &&
			memcmp(o->attnums, h->attnums, sizeof(AttrNumber) * h->ncolumns) == 0 &&
			memcmp(o->desc, h->desc, sizeof(bool) * h->ncolumns) == 0 &&
			memcmp(o->nulls_first, h->nulls_first, sizeof(bool) * h->ncolumns) == 0)
			return i;
		i++;
	}
	c = palloc0(sizeof(PkAdvCand));
	c->hypo = *h;
	*cands = lappend(*cands, c);
	return i;
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
static void
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
static bool
pk_adv_may_help(const PkAdvStmt *s, const PkHypoIndex *h)
{
	int			i;

	for (i = 0; i < h->ncolumns; i++)
		if (!pk_adv_uses_column(s, h->relid, h->attnums[i]))
			return false;
	return true;
}

/* Parse, analyze and rewrite a statement text with typed parameters into one Query */
static Query *
pk_adv_analyze(const char *sql, Oid *paramtypes, int nparams)
{
	List	   *raw = raw_parser(sql, RAW_PARSE_DEFAULT);
	RawStmt    *rawstmt;
	ParseState *pstate;
	Query	   *query;
	List	   *rewritten;
	ListCell   *lc;

	if (list_length(raw) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("query must be exactly one statement"),
				 errdetail("The text contains %d statements.", list_length(raw))));
	/* statements run through PREPARE, DECLARE CURSOR or EXPLAIN were kept as that text */
	rawstmt = linitial_node(RawStmt, raw);
	if (IsA(rawstmt->stmt, PrepareStmt))
		rawstmt->stmt = ((PrepareStmt *) rawstmt->stmt)->query;
	else if (IsA(rawstmt->stmt, DeclareCursorStmt))
		rawstmt->stmt = ((DeclareCursorStmt *) rawstmt->stmt)->query;
	else if (IsA(rawstmt->stmt, ExplainStmt))
		rawstmt->stmt = ((ExplainStmt *) rawstmt->stmt)->query;
	pstate = make_parsestate(NULL);
	pstate->p_sourcetext = sql;
	setup_parse_fixed_parameters(pstate, paramtypes, nparams);
	query = transformTopLevelStmt(pstate, rawstmt);
	free_parsestate(pstate);
	if (query->commandType != CMD_SELECT && query->commandType != CMD_UPDATE &&
		query->commandType != CMD_DELETE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("only SELECT, UPDATE and DELETE statements can be analyzed"),
				 errhint("Pass the statement whose indexes you want advice on, without EXPLAIN.")));
	rewritten = QueryRewrite(query);
	foreach(lc, rewritten)
	{
		Query	   *q = lfirst_node(Query, lc);

		if (q->canSetTag && q->commandType != CMD_UTILITY)
			return q;
	}
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("the statement is rewritten into something the advisor cannot plan")));
	return NULL;				/* keep compiler quiet */
}

/* The bound parameters of a collected statement (values decoded from entry->text) */
static ParamListInfo
pk_adv_params(const PkAdvEntry *e)
{
	ParamListInfo params;
	const char *p = e->text + e->text_len + 1 + e->path_len + 1;
	int			i;

	if (e->nparams <= 0)
		return NULL;
	params = makeParamList(e->nparams);
	for (i = 0; i < e->nparams; i++)
	{
		ParamExternData *prm = &params->params[i];
		Oid			typinput;
		Oid			typioparam;

		prm->ptype = e->paramtypes[i];
		prm->pflags = PARAM_FLAG_CONST;
		prm->isnull = (*p == 'n');
		prm->value = (Datum) 0;
		if (!prm->isnull)
		{
			getTypeInputInfo(prm->ptype, &typinput, &typioparam);
			prm->value = OidInputFunctionCall(typinput, (char *) p + 1, typioparam, -1);
		}
		p += strlen(p) + 1;
	}
	return params;
}

/*
 * Plan one statement without and with each candidate it may use (every
 * candidate with force); returns the trials, allocated in keep, and the cost
 * without candidates in *base_cost.
 */
static List *
pk_adv_try_statement(PkAdvStmt *s, int sidx, List *cands, Query *query, const char *sql,
					 ParamListInfo params, MemoryContext keep, bool force, double *base_cost)
{
	MemoryContext old;
	PlannedStmt *base = pk_whatif_plan(query, sql, params, NULL);
	List	   *trials = NIL;
	ListCell   *lc;

	*base_cost = base->planTree->total_cost;
	foreach(lc, cands)
	{
		PkAdvCand  *c = (PkAdvCand *) lfirst(lc);
		PlannedStmt *p;
		PkAdvTrial *t;

		if (c->dropped || (!force && !pk_adv_may_help(s, &c->hypo)))
			continue;
		p = pk_whatif_plan(query, sql, params, &c->hypo);
		old = MemoryContextSwitchTo(keep);
		t = palloc(sizeof(PkAdvTrial));
		t->cand = c;
		t->stmt = sidx;
		t->cost = p->planTree->total_cost;
		t->used = pk_whatif_uses_candidate(p);
		trials = lappend(trials, t);
		MemoryContextSwitchTo(old);
	}
	return trials;
}

/*
 * Replay a collected statement as its role, under its search_path, in a
 * security-restricted subtransaction, and plan it (pk_adv_try_statement);
 * false if it failed.  Settings changed by code that runs meanwhile (planner-
 * time function calls) are rolled back.  A cancel, a timeout or a lack of
 * resources ends the whole computation; other errors skip the statement.
 */
static bool
pk_adv_replay(PkAdvStmt *s, int sidx, List *cands, MemoryContext keep, bool force,
			  List **trials, double *base_cost)
{
	const PkAdvEntry *e = s->entry;
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	bool		ok = true;

	if (e->nparams < 0 || e->text_len == 0 ||
		!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(s->userid)))
		return false;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		Oid			save_userid;
		int			save_sec;
		int			nestlevel;
		char	   *sql = pnstrdup(e->text, e->text_len);
		Query	   *query;
		ParamListInfo params;

		GetUserIdAndSecContext(&save_userid, &save_sec);
		nestlevel = NewGUCNestLevel();
		(void) set_config_option("search_path", e->text + e->text_len + 1,
								 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
		SetUserIdAndSecContext(s->userid,
							   save_sec | SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
		query = pk_adv_analyze(sql, (Oid *) e->paramtypes, Max(e->nparams, 0));
		params = pk_adv_params(e);
		*trials = pk_adv_try_statement(s, sidx, cands, query, sql, params, keep, force, base_cost);
		SetUserIdAndSecContext(save_userid, save_sec);
		AtEOXact_GUC(false, nestlevel);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		int			category;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		category = ERRCODE_TO_CATEGORY(edata->sqlerrcode);
		if (category == ERRCODE_OPERATOR_INTERVENTION ||
			category == ERRCODE_INSUFFICIENT_RESOURCES ||
			category == ERRCODE_PROGRAM_LIMIT_EXCEEDED)
			ReThrowError(edata);
		FreeErrorData(edata);
		*trials = NIL;
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return ok;
}

/* True when p's key columns are a proper prefix of c's */
static bool
pk_adv_is_prefix(const PkHypoIndex *p, const PkHypoIndex *c)
{
	return p->relid == c->relid && p->amoid == c->amoid && p->ncolumns < c->ncolumns &&
		memcmp(p->attnums, c->attnums, sizeof(AttrNumber) * p->ncolumns) == 0;
}

/*
 * Plan statement i without and with the candidates of cands it may use (all
 * of them with force); parse trees and plans go into scratch, reset after it,
 * so only the trials stay.
 */
static void
pk_adv_plan_statement(PkAdvStmt *stmts, int i, List *cands, bool force, MemoryContext scratch)
{
	PkAdvStmt  *s = &stmts[i];
	MemoryContext keep = MemoryContextSwitchTo(scratch);
	List	   *trials = NIL;
	double		base_cost = -1;
	bool		ok = true;
	ListCell   *lc;

	if (s->query != NULL)
		trials = pk_adv_try_statement(s, i, cands, s->query, s->text, NULL, keep, force,
									  &base_cost);
	else
		ok = pk_adv_replay(s, i, cands, keep, force, &trials, &base_cost);
	MemoryContextSwitchTo(keep);
	/* a statement that failed half-way leaves nothing behind */
	if (ok)
	{
		s->base_cost = base_cost;
		foreach(lc, trials)
		{
			PkAdvTrial *t = (PkAdvTrial *) lfirst(lc);

			t->cand->trials = lappend(t->cand->trials, t);
		}
	}
	MemoryContextReset(scratch);
	CHECK_FOR_INTERRUPTS();
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
static bool
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

/*
 * Run the advisor over stmts; returns the chosen candidates, best first.
 * Statements with s->query set are planned as they are; others are
 * replayed from their entry.
 */
static List *
pk_adv_compute(PkAdvStmt *stmts, int nstmts, double min_improvement)
{
	List	   *cands = NIL;
	List	   *chosen = NIL;
	List	   *result = NIL;
	PkAdvCand **order;
	PkAdvCand **owner;
	MemoryContext scratch;
	double	   *best;
	ListCell   *lc;
	int			i,
				j,
				n;

	/* 2. candidates */
	for (i = 0; i < nstmts; i++)
		for (j = 0; j < stmts[i].nquals; j++)
			if (stmts[i].quals[j].cls == PK_CLASS_EQ)
				stmts[i].quals[j].eq_freq = pk_adv_eq_frequency(stmts, nstmts,
																stmts[i].quals[j].q.relid,
																stmts[i].quals[j].q.attnum);
	for (i = 0; i < nstmts; i++)
	{
		List	   *relids = NIL;

		for (j = 0; j < stmts[i].nquals; j++)
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

	/* 3. what-if planning */
	scratch = AllocSetContextCreate(CurrentMemoryContext, "perfkit advisor plans",
									ALLOCSET_DEFAULT_SIZES);
	for (i = 0; i < nstmts; i++)
	{
		PkAdvStmt  *s = &stmts[i];
		bool		any = false;

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

	/* 4. figures, threshold, prefixes */
	n = 0;
	order = palloc(sizeof(PkAdvCand *) * Max(list_length(cands), 1));
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
		order[n++] = c;
	}
	for (i = 0; i < n; i++)
		for (j = 0; j < n; j++)
			if (i != j && !order[j]->dropped && pk_adv_is_prefix(&order[j]->hypo, &order[i]->hypo) &&
				pk_adv_benefit_where(order[j], order[i], stmts) >=
				PK_ADV_PREFIX_SHARE * order[i]->benefit)
			{
				order[i]->dropped = true;
				break;
			}

	/* greedy choice: each index must add to what the chosen ones give */
	qsort(order, n, sizeof(PkAdvCand *), pk_adv_cmp_score);
	best = palloc(sizeof(double) * Max(nstmts, 1));
	for (i = 0; i < nstmts; i++)
		best[i] = stmts[i].base_cost;
	for (i = 0; i < n; i++)
	{
		PkAdvCand  *c = order[i];
		PkAdvCand	extra = *c;

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

	/* credit each statement to the chosen index that serves it best; report on those */
	owner = palloc0(sizeof(PkAdvCand *) * Max(nstmts, 1));
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
	pk_adv_merge_prefixes(chosen, stmts, nstmts, owner, scratch);
	MemoryContextDelete(scratch);
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

/* "CREATE INDEX CONCURRENTLY ON schema.table USING method (col [DESC] [NULLS ...], ...)", NULL if gone */
static char *
pk_adv_definition(const PkHypoIndex *h, Datum *colnames)
{
	StringInfoData buf;
	int			i;

	char	   *relname = get_rel_name(h->relid);
	char	   *nspname = get_namespace_name(get_rel_namespace(h->relid));

	/* dropped meanwhile */
	if (relname == NULL || nspname == NULL)
		return NULL;
	initStringInfo(&buf);
	appendStringInfo(&buf, "CREATE INDEX CONCURRENTLY ON %s USING %s (",
					 quote_qualified_identifier(nspname, relname),
					 quote_identifier(get_am_name(h->amoid)));
	for (i = 0; i < h->ncolumns; i++)
	{
		char	   *name = get_attname(h->relid, h->attnums[i], true);

		if (name == NULL)
			return NULL;

		colnames[i] = CStringGetTextDatum(name);
		appendStringInfo(&buf, "%s%s", i > 0 ? ", " : "", quote_identifier(name));
		if (h->amoid != BTREE_AM_OID)
			continue;
		if (h->desc[i])
			appendStringInfoString(&buf, h->nulls_first[i] ? " DESC" : " DESC NULLS LAST");
		else if (h->nulls_first[i])
			appendStringInfoString(&buf, " NULLS FIRST");
	}
	appendStringInfoChar(&buf, ')');
	return buf.data;
}

/* Emit the chosen candidates as rows of the view's shape */
static void
pk_adv_emit(ReturnSetInfo *rsinfo, List *chosen, PkAdvStmt *stmts, bool full)
{
	ListCell   *lc;

	foreach(lc, chosen)
	{
		PkAdvCand  *c = (PkAdvCand *) lfirst(lc);
		Datum		values[PK_ADV_REC_COLS];
		bool		nulls[PK_ADV_REC_COLS];
		Datum		colnames[PK_ADV_MAX_COLUMNS];
		Datum	   *qids = palloc(sizeof(Datum) * Max(list_length(c->trials), 1));
		int			nq = 0;
		double		calls = 0;
		double		tuples;
		ListCell   *t;
		int			col = 0;
		char	   *definition = pk_adv_definition(&c->hypo, colnames);

		if (definition == NULL)
			continue;
		foreach(t, c->trials)
		{
			PkAdvTrial *tr = (PkAdvTrial *) lfirst(t);
			PkAdvStmt  *s = &stmts[tr->stmt];

			if (!pk_adv_helps(c, tr, stmts, s->base_cost, c->owner))
				continue;
			qids[nq++] = Int64GetDatum((int64) s->queryid);
			calls += s->calls;
		}
		tuples = DatumGetFloat4(DirectFunctionCall1(pg_stat_get_live_tuples,
													ObjectIdGetDatum(c->hypo.relid)));
		{
			HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(c->hypo.relid));

			if (HeapTupleIsValid(tup))
			{
				tuples = Max(tuples, ((Form_pg_class) GETSTRUCT(tup))->reltuples);
				ReleaseSysCache(tup);
			}
		}

		memset(nulls, 0, sizeof(nulls));
		values[col++] = ObjectIdGetDatum(c->hypo.relid);
		values[col++] = PointerGetDatum(construct_array(colnames, c->hypo.ncolumns, TEXTOID, -1,
														false, TYPALIGN_INT));
		values[col++] = CStringGetTextDatum(get_am_name(c->hypo.amoid));
		values[col++] = CStringGetTextDatum(definition);
		if (full)
		{
			values[col++] = PointerGetDatum(construct_array(qids, nq, INT8OID, 8,
															FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
			values[col++] = Int64GetDatum((int64) calls);
		}
		values[col++] = Float8GetDatum(c->before);
		values[col++] = Float8GetDatum(c->after);
		values[col++] = Float8GetDatum(c->improvement);
		values[col++] = Int64GetDatum((int64) (pk_whatif_estimate_pages(&c->hypo, tuples, NULL) * BLCKSZ));
		if (full)
		{
			values[col++] = Float8GetDatum(c->write_ratio);
			values[col++] = Float8GetDatum(c->score);
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
}

/* Validate a min_improvement argument */
static double
pk_adv_min_improvement(FunctionCallInfo fcinfo, int argno)
{
	double		v;

	if (PG_ARGISNULL(argno))
		return pk_advisor_min_improvement;
	v = PG_GETARG_FLOAT8(argno);
	if (isnan(v) || v < 0 || v > 100)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("min_improvement must be between 0 and 100"),
				 errhint("It is the smallest planner-estimated cost cut, in percent.")));
	return v;
}

/* perfkit._index_recommendations(min_improvement): the view's rows */
Datum
perfkit_index_recommendations(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	double		min_improvement;
	Oid			viewer = GetUserId();
	PkAdvEntry *entries;
	PkAdvStmt  *stmts;
	int			count;
	int			n = 0;
	int			i;
	MemoryContext work;
	MemoryContext old;
	List	   *chosen;

	pk_adv_require_loaded();
	min_improvement = pk_adv_min_improvement(fcinfo, 0);
	InitMaterializedSRF(fcinfo, 0);

	work = AllocSetContextCreate(CurrentMemoryContext, "perfkit advisor", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(work);
	pk_adv_opclass_memo = NIL;	/* allocated in work */
	entries = pk_advisor_snapshot(MyDatabaseId, &count);
	stmts = palloc0(sizeof(PkAdvStmt) * Max(count, 1));
	for (i = 0; i < count; i++)
	{
		PkAdvEntry *e = &entries[i];
		PkAdvStmt  *s = &stmts[n];

		/* replayed as that role: only for viewers who could act as it anyway */
		if (!has_privs_of_role(viewer, e->key.userid))
			continue;
		s->queryid = e->key.queryid;
		s->userid = e->key.userid;
		s->entry = e;
		s->calls = pk_adv_calls(e->key.userid, e->key.queryid, e->samples);
		pk_adv_set_quals(s, e->quals, e->nquals);
		n++;
	}
	chosen = pk_adv_compute(stmts, n, min_improvement);
	MemoryContextSwitchTo(old);
	pk_adv_emit(rsinfo, chosen, stmts, true);
	MemoryContextDelete(work);
	return (Datum) 0;
}

/* perfkit.recommend_indexes(query text): the same analysis for one statement */
Datum
perfkit_recommend_indexes(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *sql;
	PkAdvStmt	stmt;
	PkQual		quals[PK_ADV_QUALS_PER_STMT];
	PlannedStmt *pstmt;
	QueryDesc  *qd;
	MemoryContext work;
	MemoryContext old;
	List	   *chosen;
	int			count;

	pk_adv_require_loaded();
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("query must not be null"),
				 errhint("Pass the text of a SELECT, UPDATE or DELETE statement.")));
	sql = text_to_cstring(PG_GETARG_TEXT_PP(0));
	InitMaterializedSRF(fcinfo, 0);

	work = AllocSetContextCreate(CurrentMemoryContext, "perfkit advisor", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(work);
	pk_adv_opclass_memo = NIL;	/* allocated in work */
	memset(&stmt, 0, sizeof(stmt));
	stmt.text = sql;
	stmt.calls = 1;
	stmt.userid = GetUserId();
	stmt.query = pk_adv_analyze(sql, NULL, 0);

	/* plan it, and initialize the plan as EXPLAIN does: checks privileges, runs nothing */
	pstmt = pk_whatif_plan(stmt.query, sql, NULL, NULL);
	PushActiveSnapshot(GetTransactionSnapshot());
	qd = CreateQueryDesc(pstmt, sql, GetActiveSnapshot(), InvalidSnapshot, None_Receiver,
						 NULL, NULL, 0);
	standard_ExecutorStart(qd, EXEC_FLAG_EXPLAIN_ONLY);
	count = pk_quals_from_planstate(qd, quals, PK_ADV_QUALS_PER_STMT);
	standard_ExecutorEnd(qd);
	FreeQueryDesc(qd);
	PopActiveSnapshot();

	pk_adv_set_quals(&stmt, quals, count);
	chosen = pk_adv_compute(&stmt, 1, pk_advisor_min_improvement);
	MemoryContextSwitchTo(old);
	pk_adv_emit(rsinfo, chosen, &stmt, false);
	MemoryContextDelete(work);
	return (Datum) 0;
}

/* perfkit.reset_index_advisor(): forget the collected statements */
Datum
perfkit_reset_index_advisor(PG_FUNCTION_ARGS)
{
	pk_adv_require_loaded();
	pk_advisor_reset();
	PG_RETURN_VOID();
}
