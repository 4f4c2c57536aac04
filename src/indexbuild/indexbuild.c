/*-------------------------------------------------------------------------
 *
 * indexbuild.c
 *	  Concurrent index builds requested from SQL: settings, shared wake-up
 *	  state, request-time validation and the SQL-callable functions.
 *
 * CREATE INDEX CONCURRENTLY cannot run inside a transaction block or a
 * function, but migration frameworks wrap every migration in a transaction.
 * So perfkit.create_index_concurrently() only validates the request and
 * writes it as a row of perfkit.index_build_requests, in the caller's
 * transaction: the request becomes visible when the migration commits and
 * vanishes if it rolls back.  A background worker (indexbuild_worker.c)
 * runs the statement afterwards, as a top-level statement of its own.
 *
 * Validation happens here, in the caller's transaction, so that a bad
 * request fails the migration instead of failing later in the background:
 * the definition must parse (raw_parser) as exactly one CREATE INDEX; the
 * table must exist, be an ordinary table or materialized view, and belong
 * to the caller (the right CREATE INDEX needs); columns, expressions,
 * operator classes, collations, options and the access method are resolved
 * and the predicate goes through parse analysis (transformIndexStmt), which
 * rejects subqueries and references to other tables, plus the same
 * immutability checks DefineIndex makes.  The structured variant builds the
 * statement from quoted identifiers and checks the predicate on its own
 * first, so nothing in a text argument can add a second statement.
 *
 * The request row is written with SPI as the owner of the requests table
 * (the superuser that created the extension): callers have no privileges on
 * the table itself, and see it through the perfkit.index_builds view, which
 * hides other roles' error texts.  Every query names its objects with their
 * schema and uses OPERATOR(pg_catalog.=), so the caller's search_path
 * cannot redirect them.
 *
 * Trust: the builder runs as a superuser until it switches to a request's
 * role, so it must only ever read the extension's own table.  Any role that
 * may create a schema can create a table named perfkit.index_build_requests
 * in a database without perfkit, and the launcher starts a builder in every
 * database at server start.  So pk_ib_requests_relid() accepts the table
 * only when it is a member of the perfkit extension and owned by a
 * superuser, and checks that before locking it (a lookalike must not even
 * make the builder wait); everything else counts as "not installed".
 *
 * Code of the requester runs during validation when expressions are
 * constant-folded (the immutability check calls IMMUTABLE functions).  As
 * in DefineIndex, that happens as the table's owner, in a security-restricted
 * operation (no temporary objects, no SET ROLE) and in a GUC nest level of
 * its own (settings it changes are reverted), both at request time and when
 * the builder compares an existing index with the request.
 *
 * The definition is parsed again by the builder, with
 * standard_conforming_strings on; a request made with it off could mean
 * something else there, so it is refused.
 *
 * Wake-up: the requesting backend arms a transaction callback; at
 * XACT_EVENT_COMMIT (after the commit is visible to other backends) it marks
 * its database as wanted in shared memory and sets the launcher's latch, so
 * a build starts within milliseconds and nothing polls.  A rolled-back
 * request never wakes anybody.  PREPARE TRANSACTION is refused for a
 * transaction that requested a build, because its commit would happen in
 * another backend, without the callback.
 *
 * Locking: PkIbShared and its per-database slots are protected by a single
 * spinlock, held only to read or write a few fields (never across a system
 * call or an allocation).  Writers are the requesting backends (wanted,
 * cancel_id, cancel_signalling), the launcher (launch_pending, free slots)
 * and the database's builder (worker_pid, running_id, retry_at).  A
 * canceller decides to signal the builder under the spinlock, while
 * running_id is the build it cancels, and counts itself in
 * cancel_signalling until its kill() has returned; the builder waits for
 * that count to drop to zero whenever a statement ends, so a SIGINT meant
 * for one build never reaches the next one (indexbuild_worker.c), and the
 * launcher does not free a slot while the count is nonzero.  Row-level
 * state lives in the table and follows ordinary transactional rules.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/amapi.h"
#include "access/htup_details.h"
#include "access/reloptions.h"
#include "access/sysattr.h"
#include "access/xact.h"
#include "catalog/catalog.h"
#include "catalog/dependency.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_attribute.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "catalog/pg_tablespace_d.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "commands/extension.h"
#include "commands/tablespace.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parse_target.h"
#include "parser/parse_utilcmd.h"
#include "parser/parser.h"
#include "pgstat.h"
#include "storage/lmgr.h"
#include "storage/shmem.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "indexbuild/indexbuild.h"

PG_FUNCTION_INFO_V1(perfkit_create_index_concurrently);
PG_FUNCTION_INFO_V1(perfkit_create_index_concurrently_columns);
PG_FUNCTION_INFO_V1(perfkit_drop_index_concurrently);
PG_FUNCTION_INFO_V1(perfkit_cancel_index_build);
PG_FUNCTION_INFO_V1(perfkit_wait_for_index_builds);

/* Poll interval of perfkit.wait_for_index_builds(), ms */
#define PK_IB_WAIT_POLL_MS	200

