/*-------------------------------------------------------------------------
 *
 * indexbuild_request.c
 *	  Index builds: validation of a request in the caller's transaction (the
 *	  definition, the table, names, tablespace, predicate) and the request row.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "catalog/catalog.h"
#include "catalog/namespace.h"
#include "catalog/pg_tablespace_d.h"
#include "commands/defrem.h"
#include "commands/tablespace.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "parser/parse_target.h"
#include "pgstat.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "core/compat.h"
#include "indexbuild/indexbuild_internal.h"

/*
 * Rethrow the error being handled with its cursor position moved into the
 * given text (shown as the internal query), offset characters earlier.
 * Called in PG_CATCH; cxt is a context that outlives the error.
 */
static void
pk_ib_rethrow_within(MemoryContext cxt, int offset, const char *shown)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(cxt);
	edata = CopyErrorData();
	FlushErrorState();
	if (edata->cursorpos > 0 && edata->internalquery == NULL)
	{
		edata->internalpos = Max(edata->cursorpos - offset, 1);
		edata->internalquery = pstrdup(shown);
		edata->cursorpos = 0;
	}
	ReThrowError(edata);
}

/*
 * raw_parser() on sql; an error points into shown, which is sql without
 * its first offset characters (positions relative to what the user typed).
 */
List *
pk_ib_parse(const char *sql, int offset, const char *shown)
{
	MemoryContext cxt = CurrentMemoryContext;
	List	   *volatile result = NIL;

	PG_TRY();
	{
		result = raw_parser(sql, RAW_PARSE_DEFAULT);
	}
	PG_CATCH();
	{
		pk_ib_rethrow_within(cxt, offset, shown);
	}
	PG_END_TRY();
	return result;
}

/* Reject a NULL argument with a clear error */
void
pk_ib_not_null(FunctionCallInfo fcinfo, int argno, const char *what, const char *hint)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", what),
				 hint ? errhint("%s", hint) : 0));
}

/* Elements of a text[] argument; NULL elements are an error */
List *
pk_ib_text_array(ArrayType *arr, const char *what)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	List	   *result = NIL;

	if (ARR_ELEMTYPE(arr) != TEXTOID)
		elog(ERROR, "%s must be a text array", what);
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("%s must be a one-dimensional array", what),
				 errhint("Pass the names in order, e.g. ARRAY['customer_id', 'created_at'].")));
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	for (int i = 0; i < n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not contain nulls", what)));
		result = lappend(result, TextDatumGetCString(elems[i]));
	}
	return result;
}

/*
 * Reject a name given as a text argument (index, column, access method)
 * that no object can have because it is too long; a very long one shows in
 * the message by its start only.
 */
void
pk_ib_check_name_length(const char *what, const char *name)
{
	int			len = strlen(name);

	if (len >= NAMEDATALEN && len <= 4 * NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("%s \"%s\" is too long", what, name),
				 errdetail("Names are limited to %d bytes.", NAMEDATALEN - 1)));
	if (len > 4 * NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("%s \"%.*s...\" is too long", what,
						pg_mbcliplen(name, len, NAMEDATALEN - 1), name),
				 errdetail("Names are limited to %d bytes.", NAMEDATALEN - 1)));
}

/*
 * Reject index names that are empty, too long, or contain characters no
 * sensible index name has: double quotes, semicolons, control characters.
 */
void
pk_ib_check_index_name(const char *name)
{
	if (name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("index name must not be empty")));
	pk_ib_check_name_length("index name", name);
	for (const char *p = name; *p; p++)
	{
		unsigned char c = (unsigned char) *p;

		if (c == '"' || c == ';' || c < 0x20 || c == 0x7f)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_NAME),
					 errmsg("invalid index name \"%s\"", name),
					 errdetail("Index names given to perfkit must not contain double quotes, semicolons or control characters."),
					 errhint("Use a plain name such as orders_customer_id_idx.")));
	}
}

/* The error for a caller who does not own the table */
static void
pk_ib_not_owner(const char *relname)
{
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("must be owner of table \"%s\"", relname),
			 errhint("Only the owner of a table can create or drop its indexes; run the migration as the owning role.")));
}

