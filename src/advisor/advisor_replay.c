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
 * Plan one statement under the configuration conf[0 .. nconf-1] and under it
 * plus each request's extra candidates; the cost under conf alone goes to
 * *conf_cost, the others into the requests.
 */
static void
pk_adv_try_statement(Query *query, const char *sql, ParamListInfo params,
					 PkHypoIndex **conf, int nconf, PkAdvPlanReq *reqs, int nreqs,
					 double *conf_cost)
{
	PkHypoIndex **hypos = palloc(sizeof(PkHypoIndex *) * (nconf + 2));
	bool	   *used = palloc(sizeof(bool) * (nconf + 2));
	int			r;

	if (nconf > 0)
		memcpy(hypos, conf, sizeof(PkHypoIndex *) * nconf);
	*conf_cost = pk_whatif_plan(query, sql, params, hypos, nconf)->planTree->total_cost;
	for (r = 0; r < nreqs; r++)
	{
		PkAdvPlanReq *req = &reqs[r];
		PlannedStmt *p;
		int			k;

		for (k = 0; k < req->nextra; k++)
			hypos[nconf + k] = req->extra[k];
		p = pk_whatif_plan(query, sql, params, hypos, nconf + req->nextra);
		req->cost = p->planTree->total_cost;
		req->used = 0;
		pk_whatif_used(p, nconf + req->nextra, used);
		for (k = 0; k < req->nextra; k++)
			if (used[nconf + k])
				req->used |= (uint8) (1 << k);
	}
}

/*
 * Replay a collected statement as its role, under its search_path, in a
 * security-restricted subtransaction, and plan it (pk_adv_try_statement);
 * false if it failed.  Settings changed by code that runs meanwhile (planner-
 * time function calls) are rolled back.  A cancel, a timeout or a lack of
 * resources ends the whole computation; other errors skip the statement.
 */
static bool
pk_adv_replay(PkAdvStmt *s, PkHypoIndex **conf, int nconf, PkAdvPlanReq *reqs, int nreqs,
			  double *conf_cost)
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
		pk_adv_try_statement(query, sql, params, conf, nconf, reqs, nreqs, conf_cost);
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
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return ok;
}

/*
 * Plan statement s under the configuration conf and under it plus each
 * request's candidates (pk_adv_try_statement); false when it no longer
 * plans.  Parse trees and plans go into scratch, reset after it.
 */
bool
pk_adv_plan_statement(PkAdvStmt *s, PkHypoIndex **conf, int nconf, PkAdvPlanReq *reqs,
					  int nreqs, double *conf_cost, MemoryContext scratch)
{
	MemoryContext old = MemoryContextSwitchTo(scratch);
	bool		ok = true;

	if (s->query != NULL)
		pk_adv_try_statement(s->query, s->text, NULL, conf, nconf, reqs, nreqs, conf_cost);
	else
		ok = pk_adv_replay(s, conf, nconf, reqs, nreqs, conf_cost);
	MemoryContextSwitchTo(old);
	MemoryContextReset(scratch);
	CHECK_FOR_INTERRUPTS();
	return ok;
}