/* Longest timeout of perfkit.wait_for_index_builds() with a deadline (100 years), ms */
#define PK_IB_WAIT_MAX_MS	(100.0 * 366 * 86400 * 1000)

/* Settings */
int			pk_ib_lock_timeout = 300000;
int			pk_ib_statement_timeout = 0;
int			pk_ib_max_attempts = 3;
int			pk_ib_retry_delay = 60000;
int			pk_ib_max_workers = 2;

PkIbShared *pk_ib = NULL;

/* This backend's transaction requested a build: wake the builder at commit */
static bool pk_ib_wake_at_commit = false;
static bool pk_ib_callback_registered = false;

/* The caller's identity, saved while SPI runs as the requests table's owner */
typedef struct PkIbSavedUser
{
	Oid			userid;
	int			sec_context;
} PkIbSavedUser;

/* Register the perfkit.index_build_* settings */
static void
pk_indexbuild_define_settings(void)
{
	DefineCustomIntVariable("perfkit.index_build_lock_timeout",
							"Lock timeout of background index builds, which also bounds their waits for older transactions; 0 waits forever.",
							NULL, &pk_ib_lock_timeout, 300000, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("perfkit.index_build_statement_timeout",
							"Time limit of each background index build statement; 0 means no limit.",
							NULL, &pk_ib_statement_timeout, 0, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("perfkit.index_build_max_attempts",
							"Attempts of an index build before it is marked failed; only lock timeouts, deadlocks and interruptions are retried.",
							NULL, &pk_ib_max_attempts, 3, 1, 100,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("perfkit.index_build_retry_delay",
							"Delay before an index build is retried; it doubles with each further attempt.",
							NULL, &pk_ib_retry_delay, 60000, 0, 86400000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("perfkit.index_build_max_workers",
							"Databases whose index builds run at the same time, one background worker each.",
							NULL, &pk_ib_max_workers, 2, 1, PK_IB_MAX_DATABASES,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
}

/* Shared memory needed by the index-build state */
Size
pk_indexbuild_shmem_size(void)
{
	return MAXALIGN(sizeof(PkIbShared));
}

/* Module load: the settings and the launcher */
void
pk_indexbuild_init(void)
{
	pk_indexbuild_define_settings();
	pk_indexbuild_register_workers();
}

/* Attach to (or create) the shared state; the caller holds AddinShmemInitLock */
void
pk_indexbuild_shmem_init(void)
{
	bool		found;

	pk_ib = ShmemInitStruct("perfkit index builds", sizeof(PkIbShared), &found);
	if (!found)
	{
		memset(pk_ib, 0, sizeof(PkIbShared));
		SpinLockInit(&pk_ib->mutex);
	}
}

/* Raise the usual error when perfkit was not preloaded */
static void
pk_ib_require_loaded(void)
{
	pk_require_preloaded(pk_ib != NULL);
}

/*
 * The slot of a database, or with create a new one; NULL when absent (or
 * all slots are taken).  The caller holds pk_ib->mutex.
 */
PkIbDatabase *
pk_ib_slot_locked(Oid dboid, bool create)
{
	PkIbDatabase *free_slot = NULL;

	for (int i = 0; i < PK_IB_MAX_DATABASES; i++)
	{
		PkIbDatabase *slot = &pk_ib->dbs[i];

		if (slot->dboid == dboid)
			return slot;
		if (free_slot == NULL && slot->dboid == InvalidOid)
			free_slot = slot;
	}
	if (!create || free_slot == NULL)
		return NULL;
	memset(free_slot, 0, sizeof(PkIbDatabase));
	free_slot->dboid = dboid;
	return free_slot;
}

/* Tell the launcher (and a running builder) that a database has work */
void
pk_ib_wake_database(Oid dboid)
{
	PkIbDatabase *slot;
	Latch	   *worker_latch = NULL;
	Latch	   *launcher_latch;

	if (pk_ib == NULL)
		return;
	SpinLockAcquire(&pk_ib->mutex);
	slot = pk_ib_slot_locked(dboid, true);
	if (slot != NULL)
	{
		slot->wanted = true;
		if (slot->worker_pid != 0)
			worker_latch = slot->worker_latch;
	}
	else
		pk_ib->rescan = true;
	launcher_latch = pk_ib->launcher_latch;
	SpinLockRelease(&pk_ib->mutex);

	if (worker_latch != NULL)
		SetLatch(worker_latch);
	if (launcher_latch != NULL)
		SetLatch(launcher_latch);
}

/* Transaction callback: wake the builder when a requesting transaction commits */
static void
pk_ib_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			if (pk_ib_wake_at_commit)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot PREPARE a transaction that requested an index build"),
						 errhint("Request index builds in a transaction that commits directly.")));
			break;
		case XACT_EVENT_COMMIT:
			if (pk_ib_wake_at_commit)
			{
				pk_ib_wake_at_commit = false;
				pk_ib_wake_database(MyDatabaseId);
			}
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
			pk_ib_wake_at_commit = false;
			break;
		default:
			break;
	}
}

/* Arrange for the builder to be woken when this transaction commits */
static void
pk_ib_arm_wakeup(void)
{
	if (!pk_ib_callback_registered)
	{
		RegisterXactCallback(pk_ib_xact_callback, NULL);
		pk_ib_callback_registered = true;
	}
	pk_ib_wake_at_commit = true;
}

/* The relation now named perfkit.index_build_requests, or InvalidOid */
static Oid
pk_ib_requests_lookup(void)
{
	Oid			nsp = get_namespace_oid(PK_IB_SCHEMA, true);

	return OidIsValid(nsp) ? get_relname_relid(PK_IB_TABLE, nsp) : InvalidOid;
}

/*
 * Is relid the extension's own requests table: an ordinary table that is a
 * member of the perfkit extension and owned by a superuser?  A lookalike
 * created by some role must never be read by the builder.
 */
static bool
pk_ib_genuine_requests(Oid relid)
{
	Oid			extoid = get_extension_oid("perfkit", true);
	HeapTuple	tup;
	bool		genuine;

	if (!OidIsValid(relid) || !OidIsValid(extoid) ||
		getExtensionOfObject(RelationRelationId, relid) != extoid)
		return false;
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tup))
		return false;
	genuine = ((Form_pg_class) GETSTRUCT(tup))->relkind == RELKIND_RELATION &&
		superuser_arg(((Form_pg_class) GETSTRUCT(tup))->relowner);
	ReleaseSysCache(tup);
	return genuine;
}

