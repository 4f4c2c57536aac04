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
 * Workload facts besides the collected statements come from
 * perfkit.statements, read once per computation through SPI (with perfkit's
 * own recording off, so the read leaves no entry): each statement's
 * measured time, and the rows written by INSERT, UPDATE, DELETE, MERGE and
 * COPY ... FROM, which give the maintenance cost of a new index on the
 * table they name (README, "Index recommendations").
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
#include "catalog/namespace.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "utils/fmgrprotos.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"
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

/* Rows of the table: the larger of the live-tuple count and pg_class.reltuples */
double
pk_adv_table_tuples(Oid relid)
{
	double		tuples = DatumGetFloat4(DirectFunctionCall1(pg_stat_get_live_tuples,
															ObjectIdGetDatum(relid)));
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));

	if (HeapTupleIsValid(tup))
	{
		tuples = Max(tuples, ((Form_pg_class) GETSTRUCT(tup))->reltuples);
		ReleaseSysCache(tup);
	}
	return tuples;
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

/* Order statement numbers by query id */
static int
pk_adv_cmp_queryid(const void *a, const void *b, void *arg)
{
	const PkAdvStmt *stmts = (const PkAdvStmt *) arg;
	uint64		x = stmts[*(const int *) a].queryid;
	uint64		y = stmts[*(const int *) b].queryid;

	return (x > y) - (x < y);
}

/* The statements an index serves as jsonb: query id, calls, cost per call before and after */
static Datum
pk_adv_statements_json(const PkAdvCand *c, PkAdvStmt *stmts, Datum *qids, int *nq, double *calls)
{
	StringInfoData buf;
	int		   *order = palloc(sizeof(int) * Max(list_length(c->served), 1));
	int			n = 0;
	ListCell   *lc;

	foreach(lc, c->served)
		order[n++] = lfirst_int(lc);
	qsort_arg(order, n, sizeof(int), pk_adv_cmp_queryid, stmts);
	initStringInfo(&buf);
	appendStringInfoChar(&buf, '[');
	*nq = 0;
	*calls = 0;
	for (int k = 0; k < n; k++)
	{
		PkAdvStmt  *s = &stmts[order[k]];

		appendStringInfo(&buf, "%s{\"queryid\": " INT64_FORMAT ", \"calls\": %.0f, "
						 "\"cost_before\": %.2f, \"cost_after\": %.2f}",
						 k > 0 ? ", " : "", (int64) s->queryid, s->calls, s->base_cost,
						 Min(s->cur_cost, s->base_cost));
		qids[(*nq)++] = Int64GetDatum((int64) s->queryid);
		*calls += s->calls;
	}
	appendStringInfoChar(&buf, ']');
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
}

/* Emit the chosen candidates as rows of the result's shape (8, 12 or PK_ADV_REC_COLS columns) */
static void
pk_adv_emit(ReturnSetInfo *rsinfo, List *chosen, PkAdvStmt *stmts, const PkAdvWorkload *w)
{
	int			natts = rsinfo->setDesc->natts;
	bool		full = natts >= PK_ADV_OLD_REC_COLS;
	ListCell   *lc;

	foreach(lc, chosen)
	{
		PkAdvCand  *c = (PkAdvCand *) lfirst(lc);
		Datum		values[PK_ADV_REC_COLS];
		bool		nulls[PK_ADV_REC_COLS];
		Datum		colnames[PK_ADV_MAX_COLUMNS];
		Datum	   *qids = palloc(sizeof(Datum) * Max(list_length(c->served), 1));
		int			nq = 0;
		double		calls = 0;
		int			col = 0;
		char	   *definition = pk_adv_definition(&c->hypo, colnames);
		Datum		json;

		if (definition == NULL)
			continue;
		json = pk_adv_statements_json(c, stmts, qids, &nq, &calls);

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
		values[col++] = Int64GetDatum((int64) c->est_bytes);
		if (full)
		{
			values[col++] = Float8GetDatum(pk_adv_write_ratio(c->hypo.relid));
			values[col++] = Float8GetDatum(c->saving);
		}
		if (natts >= PK_ADV_REC_COLS)
		{
			values[col++] = Int32GetDatum(c->step);
			values[col++] = json;
			values[col++] = Float8GetDatum(w->total_cost > 0 ? 100.0 * c->saving / w->total_cost : 0);
			values[col++] = Float8GetDatum(c->maintenance);
			if (w->ms_per_cost >= 0)
				values[col++] = Float8GetDatum(c->maintenance * w->ms_per_cost / w->hours);
			else
				nulls[col++] = true;
			if (w->ms_per_cost >= 0)
				values[col++] = Float8GetDatum(c->saving_ms / w->hours);
			else
				nulls[col++] = true;
		}
		Assert(col == natts);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
}

/* Key of the measured-time table: a statement of a role */
typedef struct PkAdvTimeKey
{
	Oid			userid;
	uint64		queryid;
} PkAdvTimeKey;

/* Measured figures of one statement, top-level and nested executions together */
typedef struct PkAdvTime
{
	PkAdvTimeKey key;
	double		total_time;		/* ms */
} PkAdvTime;

/* Skip blanks and comments; returns the next significant character */
static const char *
pk_adv_skip(const char *p)
{
	for (;;)
	{
		while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\f')
			p++;
		if (p[0] == '-' && p[1] == '-')
		{
			while (*p && *p != '\n')
				p++;
			continue;
		}
		if (p[0] == '/' && p[1] == '*')
		{
			const char *end = strstr(p + 2, "*/");

			p = end ? end + 2 : p + strlen(p);
			continue;
		}
		return p;
	}
}

/* True for a byte that may continue an unquoted identifier */
static bool
pk_adv_ident_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		c == '_' || c == '$' || IS_HIGHBIT_SET(c);
}

