/*-------------------------------------------------------------------------
 *
 * advisor.c
 *	  Index advisor: candidates from the collected predicates, validated by
 *	  what-if planning; perfkit.index_recommendations and
 *	  perfkit.recommend_indexes().
 *
 * Visibility: a statement is replayed as the role that ran it, so only
 * viewers with that role's privileges (the role itself, its members,
 * superusers) get recommendations from it; pg_read_all_stats is not enough,
 * as it would let its holder have code run as other roles (e.g. through a
 * temporary view shadowing a table the statement names).
 *
 * The design in full: docs/design.md, "Index advisor computation".
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "catalog/pg_am.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/tuplestore.h"

#include "advisor/advisor_internal.h"
#include "stats/stats.h"

PG_FUNCTION_INFO_V1(perfkit_index_recommendations);
PG_FUNCTION_INFO_V1(perfkit_recommend_indexes);
PG_FUNCTION_INFO_V1(perfkit_reset_index_advisor);

/* Raise the usual error when perfkit is not preloaded */
static void
pk_adv_require_loaded(void)
{
	pk_require_preloaded(pk_advisor_loaded());
}

/* Calls of a statement from perfkit.statements, else its samples */
static double
pk_adv_calls(Oid userid, uint64 queryid, int64 samples)
{
	double		calls = (double) pk_stats_calls(userid, MyDatabaseId, queryid);

	return calls > 0 ? calls : (double) Max(samples, 1);
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
	pk_adv_forget_opclasses();	/* allocated in work */
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
	pk_adv_forget_opclasses();	/* allocated in work */
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