/*
 * OID of perfkit.index_build_requests, locked in lockmode (NoLock: just
 * looked up); InvalidOid when the extension is not installed here, also
 * when a table of that name exists but is not the extension's own.  The
 * table is checked before it is locked and again once it is.
 */
Oid
pk_ib_requests_relid(LOCKMODE lockmode)
{
	Oid			relid = pk_ib_requests_lookup();

	if (!pk_ib_genuine_requests(relid))
		return InvalidOid;
	if (lockmode == NoLock)
		return relid;
	LockRelationOid(relid, lockmode);
	/* the lock made us see concurrent DDL: still the same, genuine table? */
	if (pk_ib_requests_lookup() != relid || !pk_ib_genuine_requests(relid))
	{
		UnlockRelationOid(relid, lockmode);
		return InvalidOid;
	}
	return relid;
}

/* True when a relation named perfkit.index_build_requests exists but is not perfkit's */
bool
pk_ib_requests_lookalike(void)
{
	Oid			relid = pk_ib_requests_lookup();

	return OidIsValid(relid) && !pk_ib_genuine_requests(relid);
}

/* The requests table, or an error when the extension is missing here */
static Oid
pk_ib_requests_table(void)
{
	Oid			reqrel = pk_ib_requests_relid(NoLock);

	if (!OidIsValid(reqrel))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("perfkit is not installed in this database"),
				 errhint("Run CREATE EXTENSION perfkit.")));
	return reqrel;
}