/*
 * Read one identifier or keyword at *pp into out (unquoted ones downcased);
 * false when there is none
 */
static bool
pk_adv_word(const char **pp, char *out)
{
	const char *p = pk_adv_skip(*pp);
	int			n = 0;

	if (*p == '"')
	{
		for (p++; *p; p++)
		{
			if (*p == '"' && p[1] != '"')
				break;
			if (*p == '"')
				p++;
			if (n < NAMEDATALEN - 1)
				out[n++] = *p;
		}
		if (*p != '"')
			return false;
		p++;
	}
	else
	{
		if (!pk_adv_ident_char(*p) || (*p >= '0' && *p <= '9'))
			return false;
		for (; pk_adv_ident_char(*p); p++)
			if (n < NAMEDATALEN - 1)
				out[n++] = (*p >= 'A' && *p <= 'Z') ? *p + ('a' - 'A') : *p;
	}
	out[n] = '\0';
	*pp = p;
	return true;
}

/* Read a table name (name or schema.name) at *pp and look it up; InvalidOid if none */
static Oid
pk_adv_table_name(const char **pp)
{
	char		first[NAMEDATALEN];
	char		second[NAMEDATALEN];
	const char *p;

	if (!pk_adv_word(pp, first))
		return InvalidOid;
	if (strcmp(first, "only") == 0 && !pk_adv_word(pp, first))
		return InvalidOid;
	p = pk_adv_skip(*pp);
	if (*p != '.')
		return RangeVarGetRelid(makeRangeVar(NULL, first, -1), NoLock, true);
	p++;
	if (!pk_adv_word(&p, second) || *pk_adv_skip(p) == '.')
		return InvalidOid;
	*pp = p;
	return RangeVarGetRelid(makeRangeVar(first, second, -1), NoLock, true);
}

/*
 * The table a statement text writes and the weight of its rows (INSERT,
 * UPDATE, MERGE and COPY ... FROM 1, DELETE 0.5: its index entries are
 * removed later, by VACUUM); InvalidOid for other statements.  Looked up
 * under the current search_path.
 */
static Oid
pk_adv_written_table(const char *sql, double *weight)
{
	const char *p = sql;
	char		word[NAMEDATALEN];
	Oid			relid;

	if (!pk_adv_word(&p, word))
		return InvalidOid;
	/* PREPARE name [(types)] AS statement */
	if (strcmp(word, "prepare") == 0)
	{
		const char *as = NULL;

		for (const char *q = p; *q; q++)
			if ((*q == 'A' || *q == 'a') && (q[1] == 'S' || q[1] == 's') &&
				!pk_adv_ident_char(q[-1]) && !pk_adv_ident_char(q[2]))
			{
				as = q + 2;
				break;
			}
		if (as == NULL || !pk_adv_word(&as, word))
			return InvalidOid;
		p = as;
	}
	*weight = 1.0;
	if (strcmp(word, "insert") == 0 || strcmp(word, "merge") == 0)
	{
		if (!pk_adv_word(&p, word) || strcmp(word, "into") != 0)
			return InvalidOid;
		return pk_adv_table_name(&p);
	}
	if (strcmp(word, "update") == 0)
		return pk_adv_table_name(&p);
	if (strcmp(word, "delete") == 0)
	{
		*weight = 0.5;
		if (!pk_adv_word(&p, word) || strcmp(word, "from") != 0)
			return InvalidOid;
		return pk_adv_table_name(&p);
	}
	if (strcmp(word, "copy") == 0)
	{
		relid = pk_adv_table_name(&p);
		p = pk_adv_skip(p);
		/* an optional column list, then FROM */
		if (*p == '(')
		{
			const char *close = strchr(p, ')');

			if (close == NULL)
				return InvalidOid;
			p = close + 1;
		}
		if (!pk_adv_word(&p, word) || strcmp(word, "from") != 0)
			return InvalidOid;
		return relid;
	}
	return InvalidOid;
}

