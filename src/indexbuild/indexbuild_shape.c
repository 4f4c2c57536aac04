/*-------------------------------------------------------------------------
 *
 * indexbuild_shape.c
 *	  Index builds: resolve a CREATE INDEX statement into its shape (method,
 *	  columns, operator classes, collations, options, expressions, predicate)
 *	  and compare an existing index with it.
 *
 *	  Adapted from PostgreSQL 15's src/backend/commands/indexcmds.c
 *	  (DefineIndex, ComputeIndexAttrs, CheckMutability, CheckPredicate): the
 *	  same checks in the same order, raising the same errors, so that a bad
 *	  request fails in the caller's transaction instead of in the background.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/htup_details.h"
#include "access/reloptions.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "commands/defrem.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parse_utilcmd.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "core/compat.h"
#include "indexbuild/indexbuild_internal.h"

/* Attribute number, type and collation of a column; errors for unknown and system columns */
AttrNumber
pk_ib_column(Oid relid, const char *colname, Oid *atttype, Oid *attcoll)
{
	HeapTuple	tup = SearchSysCacheAttName(relid, colname);
	Form_pg_attribute att;
	AttrNumber	attnum;

	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of relation \"%s\" does not exist",
						colname, get_rel_name(relid))));
	att = (Form_pg_attribute) GETSTRUCT(tup);
	attnum = att->attnum;
	*atttype = att->atttypid;
	*attcoll = att->attcollation;
	ReleaseSysCache(tup);
	if (attnum < 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("index creation on system columns is not supported")));
	return attnum;
}

/*
 * True when an expression uses non-immutable functions (as DefineIndex
 * decides, with the search_path DefineIndex uses: restricted from 17 on)
 */
static bool
pk_ib_is_mutable(Expr *expr)
{
	int			level = pk_index_search_path_begin();
	bool		mutable;

	mutable = contain_mutable_functions((Node *) expression_planner(expr));
	pk_index_search_path_end(level);
	return mutable;
}

/* "name=value" strings of a reloptions text[] datum */
static List *
pk_ib_reloption_strings(Datum options)
{
	List	   *result = NIL;

	if (options != (Datum) 0)
		result = pk_ib_text_array(DatumGetArrayTypeP(options), "reloptions");
	return result;
}

/* Two lists of C strings are equal */
static bool
pk_ib_strings_equal(List *a, List *b)
{
	ListCell   *la;
	ListCell   *lb;

	if (list_length(a) != list_length(b))
		return false;
	forboth(la, a, lb, b)
	{
		if (strcmp((char *) lfirst(la), (char *) lfirst(lb)) != 0)
			return false;
	}
	return true;
}

/*
 * Refuse system columns as key or INCLUDE columns and inside expressions
 * or the predicate, as DefineIndex does ("CREATE INDEX ... ((ctid))" must
 * fail at request time, not later in the background).
 */
static void
pk_ib_check_system_columns(const PkIbShape *shape)
{
	Bitmapset  *attrs = NULL;
	bool		found = false;

	for (int i = 0; i < shape->natts; i++)
		found = found || shape->attnums[i] < 0;
	pull_varattnos((Node *) shape->exprs, 1, &attrs);
	pull_varattnos(shape->predicate, 1, &attrs);
	for (int i = FirstLowInvalidHeapAttributeNumber + 1; i < 0; i++)
		found = found || bms_is_member(i - FirstLowInvalidHeapAttributeNumber, attrs);
	if (found)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("index creation on system columns is not supported")));
}

/* The access method of a statement, refusing what it cannot do (DefineIndex's checks) */
static const IndexAmRoutine *
pk_ib_check_method(const char *amname, bool unique, int nkey, int ninc, Oid *amoid)
{
	const IndexAmRoutine *am;

	*amoid = get_index_am_oid(amname, true);
	if (!OidIsValid(*amoid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("access method \"%s\" does not exist", amname),
				 errhint("Index access methods are listed in pg_am with amtype 'i', for example btree, hash, gist, gin and brin.")));
	am = GetIndexAmRoutineByAmId(*amoid, false);
	if (nkey + ninc > INDEX_MAX_KEYS)
		ereport(ERROR,
				(errcode(ERRCODE_TOO_MANY_COLUMNS),
				 errmsg("cannot use more than %d columns in an index", INDEX_MAX_KEYS)));
	if (unique && !am->amcanunique)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("access method \"%s\" does not support unique indexes", amname)));
	if (ninc > 0 && !am->amcaninclude)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("access method \"%s\" does not support included columns", amname)));
	if (nkey > 1 && !am->amcanmulticol)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("access method \"%s\" does not support multicolumn indexes", amname)));
	return am;
}