/* Run what follows as the owner of the requests table */
static void
pk_ib_become_owner(Oid reqrel, PkIbSavedUser *saved)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(reqrel));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", reqrel);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);

	GetUserIdAndSecContext(&saved->userid, &saved->sec_context);
	SetUserIdAndSecContext(owner, saved->sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
}

/* Back to the caller's identity (errors restore it through transaction abort) */
static void
pk_ib_restore_user(const PkIbSavedUser *saved)
{
	SetUserIdAndSecContext(saved->userid, saved->sec_context);
}

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
static void
pk_ib_not_null(FunctionCallInfo fcinfo, int argno, const char *what, const char *hint)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", what),
				 hint ? errhint("%s", hint) : 0));
}

/* Elements of a text[] argument; NULL elements are an error */
static List *
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
static void
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
static void
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
static void
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
static void
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

/* Attribute number, type and collation of a column; errors for unknown and system columns */
static AttrNumber
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

/* True when an expression uses non-immutable functions (as DefineIndex decides) */
static bool
pk_ib_is_mutable(Expr *expr)
{
	return contain_mutable_functions((Node *) expression_planner(expr));
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

/* Owner of a relation */
static Oid
pk_ib_rel_owner(Oid relid)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
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
	IndexAmRoutine *am;
	IndexStmt  *t;
	ListCell   *lc;
	int			attn = 0;
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;

	memset(shape, 0, sizeof(PkIbShape));
	shape->amoid = get_index_am_oid(amname, true);
	if (!OidIsValid(shape->amoid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("access method \"%s\" does not exist", amname),
				 errhint("Index access methods are listed in pg_am with amtype 'i', for example btree, hash, gist, gin and brin.")));
	am = GetIndexAmRoutineByAmId(shape->amoid, false);
	if (nkey + ninc > INDEX_MAX_KEYS)
		ereport(ERROR,
				(errcode(ERRCODE_TOO_MANY_COLUMNS),
				 errmsg("cannot use more than %d columns in an index", INDEX_MAX_KEYS)));
	if (stmt->unique && !am->amcanunique)
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

	/* expressions and predicate: parse analysis against the table alone */
	t = transformIndexStmt(relid, stmt, sql);

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(pk_ib_rel_owner(relid),
						   save_sec_context | SECURITY_RESTRICTED_OPERATION);
	save_nestlevel = NewGUCNestLevel();

	shape->unique = t->unique;
	shape->nulls_not_distinct = t->nulls_not_distinct;
	shape->nkeyatts = nkey;
	shape->natts = nkey + ninc;

	foreach(lc, t->indexParams)
	{
		IndexElem  *elem = lfirst_node(IndexElem, lc);
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
		shape->collations[attn] = attcoll;
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
		attn++;
	}

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

	AtEOXact_GUC(false, save_nestlevel);
	SetUserIdAndSecContext(save_userid, save_sec_context);
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
static int64
pk_ib_insert_request(const char *kind, Oid relid, Oid indexrelid, const char *name,
					 const char *definition)
{
	Oid			reqrel = pk_ib_requests_table();
	Oid			argtypes[7] = {TEXTOID, OIDOID, OIDOID, TEXTOID, TEXTOID, TEXTOID, OIDOID};
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	const char *search_path = GetConfigOption("search_path", false, false);
	PkIbSavedUser saved;
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
	pk_ib_restore_user(&saved);

	pk_ib_arm_wakeup();
	return id;
}

/*
 * Refuse to request a build with standard_conforming_strings off: the
 * builder parses the text again with it on, where a backslash in a string
 * literal means something else.
 */
static void
pk_ib_require_standard_strings(void)
{
	if (!standard_conforming_strings)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("index builds cannot be requested with standard_conforming_strings off"),
				 errdetail("The background builder parses the definition with standard_conforming_strings on, where backslashes in string literals are ordinary characters."),
				 errhint("SET standard_conforming_strings = on (the default) before requesting the build.")));
}