/*
 * Refuse a table the caller does not own before locking it, as CREATE INDEX
 * does: a role must not queue for locks on other roles' tables (behind an
 * ALTER TABLE, say) just to be told it may not use them.  Called with the
 * relation's OID (valid, not yet locked) or InvalidOid.
 */
void
pk_ib_owner_before_lock(Oid relid)
{
	char	   *relname;

	if (!OidIsValid(relid) || pk_class_ownercheck(relid, GetUserId()))
		return;
	relname = get_rel_name(relid);
	if (relname == NULL)
		return;					/* dropped meanwhile: the caller finds out */
	pk_ib_not_owner(relname);
}

/* RangeVarGetRelidExtended callback: pk_ib_owner_before_lock() */
static void
pk_ib_rangevar_owner(const RangeVar *relation, Oid relId, Oid oldRelId, void *arg)
{
	pk_ib_owner_before_lock(relId);
}

/*
 * Check that the caller may build (creating) or drop an index on relid in
 * the background: an existing, permanent, non-catalog table or materialized
 * view that the caller owns; to build, in a schema where the caller can
 * still create objects (DROP INDEX needs no privilege on the schema).
 */
void
pk_ib_check_table(Oid relid, bool creating)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Form_pg_class cls;
	char	   *relname;
	AclResult	aclresult;

	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	cls = (Form_pg_class) GETSTRUCT(tup);
	relname = pstrdup(NameStr(cls->relname));

	if (cls->relkind == RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot create an index concurrently on partitioned table \"%s\"", relname),
				 errhint("Request an index on each partition, then create the parent's index with CREATE INDEX ... ON ONLY and attach the partitions' indexes.")));
	if (cls->relkind != RELKIND_RELATION && cls->relkind != RELKIND_MATVIEW)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table or materialized view", relname)));
	if (cls->relpersistence == RELPERSISTENCE_TEMP)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot %s an index on temporary table \"%s\" in the background",
						creating ? "build" : "drop", relname),
				 errhint("A temporary table is private to its session: use %s directly.",
						 creating ? "CREATE INDEX" : "DROP INDEX")));
	if (IsCatalogRelationOid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot %s an index on system catalog \"%s\" in the background",
						creating ? "build" : "drop", relname)));
	if (!pk_class_ownercheck(relid, GetUserId()))
		pk_ib_not_owner(relname);
	if (creating)
	{
		aclresult = pk_namespace_aclcheck(cls->relnamespace, GetUserId(), ACL_CREATE);
		if (aclresult != ACLCHECK_OK)
			aclcheck_error(aclresult, OBJECT_SCHEMA, get_namespace_name(cls->relnamespace));
	}
	ReleaseSysCache(tup);
}

/* A named tablespace must exist, allow the caller to create in it and not be pg_global */
static void
pk_ib_check_tablespace(const char *spcname)
{
	Oid			spc;
	AclResult	aclresult;

	if (spcname == NULL)
		return;
	spc = get_tablespace_oid(spcname, false);
	if (spc == MyDatabaseTableSpace)
		return;
	aclresult = pk_tablespace_aclcheck(spc, GetUserId(), ACL_CREATE);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_TABLESPACE, spcname);
	/* as in DefineIndex: only shared catalogs live there */
	if (spc == GLOBALTABLESPACE_OID)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("only shared relations can be placed in pg_global tablespace")));
}

/* The name CREATE INDEX would choose without a collision: table_col1_col2_idx */
static char *
pk_ib_choose_name(Oid relid, IndexStmt *stmt)
{
	char		buf[NAMEDATALEN * 2];
	int			buflen = 0;
	ListCell   *lc;
	List	   *elems = list_concat_copy(stmt->indexParams, stmt->indexIncludingParams);

	buf[0] = '\0';
	foreach(lc, elems)
	{
		IndexElem  *elem = lfirst_node(IndexElem, lc);
		const char *colname = elem->name;

		if (colname == NULL && elem->expr != NULL)
			colname = FigureIndexColname(elem->expr);
		if (colname == NULL)
			colname = "expr";
		if (buflen > 0)
			buf[buflen++] = '_';
		strlcpy(buf + buflen, colname, NAMEDATALEN);
		buflen += strlen(buf + buflen);
		if (buflen >= NAMEDATALEN)
			break;
	}
	return makeObjectName(get_rel_name(relid), buf, "idx");
}