/* Add weighted written rows to a table's entry in *writes */
static void
pk_adv_add_write(List **writes, Oid relid, double entries)
{
	ListCell   *lc;
	PkAdvWrite *wr;

	foreach(lc, *writes)
	{
		wr = (PkAdvWrite *) lfirst(lc);
		if (wr->relid == relid)
		{
			wr->entries += entries;
			return;
		}
	}
	wr = palloc(sizeof(PkAdvWrite));
	wr->relid = relid;
	wr->entries = entries;
	*writes = lappend(*writes, wr);
}

/*
 * Read perfkit.statements of this database: the rows each table had written
 * into w->writes, the observed span into w->hours, and a table of measured
 * times per statement (returned; allocated in the current context)
 */
static HTAB *
pk_adv_read_workload(PkAdvWorkload *w)
{
	HASHCTL		info;
	HTAB	   *times;
	bool		saved_enabled = pk_enabled;
	MemoryContext cxt = CurrentMemoryContext;
	volatile TimestampTz first = 0;
	Oid			statements;

	memset(&info, 0, sizeof(info));
	info.keysize = sizeof(PkAdvTimeKey);
	info.entrysize = sizeof(PkAdvTime);
	info.hcxt = cxt;
	times = hash_create("perfkit advisor times", 1024, &info, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	w->writes = NIL;
	w->hours = 1.0 / 3600;

	/* a viewer who may not read perfkit.statements gets no writes or times weighed */
	statements = RangeVarGetRelid(makeRangeVar("perfkit", "statements", -1), NoLock, true);
	if (!OidIsValid(statements) ||
		pg_class_aclcheck(statements, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		return times;

	/* perfkit's own read is not part of the workload */
	pk_enabled = false;
	PG_TRY();
	{
		Datum		arg = ObjectIdGetDatum(MyDatabaseId);
		Oid			argtype = OIDOID;

		SPI_connect();
		if (SPI_execute_with_args("SELECT userid, queryid, query, calls, rows, total_exec_time, "
								  "first_seen FROM perfkit.statements "
								  "WHERE dbid OPERATOR(pg_catalog.=) $1",
								  1, &argtype, &arg, NULL, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read perfkit.statements");
		for (uint64 r = 0; r < SPI_processed; r++)
		{
			HeapTuple	tup = SPI_tuptable->vals[r];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;
			PkAdvTimeKey key;
			PkAdvTime  *t;
			bool		found;
			Datum		query;
			double		rows = (double) DatumGetInt64(SPI_getbinval(tup, desc, 5, &isnull));
			TimestampTz seen = DatumGetTimestampTz(SPI_getbinval(tup, desc, 7, &isnull));
			MemoryContext spi = MemoryContextSwitchTo(cxt);

			memset(&key, 0, sizeof(key));
			key.userid = DatumGetObjectId(SPI_getbinval(tup, desc, 1, &isnull));
			key.queryid = (uint64) DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
			t = hash_search(times, &key, HASH_ENTER, &found);
			if (!found)
				t->total_time = 0;
			t->total_time += DatumGetFloat8(SPI_getbinval(tup, desc, 6, &isnull));
			if (first == 0 || seen < first)
				first = seen;
			isnull = false;
			query = SPI_getbinval(tup, desc, 3, &isnull);
			if (!isnull && rows > 0)
			{
				double		weight;
				Oid			relid = pk_adv_written_table(TextDatumGetCString(query), &weight);

				if (OidIsValid(relid))
					pk_adv_add_write(&w->writes, relid, rows * weight);
			}
			MemoryContextSwitchTo(spi);
		}
		SPI_finish();
	}
	PG_FINALLY();
	{
		pk_enabled = saved_enabled;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	if (first != 0)
		w->hours = Max((double) (GetCurrentTimestamp() - first) / USECS_PER_HOUR, 1.0 / 3600);
	return times;
}

/* Measured ms per planner cost unit over the planned statements with a measured time; -1 if none */
static double
pk_adv_ms_per_cost(PkAdvStmt *stmts, int n)
{
	double		ms = 0;
	double		cost = 0;

	for (int i = 0; i < n; i++)
		if (stmts[i].base_cost > 0 && stmts[i].total_time >= 0)
		{
			ms += stmts[i].total_time;
			cost += stmts[i].calls * stmts[i].base_cost;
		}
	return cost > 0 ? ms / cost : -1;
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

/* perfkit._index_recommendations(min_improvement [, max_indexes]): the view's rows */
Datum
perfkit_index_recommendations(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	PkAdvWorkload w;
	Oid			viewer = GetUserId();
	PkAdvEntry *entries;
	PkAdvStmt  *stmts;
	HTAB	   *times;
	int			count;
	int			n = 0;
	int			i;
	MemoryContext work;
	MemoryContext old;
	List	   *chosen;

	pk_adv_require_loaded();
	memset(&w, 0, sizeof(w));
	w.weigh_writes = true;
	w.min_improvement = pk_adv_min_improvement(fcinfo, 0);
	w.max_indexes = -1;
	if (PG_NARGS() > 1 && !PG_ARGISNULL(1))
	{
		w.max_indexes = PG_GETARG_INT32(1);
		if (w.max_indexes < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("max_indexes must be a non-negative integer"),
					 errhint("Pass the largest number of indexes to recommend, or NULL for no limit.")));
	}
	InitMaterializedSRF(fcinfo, 0);

	work = AllocSetContextCreate(CurrentMemoryContext, "perfkit advisor", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(work);
	pk_adv_forget_opclasses();	/* allocated in work */
	times = pk_adv_read_workload(&w);
	entries = pk_advisor_snapshot(MyDatabaseId, &count);
	stmts = palloc0(sizeof(PkAdvStmt) * Max(count, 1));
	for (i = 0; i < count; i++)
	{
		PkAdvEntry *e = &entries[i];
		PkAdvStmt  *s = &stmts[n];
		PkAdvTimeKey key;
		PkAdvTime  *t;

		/* replayed as that role: only for viewers who could act as it anyway */
		if (!has_privs_of_role(viewer, e->key.userid))
			continue;
		s->queryid = e->key.queryid;
		s->userid = e->key.userid;
		s->entry = e;
		s->calls = pk_adv_calls(e->key.userid, e->key.queryid, e->samples);
		memset(&key, 0, sizeof(key));
		key.userid = s->userid;
		key.queryid = s->queryid;
		t = hash_search(times, &key, HASH_FIND, NULL);
		s->total_time = t != NULL ? t->total_time : -1;
		pk_adv_set_quals(s, e->quals, e->nquals);
		n++;
	}
	chosen = pk_adv_compute(stmts, n, &w);
	w.ms_per_cost = pk_adv_ms_per_cost(stmts, n);
	MemoryContextSwitchTo(old);
	pk_adv_emit(rsinfo, chosen, stmts, &w);
	MemoryContextDelete(work);
	return (Datum) 0;
}

/* perfkit.recommend_indexes(query text): the same analysis for one statement, writes not weighed */
Datum
perfkit_recommend_indexes(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *sql;
	PkAdvStmt	stmt;
	PkAdvWorkload w;
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
	stmt.total_time = -1;
	stmt.userid = GetUserId();
	stmt.query = pk_adv_analyze(sql, NULL, 0);

	/* plan it, and initialize the plan as EXPLAIN does: checks privileges, runs nothing */
	pstmt = pk_whatif_plan(stmt.query, sql, NULL, NULL, 0);
	PushActiveSnapshot(GetTransactionSnapshot());
	qd = CreateQueryDesc(pstmt, sql, GetActiveSnapshot(), InvalidSnapshot, None_Receiver,
						 NULL, NULL, 0);
	standard_ExecutorStart(qd, EXEC_FLAG_EXPLAIN_ONLY);
	count = pk_quals_from_planstate(qd, quals, PK_ADV_QUALS_PER_STMT);
	standard_ExecutorEnd(qd);
	FreeQueryDesc(qd);
	PopActiveSnapshot();

	pk_adv_set_quals(&stmt, quals, count);
	memset(&w, 0, sizeof(w));
	w.max_indexes = -1;
	w.min_improvement = pk_advisor_min_improvement;
	w.hours = 1;
	w.ms_per_cost = -1;
	chosen = pk_adv_compute(&stmt, 1, &w);
	MemoryContextSwitchTo(old);
	pk_adv_emit(rsinfo, chosen, &stmt, &w);
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