/* Validate a CREATE INDEX definition and record the request; returns its id */
static int64
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
static void
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

/* perfkit.create_index_concurrently(definition text): request a build, return its id */
Datum
perfkit_create_index_concurrently(PG_FUNCTION_ARGS)
{
	pk_ib_require_loaded();
	pk_ib_not_null(fcinfo, 0, "index definition",
				   "Pass a statement such as 'CREATE INDEX orders_customer_idx ON orders (customer_id)'.");
	pk_ib_require_standard_strings();
	PG_RETURN_INT64(pk_ib_request_create(text_to_cstring(PG_GETARG_TEXT_PP(0))));
}

/*
 * perfkit.create_index_concurrently(tbl, columns, name, method, predicate,
 * include, is_unique): build the statement from quoted identifiers, then
 * validate and request it like a written definition.
 */
Datum
perfkit_create_index_concurrently_columns(PG_FUNCTION_ARGS)
{
	Oid			relid;
	List	   *columns;
	List	   *include = NIL;
	char	   *name = NULL;
	char	   *method;
	char	   *predicate = NULL;
	StringInfoData def;
	ListCell   *lc;
	Oid			atttype;
	Oid			attcoll;

	pk_ib_require_loaded();
	pk_ib_not_null(fcinfo, 0, "table", NULL);
	pk_ib_not_null(fcinfo, 1, "columns", "Pass the column names as an array, e.g. ARRAY['customer_id'].");
	pk_ib_not_null(fcinfo, 3, "method", "Leave it out for a btree index.");
	pk_ib_not_null(fcinfo, 6, "is_unique", NULL);
	pk_ib_require_standard_strings();

	relid = PG_GETARG_OID(0);
	if (SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relid)))
		pk_ib_owner_before_lock(relid);
	LockRelationOid(relid, AccessShareLock);
	if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relid)))
	{
		UnlockRelationOid(relid, AccessShareLock);
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	}
	pk_ib_check_table(relid, true);

	columns = pk_ib_text_array(PG_GETARG_ARRAYTYPE_P(1), "columns");
	if (columns == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("columns must name at least one column"),
				 errhint("For an index on expressions, pass a CREATE INDEX statement instead.")));
	foreach(lc, columns)
	{
		pk_ib_check_name_length("column name", lfirst(lc));
		(void) pk_ib_column(relid, lfirst(lc), &atttype, &attcoll);
	}
	if (!PG_ARGISNULL(5))
	{
		include = pk_ib_text_array(PG_GETARG_ARRAYTYPE_P(5), "include");
		foreach(lc, include)
		{
			pk_ib_check_name_length("column name", lfirst(lc));
			(void) pk_ib_column(relid, lfirst(lc), &atttype, &attcoll);
		}
	}
	if (!PG_ARGISNULL(2))
	{
		name = text_to_cstring(PG_GETARG_TEXT_PP(2));
		pk_ib_check_index_name(name);
	}
	method = text_to_cstring(PG_GETARG_TEXT_PP(3));
	pk_ib_check_name_length("access method name", method);
	if (!OidIsValid(get_index_am_oid(method, true)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("access method \"%s\" does not exist", method),
				 errhint("Index access methods are listed in pg_am with amtype 'i', for example btree, hash, gist, gin and brin.")));
	if (!PG_ARGISNULL(4))
	{
		predicate = text_to_cstring(PG_GETARG_TEXT_PP(4));
		pk_ib_check_predicate(predicate);
	}

	initStringInfo(&def);
	appendStringInfo(&def, "CREATE %sINDEX ", PG_GETARG_BOOL(6) ? "UNIQUE " : "");
	if (name != NULL)
		appendStringInfo(&def, "%s ", quote_identifier(name));
	appendStringInfo(&def, "ON %s USING %s (",
					 quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
												get_rel_name(relid)),
					 quote_identifier(method));
	foreach(lc, columns)
		appendStringInfo(&def, "%s%s", foreach_current_index(lc) > 0 ? ", " : "",
						 quote_identifier(lfirst(lc)));
	appendStringInfoChar(&def, ')');
	if (include != NIL)
	{
		appendStringInfoString(&def, " INCLUDE (");
		foreach(lc, include)
			appendStringInfo(&def, "%s%s", foreach_current_index(lc) > 0 ? ", " : "",
							 quote_identifier(lfirst(lc)));
		appendStringInfoChar(&def, ')');
	}
	/* a trailing "--" comment in the predicate must not swallow the parenthesis */
	if (predicate != NULL)
		appendStringInfo(&def, " WHERE (%s%s)", predicate,
						 strstr(predicate, "--") ? "\n" : "");

	PG_RETURN_INT64(pk_ib_request_create(def.data));
}