/*
 * What carries name in the schema of table relid: nothing, another relation
 * (or an index of another table), or an INVALID or valid index of relid,
 * whose OID goes to *indexoid (else InvalidOid).
 */
PkIbNamed
pk_ib_lookup_name(Oid relid, const char *name, Oid *indexoid)
{
	Oid			nsp = get_rel_namespace(relid);
	Oid			existing = OidIsValid(nsp) ? get_relname_relid(name, nsp) : InvalidOid;
	HeapTuple	tup;
	bool		valid;

	*indexoid = InvalidOid;
	if (!OidIsValid(existing))
		return PK_IB_NAME_FREE;
	if (get_rel_relkind(existing) != RELKIND_INDEX)
		return PK_IB_NAME_OTHER;
	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(existing));
	if (!HeapTupleIsValid(tup))
		return PK_IB_NAME_OTHER;	/* dropped meanwhile */
	if (((Form_pg_index) GETSTRUCT(tup))->indrelid != relid)
	{
		ReleaseSysCache(tup);
		return PK_IB_NAME_OTHER;
	}
	valid = ((Form_pg_index) GETSTRUCT(tup))->indisvalid;
	ReleaseSysCache(tup);
	*indexoid = existing;
	return valid ? PK_IB_NAME_VALID : PK_IB_NAME_INVALID;
}

/*
 * An existing relation with the index's name must be an index of the same
 * table (the builder skips it when identical and rebuilds it when INVALID);
 * an identical valid one is fine, a different valid one is an error.
 */
static void
pk_ib_check_name(Oid relid, const char *name, bool if_not_exists, const PkIbShape *shape)
{
	Oid			existing;
	PkIbNamed	named;

	if (if_not_exists)
		return;
	named = pk_ib_lookup_name(relid, name, &existing);
	if (named == PK_IB_NAME_OTHER)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_TABLE),
				 errmsg("relation \"%s\" already exists", name),
				 errhint("Choose another index name.")));
	if (named == PK_IB_NAME_VALID && !pk_ib_index_matches(existing, shape))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_TABLE),
				 errmsg("index \"%s\" already exists with a different definition", name),
				 errhint("Choose another index name, add IF NOT EXISTS, or drop the index first with perfkit.drop_index_concurrently().")));
}

/* Write a request row as the requests table's owner; returns its id */
int64
pk_ib_insert_request(const char *kind, Oid relid, Oid indexrelid, const char *name,
					 const char *definition)
{
	Oid			reqrel = pk_ib_requests_table();
	Oid			argtypes[7] = {TEXTOID, OIDOID, OIDOID, TEXTOID, TEXTOID, TEXTOID, OIDOID};
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	const char *search_path = GetConfigOption("search_path", false, false);
	PkSavedIdentity saved;
	bool		isnull;
	int64		id;
	int			ret;

	values[0] = CStringGetTextDatum(kind);
	values[1] = ObjectIdGetDatum(relid);
	values[2] = ObjectIdGetDatum(indexrelid);
	if (!OidIsValid(indexrelid))
		nulls[2] = 'n';
	values[3] = CStringGetTextDatum(name);
	values[4] = CStringGetTextDatum(definition);
	values[5] = CStringGetTextDatum(search_path ? search_path : "");
	values[6] = ObjectIdGetDatum(GetUserId());

	pk_ib_become_owner(reqrel, &saved);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = SPI_execute_with_args("INSERT INTO perfkit.index_build_requests"
								" (kind, relid, indexrelid, index_name, definition, search_path, requested_by)"
								" VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
								7, argtypes, values, nulls, false, 1);
	if (ret != SPI_OK_INSERT_RETURNING || SPI_processed != 1)
		elog(ERROR, "could not record the index build request: %s", SPI_result_code_string(ret));
	id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	pk_run_as_end(&saved);

	pk_ib_arm_wakeup();
	return id;
}

