/*-------------------------------------------------------------------------
 *
 * redis_writes.c
 *	  Write tracking for the Redis push: which tables a transaction wrote,
 *	  and, once it committed, the bump of their write generations and the
 *	  invalidation of the results that read them.
 *
 * While the push is on (here or in the worker), a backend lists the
 * permanent relations its transaction writes, in process memory:
 *	- the target relations of INSERT, UPDATE, DELETE, MERGE and of
 *	  data-modifying WITH, at ExecutorStart at any nesting level (so writes
 *	  by triggers, functions and foreign-key actions count);
 *	- COPY FROM, TRUNCATE (with inheritance children; CASCADE invalidates
 *	  everything), ALTER TABLE / RENAME / SET SCHEMA (with children),
 *	  CREATE OR REPLACE VIEW, REFRESH MATERIALIZED VIEW, GRANT/REVOKE on
 *	  tables, before the utility statement runs;
 *	- every dropped table, view or materialized view, also by a cascade,
 *	  through the object access hook.
 * The list holds PK_REDIS_XACT_TABLES relations; a transaction writing
 * more bumps every generation slot and makes the worker delete every key.
 *
 * The transaction callback records the top-level FullTransactionId at
 * PRE_COMMIT / PRE_PREPARE and, at COMMIT / PREPARE -- after the commit is
 * visible to new snapshots -- raises maxxid, bumps the generations, then
 * queues the invalidation (redis.c explains why in this order).  That
 * callback must not fail: it allocates nothing and reads no catalog (names
 * were resolved when the writes were noted).  An aborted transaction just
 * forgets its list; writes of a rolled-back subtransaction are kept, which
 * only invalidates more than needed.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/parallel.h"
#include "access/xact.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "catalog/namespace.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "redis/redis_internal.h"

#define PK_REDIS_XACT_TABLES	128 /* written tables listed per transaction */

/* A table written by the current transaction */
typedef struct PkWrittenTable
{
	Oid			relid;
	char		name[PK_REDIS_NAME_LEN];	/* "schema"."table", for PUBLISH */
} PkWrittenTable;

static PkWrittenTable pk_written[PK_REDIS_XACT_TABLES];
static int	pk_nwritten = 0;
static bool pk_written_overflow = false;	/* more than PK_REDIS_XACT_TABLES */
static FullTransactionId pk_commit_fxid;
static char pk_datname[NAMEDATALEN];
static object_access_hook_type prev_object_access_hook = NULL;


/* The current database's name, looked up once per backend */
const char *
pk_redis_datname(void)
{
	if (pk_datname[0] == '\0' && IsTransactionState())
	{
		char	   *name = get_database_name(MyDatabaseId);

		if (name != NULL)
			strlcpy(pk_datname, name, NAMEDATALEN);
	}
	return pk_datname;
}

/* Add a relation to the transaction's written tables */
static void
pk_note_write(Oid relid)
{
	PkWrittenTable *t;
	char	   *relname;
	char	   *nspname;

	for (int i = 0; i < pk_nwritten; i++)
		if (pk_written[i].relid == relid)
			return;
	/* temporary and unlogged relations are never read by a pushed result */
	if (get_rel_persistence(relid) != RELPERSISTENCE_PERMANENT)
		return;
	if (pk_nwritten >= PK_REDIS_XACT_TABLES)
	{
		pk_written_overflow = true;
		return;
	}
	(void) pk_redis_datname();
	t = &pk_written[pk_nwritten++];
	t->relid = relid;
	relname = get_rel_name(relid);
	nspname = relname ? get_namespace_name(get_rel_namespace(relid)) : NULL;
	if (relname != NULL && nspname != NULL)
		strlcpy(t->name, quote_qualified_identifier(nspname, relname), sizeof(t->name));
	else
		snprintf(t->name, sizeof(t->name), "%u", relid);
}

/* Note a write of a relation and, when it has children, of all of them */
static void
pk_note_write_tree(Oid relid)
{
	if (!OidIsValid(relid))
		return;
	pk_note_write(relid);
	if (has_subclass(relid))
	{
		ListCell   *lc;

		foreach(lc, find_all_inheritors(relid, NoLock, NULL))
			pk_note_write(lfirst_oid(lc));
	}
}

/* Note a write of the relation a RangeVar names, if it exists */
static void
pk_note_write_rv(RangeVar *rv, bool tree)
{
	Oid			relid;

	if (rv == NULL)
		return;
	relid = RangeVarGetRelid(rv, NoLock, true);
	if (tree)
		pk_note_write_tree(relid);
	else if (OidIsValid(relid))
		pk_note_write(relid);
}

/* True when the transaction wrote one of these relations */
bool
pk_redis_wrote_any(const Oid *relids, int n)
{
	if (pk_written_overflow)
		return true;
	for (int i = 0; i < n; i++)
		for (int j = 0; j < pk_nwritten; j++)
			if (pk_written[j].relid == relids[i])
				return true;
	return false;
}