/* perfkit.drop_index_concurrently(idx regclass): request DROP INDEX CONCURRENTLY */
Datum
perfkit_drop_index_concurrently(PG_FUNCTION_ARGS)
{
	Oid			indexoid;
	Oid			relid;
	Oid			constraint;
	char		relkind;
	char	   *name;
	char	   *nspname;

	pk_ib_require_loaded();
	pk_ib_not_null(fcinfo, 0, "index", NULL);
	indexoid = PG_GETARG_OID(0);

	relkind = get_rel_relkind(indexoid);
	if (relkind == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("index with OID %u does not exist", indexoid)));
	name = get_rel_name(indexoid);
	if (relkind == RELKIND_PARTITIONED_INDEX)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot drop partitioned index \"%s\" concurrently", name)));
	if (relkind != RELKIND_INDEX)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not an index", name),
				 errhint("perfkit.drop_index_concurrently() drops indexes only.")));

	relid = IndexGetRelation(indexoid, false);
	pk_ib_owner_before_lock(relid);
	LockRelationOid(relid, AccessShareLock);
	pk_ib_check_table(relid, false);
	constraint = get_index_constraint(indexoid);
	if (OidIsValid(constraint))
		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("cannot drop index \"%s\" because constraint \"%s\" requires it",
						name, get_constraint_name(constraint)),
				 errhint("Drop the constraint with ALTER TABLE ... DROP CONSTRAINT instead.")));

	nspname = get_namespace_name(get_rel_namespace(indexoid));
	PG_RETURN_INT64(pk_ib_insert_request("drop", relid, indexoid, name,
										 psprintf("DROP INDEX CONCURRENTLY %s",
												  quote_qualified_identifier(nspname, name))));
}

/*
 * Ask the builder to interrupt a running build (it drops what it left).
 * The signal is decided while the build's statement runs and counted in
 * cancel_signalling until kill() returns: the builder waits for that count
 * before its next statement, so the SIGINT cannot hit another build.
 */