/*
 * Refuse to request a build with standard_conforming_strings off: the
 * builder parses the text again with it on, where a backslash in a string
 * literal means something else.
 */
void
pk_ib_require_standard_strings(void)
{
	if (!PK_STANDARD_CONFORMING_STRINGS)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("index builds cannot be requested with standard_conforming_strings off"),
				 errdetail("The background builder parses the definition with standard_conforming_strings on, where backslashes in string literals are ordinary characters."),
				 errhint("SET standard_conforming_strings = on (the default) before requesting the build.")));
}

/* Validate a CREATE INDEX definition and record the request; returns its id */
int64
pk_ib_request_create(const char *definition)
{
	MemoryContext cxt = CurrentMemoryContext;
	List	   *raw = pk_ib_parse(definition, 0, definition);
	Node	   *parsed;
	IndexStmt  *stmt;
	Oid			relid;
	char	   *name;
	PkIbShape	shape;

	if (list_length(raw) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("index definition must be exactly one CREATE INDEX statement"),
				 errdetail("The definition contains %d statements.", list_length(raw)),
				 errhint("Pass a single CREATE INDEX statement, with nothing after it.")));
	parsed = linitial_node(RawStmt, raw)->stmt;
	if (!IsA(parsed, IndexStmt))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("index definition must be a CREATE INDEX statement"),
				 errdetail("The definition's statement is %s.", CreateCommandName(parsed)),
				 errhint("Pass CREATE [UNIQUE] INDEX name ON table (...); to drop an index use perfkit.drop_index_concurrently().")));
	stmt = (IndexStmt *) parsed;

	relid = RangeVarGetRelidExtended(stmt->relation, AccessShareLock, 0,
									 pk_ib_rangevar_owner, NULL);
	pk_ib_check_table(relid, true);
	name = stmt->idxname ? stmt->idxname : pk_ib_choose_name(relid, stmt);
	pk_ib_check_index_name(name);
	pk_ib_check_tablespace(stmt->tableSpace);

	PG_TRY();
	{
		pk_ib_index_shape(relid, stmt, definition, &shape);
	}
	PG_CATCH();
	{
		pk_ib_rethrow_within(cxt, 0, definition);
	}
	PG_END_TRY();

	pk_ib_check_name(relid, name, stmt->if_not_exists, &shape);
	return pk_ib_insert_request("create", relid, InvalidOid, name, definition);
}

/*
 * A predicate must be one expression: "SELECT <predicate>" must parse as a
 * plain one-column SELECT (no FROM, alias or further clause), so that
 * "WHERE (<predicate>)" cannot be anything but a condition.
 */
void
pk_ib_check_predicate(const char *predicate)
{
	char	   *sql = psprintf("SELECT %s", predicate);
	List	   *raw = pk_ib_parse(sql, strlen("SELECT "), predicate);
	SelectStmt *sel = NULL;
	bool		ok;

	if (list_length(raw) == 1 && IsA(linitial_node(RawStmt, raw)->stmt, SelectStmt))
		sel = (SelectStmt *) linitial_node(RawStmt, raw)->stmt;
	ok = sel != NULL &&
		sel->op == SETOP_NONE &&
		list_length(sel->targetList) == 1 &&
		((ResTarget *) linitial(sel->targetList))->name == NULL &&
		sel->distinctClause == NIL && sel->intoClause == NULL &&
		sel->fromClause == NIL && sel->whereClause == NULL &&
		sel->groupClause == NIL && sel->havingClause == NULL &&
		sel->windowClause == NIL && sel->valuesLists == NIL &&
		sel->sortClause == NIL && sel->limitOffset == NULL &&
		sel->limitCount == NULL && sel->lockingClause == NIL &&
		sel->withClause == NULL;
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("predicate must be a single boolean expression"),
				 errdetail("The predicate \"%s\" is not one expression.", predicate),
				 errhint("Pass only the condition, e.g. 'deleted_at IS NULL', without WHERE, semicolons or other clauses.")));
}