/* ExecutorStart of a writing statement: note its target relations (and their children) */
void
pk_redis_note_dml(PlannedStmt *pstmt)
{
	ListCell   *lc;

	/* targets (and their children) are locked RowExclusive; relations only read, less */
	foreach(lc, pstmt->rtable)
	{
		RangeTblEntry *rte = lfirst(lc);

		if (rte->rtekind == RTE_RELATION && rte->rellockmode >= RowExclusiveLock)
			pk_note_write(rte->relid);
	}
}

/* ProcessUtility: note the tables a utility statement writes or redefines */
void
pk_redis_utility(PlannedStmt *pstmt)
{
	Node	   *node = pstmt->utilityStmt;
	ListCell   *lc;

	if (!pk_redis_tracking() || node == NULL)
		return;

	switch (nodeTag(node))
	{
		case T_CopyStmt:
			if (((CopyStmt *) node)->is_from)
				pk_note_write_rv(((CopyStmt *) node)->relation, false);
			break;
		case T_TruncateStmt:
			/* CASCADE empties tables we cannot list here: invalidate everything */
			if (((TruncateStmt *) node)->behavior == DROP_CASCADE)
				pk_written_overflow = true;
			foreach(lc, ((TruncateStmt *) node)->relations)
				pk_note_write_rv(lfirst(lc), true);
			break;
		case T_AlterTableStmt:
			pk_note_write_rv(((AlterTableStmt *) node)->relation, true);
			break;
		case T_RenameStmt:
			pk_note_write_rv(((RenameStmt *) node)->relation, true);
			break;
		case T_AlterObjectSchemaStmt:
			pk_note_write_rv(((AlterObjectSchemaStmt *) node)->relation, true);
			break;
		case T_ViewStmt:
			if (((ViewStmt *) node)->replace)
				pk_note_write_rv(((ViewStmt *) node)->view, false);
			break;
		case T_RefreshMatViewStmt:
			pk_note_write_rv(((RefreshMatViewStmt *) node)->relation, false);
			break;
		case T_GrantStmt:
			{
				GrantStmt  *g = (GrantStmt *) node;

				if (g->targtype == ACL_TARGET_OBJECT && g->objtype == OBJECT_TABLE)
					foreach(lc, g->objects)
						pk_note_write_rv(lfirst(lc), false);
				else if (g->targtype == ACL_TARGET_ALL_IN_SCHEMA)
					pk_written_overflow = true;
				break;
			}
		default:
			break;
	}
}

/* Object access hook: a dropped relation is a write (also when cascaded) */
static void
pk_redis_object_access(ObjectAccessType access, Oid classId, Oid objectId,
					   int subId, void *arg)
{
	if (prev_object_access_hook)
		prev_object_access_hook(access, classId, objectId, subId, arg);

	if (access == OAT_DROP && classId == RelationRelationId && subId == 0 &&
		pk_redis_tracking())
	{
		char		kind = get_rel_relkind(objectId);

		if (kind == RELKIND_RELATION || kind == RELKIND_PARTITIONED_TABLE ||
			kind == RELKIND_VIEW || kind == RELKIND_MATVIEW)
			pk_note_write(objectId);
	}
}

/* Forget the transaction's writes */
static void
pk_written_reset(void)
{
	pk_nwritten = 0;
	pk_written_overflow = false;
	pk_commit_fxid = InvalidFullTransactionId;
}

/* After commit (or PREPARE): bump the generations, then queue the invalidation */
static void
pk_redis_publish_writes(void)
{
	Oid			relids[PK_REDIS_XACT_TABLES];
	PkRedisTableRef refs[PK_REDIS_XACT_TABLES];
	const char *names[PK_REDIS_XACT_TABLES];

	if (pk_redis == NULL || (pk_nwritten == 0 && !pk_written_overflow))
		return;
	if (pk_written_overflow)
	{
		pk_redis_bump_all(pk_commit_fxid);
		pk_redis_request_flush();
	}
	for (int i = 0; i < pk_nwritten; i++)
	{
		relids[i] = pk_written[i].relid;
		names[i] = pk_written[i].name;
	}
	pk_redis_bump(relids, pk_nwritten, pk_commit_fxid, refs);
	if (pg_atomic_read_u32(&pk_redis->enabled) != 0 && pk_datname[0] != '\0')
		pk_redis_enqueue_invalidate(MyDatabaseId, pk_datname, refs, names, pk_nwritten);
}

/* Transaction callback: publish writes once committed, forget them on abort */
static void
pk_redis_xact_callback(XactEvent event, void *arg)
{
	/* the common case: the transaction wrote nothing perfkit tracks */
	if (pk_nwritten == 0 && !pk_written_overflow)
		return;
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			pk_commit_fxid = GetTopFullTransactionIdIfAny();
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PREPARE:
			/* never fails: no allocation, no catalog access */
			pk_redis_publish_writes();
			pk_written_reset();
			break;
		case XACT_EVENT_ABORT:
			pk_written_reset();
			break;
		default:
			break;
	}
}

/* Module load (postmaster): the transaction callback and the drop hook */
void
pk_redis_writes_init(void)
{
	RegisterXactCallback(pk_redis_xact_callback, NULL);
	prev_object_access_hook = object_access_hook;
	object_access_hook = pk_redis_object_access;
}