static void
pk_ib_cancel_running(int64 id)
{
	PkIbDatabase *slot;
	int			pid = 0;

	SpinLockAcquire(&pk_ib->mutex);
	slot = pk_ib_slot_locked(MyDatabaseId, true);
	if (slot != NULL)
	{
		slot->cancel_id = id;
		if (slot->worker_pid != 0 && slot->running_id == id)
		{
			pid = slot->worker_pid;
			slot->cancel_signalling++;
		}
	}
	SpinLockRelease(&pk_ib->mutex);

	/* the builder accepts SIGINT only while it runs a build's statement */
	if (pid != 0)
	{
		(void) kill(pid, SIGINT);
		/* the slot stays this database's while the count is nonzero */
		SpinLockAcquire(&pk_ib->mutex);
		slot->cancel_signalling--;
		SpinLockRelease(&pk_ib->mutex);
	}
	pk_ib_wake_database(MyDatabaseId);
}

/*
 * perfkit.cancel_index_build(id): cancel a pending build (in the caller's
 * transaction) or interrupt a running one; false when it already ended.
 */
Datum
perfkit_cancel_index_build(PG_FUNCTION_ARGS)
{
	MemoryContext cxt = CurrentMemoryContext;
	int64		id;
	Oid			reqrel;
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1];
	PkIbSavedUser saved;
	char	   *status = NULL;
	Oid			requested_by = InvalidOid;
	bool		found = false;
	bool		cancelled = false;
	bool		isnull;

	pk_ib_require_loaded();
	pk_ib_not_null(fcinfo, 0, "index build id", "Pass an id from perfkit.index_builds.");
	id = PG_GETARG_INT64(0);
	values[0] = Int64GetDatum(id);
	reqrel = pk_ib_requests_table();

	pk_ib_become_owner(reqrel, &saved);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args("SELECT status, requested_by FROM perfkit.index_build_requests"
							  " WHERE id OPERATOR(pg_catalog.=) $1",
							  1, argtypes, values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read index build %lld", (long long) id);
	if (SPI_processed == 1)
	{
		found = true;
		status = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		requested_by = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
													  SPI_tuptable->tupdesc, 2, &isnull));
	}
	if (found && has_privs_of_role(saved.userid, requested_by) && strcmp(status, "pending") == 0)
	{
		if (SPI_execute_with_args("UPDATE perfkit.index_build_requests"
								  " SET status = 'cancelled', finished_at = pg_catalog.now(), retry_at = NULL"
								  " WHERE id OPERATOR(pg_catalog.=) $1"
								  " AND status OPERATOR(pg_catalog.=) 'pending'",
								  1, argtypes, values, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not cancel index build %lld", (long long) id);
		cancelled = SPI_processed == 1;
		if (!cancelled)
		{
			/* the builder claimed it meanwhile */
			if (SPI_execute_with_args("SELECT status FROM perfkit.index_build_requests"
									  " WHERE id OPERATOR(pg_catalog.=) $1",
									  1, argtypes, values, NULL, false, 1) == SPI_OK_SELECT &&
				SPI_processed == 1)
				status = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		}
	}
	if (status != NULL)
		status = MemoryContextStrdup(cxt, status);
	SPI_finish();
	pk_ib_restore_user(&saved);

	if (!found)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("index build %lld does not exist", (long long) id),
				 errhint("The builds of this database are listed in perfkit.index_builds.")));
	if (!has_privs_of_role(GetUserId(), requested_by))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to cancel index build %lld", (long long) id),
				 errdetail("Only the role that requested a build, its members and superusers can cancel it.")));
	if (!cancelled && strcmp(status, "running") == 0)
	{
		pk_ib_cancel_running(id);
		cancelled = true;
	}
	PG_RETURN_BOOL(cancelled);
}

/*
 * Number of this database's pending and running builds, read as the
 * requests table's owner; -1 when the extension is gone.
 */