/* Collation of a key column: the element's COLLATE or the column's, checked as ComputeIndexAttrs does */
static Oid
pk_ib_key_collation(const IndexElem *elem, Oid atttype, Oid attcoll)
{
	if (elem->collation != NIL)
		attcoll = get_collation_oid(elem->collation, false);
	if (type_is_collatable(atttype))
	{
		if (!OidIsValid(attcoll))
			ereport(ERROR,
					(errcode(ERRCODE_INDETERMINATE_COLLATION),
					 errmsg("could not determine which collation to use for index expression"),
					 errhint("Use the COLLATE clause to set the collation explicitly.")));
	}
	else if (OidIsValid(attcoll))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("collations are not supported by type %s", format_type_be(atttype))));
	return attcoll;
}

/* Resolve key column attn of the shape: column or expression, collation, opclass, ordering */
static void
pk_ib_key_column(Oid relid, IndexElem *elem, const IndexAmRoutine *am, const char *amname,
				 PkIbShape *shape, int attn)
{
	Oid			atttype;
	Oid			attcoll;

	if (elem->name != NULL)
		shape->attnums[attn] = pk_ib_column(relid, elem->name, &atttype, &attcoll);
	else
	{
		Node	   *expr = elem->expr;

		atttype = exprType(expr);
		attcoll = exprCollation(expr);
		/* "(x COLLATE y)" and "(x)" are plain columns for DefineIndex too */
		while (IsA(expr, CollateExpr))
			expr = (Node *) ((CollateExpr *) expr)->arg;
		if (IsA(expr, Var) && ((Var *) expr)->varattno != InvalidAttrNumber)
			shape->attnums[attn] = ((Var *) expr)->varattno;
		else
		{
			if (pk_ib_is_mutable((Expr *) expr))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
						 errmsg("functions in index expression must be marked IMMUTABLE")));
			shape->exprs = lappend(shape->exprs, expr);
		}
	}

	shape->collations[attn] = pk_ib_key_collation(elem, atttype, attcoll);
	shape->opclasses[attn] = ResolveOpClass(elem->opclass, atttype, amname, shape->amoid);

	if (am->amcanorder)
	{
		if (elem->ordering == SORTBY_DESC)
			shape->options[attn] |= INDOPTION_DESC;
		if (elem->nulls_ordering == SORTBY_NULLS_FIRST ||
			(elem->nulls_ordering == SORTBY_NULLS_DEFAULT && elem->ordering == SORTBY_DESC))
			shape->options[attn] |= INDOPTION_NULLS_FIRST;
	}
	else if (elem->ordering != SORTBY_DEFAULT || elem->nulls_ordering != SORTBY_NULLS_DEFAULT)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("access method \"%s\" does not support ASC/DESC or NULLS FIRST/LAST options", amname)));
}

/*
 * Resolve a raw CREATE INDEX statement on relid the way DefineIndex would
 * (ComputeIndexAttrs, CheckPredicate), raising DefineIndex's errors.  The
 * caller holds a lock on the table; names resolve under the current
 * search_path.
 *
 * Parse analysis runs as the current user, like ProcessUtility's; the rest
 * runs the way DefineIndex runs it: as the table's owner, in a
 * security-restricted operation and a GUC nest level of its own, because
 * checking immutability constant-folds the expressions, which calls their
 * functions.  Those can neither create temporary objects, change role nor
 * leave settings behind (an error restores all this through the abort of
 * the (sub)transaction).
 */
