/*-------------------------------------------------------------------------
 *
 * advisor_replay.c
 *	  Index advisor: replay a statement as the role that ran it, under its
 *	  search_path, and plan it with and without candidates (what-if).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/xact.h"
#include "miscadmin.h"
#include "parser/analyze.h"
#include "parser/parse_param.h"
#include "parser/parser.h"
#include "rewrite/rewriteHandler.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "advisor/advisor_internal.h"


/* Parse, analyze and rewrite a statement text with typed parameters into one Query */
Query *
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
		PkSavedIdentity saved;
		char	   *sql = pnstrdup(e->text, e->text_len);
		Query	   *query;
		ParamListInfo params;

		pk_run_as_begin(s->userid, SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION,
						true, &saved);
		(void) set_config_option("search_path", e->text + e->text_len + 1,
								 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
		query = pk_adv_analyze(sql, (Oid *) e->paramtypes, Max(e->nparams, 0));
		params = pk_adv_params(e);
		*trials = pk_adv_try_statement(s, sidx, cands, query, sql, params, keep, force, base_cost);
		pk_run_as_end(&saved);
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

/*
 * Plan statement i without and with the candidates of cands it may use (all
 * of them with force); parse trees and plans go into scratch, reset after it,
 * so only the trials stay.
 */
void
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