static int64
pk_ib_outstanding(void)
{
	Oid			reqrel = pk_ib_requests_relid(NoLock);
	PkIbSavedUser saved;
	bool		isnull;
	int64		n;

	if (!OidIsValid(reqrel))
		return -1;
	pk_ib_become_owner(reqrel, &saved);
	if (SPI_execute("SELECT pg_catalog.count(*) FROM perfkit.index_build_requests"
					" WHERE status OPERATOR(pg_catalog.=) 'pending'"
					" OR status OPERATOR(pg_catalog.=) 'running'",
					false, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not count the pending index builds");
	n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	pk_ib_restore_user(&saved);
	return n;
}

/*
 * CALL perfkit.wait_for_index_builds(timeout): wait until this database has
 * no pending or running build, or the timeout passes; returns finished.
 *
 * A build waits for every transaction whose snapshot is older than its own,
 * so the waiter must hold none while it sleeps: this procedure commits
 * after each look at the table (SPI_commit) and sleeps on its latch between
 * looks, outside any snapshot.  That is only possible in a non-atomic CALL,
 * i.e. not inside a transaction block or a function: there it fails at
 * once instead of waiting for a build that waits for it.
 */
Datum
perfkit_wait_for_index_builds(PG_FUNCTION_ARGS)
{
	CallContext *callctx = (fcinfo->context && IsA(fcinfo->context, CallContext)) ?
		(CallContext *) fcinfo->context : NULL;
	Interval   *timeout;
	double		timeout_total_ms;
	int64		timeout_ms;
	TimestampTz deadline;
	bool		finished = false;
	TupleDesc	tupdesc;
	Datum		values[1];
	bool		nulls[1] = {false};

	pk_ib_require_loaded();
	if (callctx == NULL || callctx->atomic)
	{
		if (IsTransactionBlock())
			ereport(ERROR,
					(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
					 errmsg("perfkit.wait_for_index_builds() cannot run inside a transaction block"),
					 errdetail("Builds start when the requesting transaction commits, and each build waits for all older transactions, this one included."),
					 errhint("COMMIT first, then CALL perfkit.wait_for_index_builds() on its own.")));
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("perfkit.wait_for_index_builds() must be run with CALL outside any function"),
				 errdetail("A function holds its statement's snapshot, which the builds would wait for."),
				 errhint("Run CALL perfkit.wait_for_index_builds() as a statement of its own.")));
	}
	pk_ib_not_null(fcinfo, 0, "timeout", "Pass an interval such as '10 minutes'.");
	timeout = PG_GETARG_INTERVAL_P(0);
	/* in floating point: months and days of a huge interval overflow int64 microseconds */
	timeout_total_ms = (double) timeout->time / 1000.0 +
		((double) timeout->day + (double) timeout->month * DAYS_PER_MONTH) *
		(double) (USECS_PER_DAY / 1000);
	if (timeout_total_ms < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout must not be negative")));
	/* beyond about 100 years, wait without a deadline */
	if (timeout_total_ms > PK_IB_WAIT_MAX_MS)
		deadline = DT_NOEND;
	else
	{
		timeout_ms = (int64) timeout_total_ms;
		deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	}

	if (SPI_connect_ext(SPI_OPT_NONATOMIC) != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	for (bool first = true;; first = false)
	{
		int64		outstanding = pk_ib_outstanding();
		TimestampTz now;
		long		sleep_ms;

		/* end the transaction: no snapshot, no lock while we sleep */
		SPI_commit();
		if (outstanding <= 0)
		{
			finished = true;
			break;
		}
		/* a nudge covers requests nobody woke the builder for (e.g. inserted by hand) */
		if (first)
			pk_ib_wake_database(MyDatabaseId);
		now = GetCurrentTimestamp();
		if (now >= deadline)
			break;
		sleep_ms = Min(PK_IB_WAIT_POLL_MS, (deadline - now + 999) / 1000);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 sleep_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	SPI_finish();

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);
	values[0] = BoolGetDatum(finished);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