void
pk_ib_index_shape(Oid relid, IndexStmt *stmt, const char *sql, PkIbShape *shape)
{
	const char *amname = stmt->accessMethod ? stmt->accessMethod : DEFAULT_INDEX_TYPE;
	int			nkey = list_length(stmt->indexParams);
	int			ninc = list_length(stmt->indexIncludingParams);
	const IndexAmRoutine *am;
	IndexStmt  *t;
	ListCell   *lc;
	int			attn = 0;
	PkSavedIdentity saved;

	memset(shape, 0, sizeof(PkIbShape));
	am = pk_ib_check_method(amname, stmt->unique, nkey, ninc, &shape->amoid);

	/* expressions and predicate: parse analysis against the table alone */
	t = transformIndexStmt(relid, stmt, sql);

	pk_run_as_begin(pk_ib_rel_owner(relid), SECURITY_RESTRICTED_OPERATION, true, &saved);

	shape->unique = t->unique;
	shape->nulls_not_distinct = t->nulls_not_distinct;
	shape->nkeyatts = nkey;
	shape->natts = nkey + ninc;

	foreach(lc, t->indexParams)
		pk_ib_key_column(relid, lfirst_node(IndexElem, lc), am, amname, shape, attn++);

	foreach(lc, t->indexIncludingParams)
	{
		IndexElem  *elem = lfirst_node(IndexElem, lc);
		Oid			atttype;
		Oid			attcoll;

		if (elem->name == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("expressions are not supported in included columns")));
		shape->attnums[attn++] = pk_ib_column(relid, elem->name, &atttype, &attcoll);
	}

	if (t->whereClause != NULL)
	{
		if (pk_ib_is_mutable((Expr *) t->whereClause))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
					 errmsg("functions in index predicate must be marked IMMUTABLE")));
		/* pg_index.indpred holds the implicit-AND list made explicit again */
		shape->predicate = (Node *) make_ands_explicit(make_ands_implicit((Expr *) t->whereClause));
	}

	pk_ib_check_system_columns(shape);

	if (t->options != NIL)
	{
		Datum		options = transformRelOptions((Datum) 0, t->options, NULL, NULL,
												  false, false);

		(void) index_reloptions(am->amoptions, options, true);
		shape->reloptions = pk_ib_reloption_strings(options);
	}

	pk_run_as_end(&saved);
}

/* True when an existing index has exactly the resolved shape */
bool
pk_ib_index_matches(Oid indexoid, const PkIbShape *want)
{
	HeapTuple	itup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(indexoid));
	HeapTuple	ctup = SearchSysCache1(RELOID, ObjectIdGetDatum(indexoid));
	Form_pg_index idx;
	Datum		d;
	bool		isnull;
	bool		same;

	if (!HeapTupleIsValid(itup) || !HeapTupleIsValid(ctup))
	{
		if (HeapTupleIsValid(itup))
			ReleaseSysCache(itup);
		if (HeapTupleIsValid(ctup))
			ReleaseSysCache(ctup);
		return false;
	}
	idx = (Form_pg_index) GETSTRUCT(itup);

	same = ((Form_pg_class) GETSTRUCT(ctup))->relam == want->amoid &&
		idx->indisunique == want->unique &&
		idx->indnatts == want->natts &&
		idx->indnkeyatts == want->nkeyatts;
	same = same && idx->indnullsnotdistinct == want->nulls_not_distinct;
	for (int i = 0; same && i < want->natts; i++)
		same = idx->indkey.values[i] == want->attnums[i];

	if (same)
	{
		oidvector  *opclasses;
		oidvector  *collations;
		int2vector *options;

		d = SysCacheGetAttr(INDEXRELID, itup, Anum_pg_index_indclass, &isnull);
		opclasses = (oidvector *) DatumGetPointer(d);
		d = SysCacheGetAttr(INDEXRELID, itup, Anum_pg_index_indcollation, &isnull);
		collations = (oidvector *) DatumGetPointer(d);
		d = SysCacheGetAttr(INDEXRELID, itup, Anum_pg_index_indoption, &isnull);
		options = (int2vector *) DatumGetPointer(d);
		for (int i = 0; same && i < want->nkeyatts; i++)
			same = opclasses->values[i] == want->opclasses[i] &&
				collations->values[i] == want->collations[i] &&
				options->values[i] == want->options[i];
	}
	if (same)
	{
		List	   *exprs = NIL;

		d = SysCacheGetAttr(INDEXRELID, itup, Anum_pg_index_indexprs, &isnull);
		if (!isnull)
			exprs = (List *) stringToNode(TextDatumGetCString(d));
		same = equal(exprs, want->exprs);
	}
	if (same)
	{
		Node	   *pred = NULL;

		d = SysCacheGetAttr(INDEXRELID, itup, Anum_pg_index_indpred, &isnull);
		if (!isnull)
			pred = (Node *) stringToNode(TextDatumGetCString(d));
		same = equal(pred, want->predicate);
	}
	if (same)
	{
		d = SysCacheGetAttr(RELOID, ctup, Anum_pg_class_reloptions, &isnull);
		same = pk_ib_strings_equal(isnull ? NIL : pk_ib_reloption_strings(d),
								   want->reloptions);
	}
	ReleaseSysCache(itup);
	ReleaseSysCache(ctup);
	return same;
}
