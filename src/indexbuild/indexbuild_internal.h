/*-------------------------------------------------------------------------
 *
 * indexbuild_internal.h
 *	  Shared state, settings and functions of the files of src/indexbuild
 *	  only; the rest of perfkit uses indexbuild.h.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PERFKIT_INDEXBUILD_INTERNAL_H
#define PERFKIT_INDEXBUILD_INTERNAL_H

#include "indexbuild/indexbuild.h"

#include "access/attnum.h"
#include "nodes/parsenodes.h"
#include "nodes/pg_list.h"
#include "storage/latch.h"
#include "storage/lockdefs.h"
#include "storage/spin.h"
#include "utils/array.h"
#include "utils/timestamp.h"

/* Databases that can have a builder or pending work at the same time */
#define PK_IB_MAX_DATABASES		64

/* Retry after a busy row or no worker slot, ms */
#define PK_IB_RECHECK_MS		1000

/* Schema and table holding the requests (one table per database) */
#define PK_IB_SCHEMA			"perfkit"
#define PK_IB_TABLE				"index_build_requests"

/* Per-database wake-up and worker state, in shared memory */
typedef struct PkIbDatabase
{
	Oid			dboid;			/* database; InvalidOid marks a free slot */
	bool		wanted;			/* requests committed since a worker last looked */
	bool		launch_pending; /* launcher registered a worker not yet attached */
	int			worker_pid;		/* attached builder, 0 = none */
	Latch	   *worker_latch;	/* its latch, valid while worker_pid != 0 */
	TimestampTz retry_at;		/* earliest postponed retry, 0 = none */
	int64		running_id;		/* build whose statement is executing, 0 = none */
	int64		cancel_id;		/* build a user asked to cancel, 0 = none */
	int			cancel_signalling;	/* cancellers between deciding and kill() */
} PkIbDatabase;

/* Shared state of the index-build subsystem; everything under mutex */
typedef struct PkIbShared
{
	slock_t		mutex;			/* protects every field here and in dbs[] */
	int			launcher_pid;	/* running launcher, 0 = none */
	Latch	   *launcher_latch; /* its latch, NULL while no launcher runs */
	bool		rescan;			/* a wake-up found no free slot: check all databases */
	PkIbDatabase dbs[PK_IB_MAX_DATABASES];
} PkIbShared;

/*
 * What an index looks like once resolved: computed from a request (parse
 * analysis under the requester's search_path) or read from the catalogs,
 * so that "the same definition" compares meaning, not spelling.
 */
typedef struct PkIbShape
{
	Oid			amoid;			/* index access method */
	bool		unique;			/* UNIQUE */
	bool		nulls_not_distinct; /* NULLS NOT DISTINCT */
	int			nkeyatts;		/* key columns */
	int			natts;			/* key plus INCLUDE columns */
	AttrNumber	attnums[INDEX_MAX_KEYS];	/* table column, 0 = expression */
	Oid			opclasses[INDEX_MAX_KEYS];	/* per key column */
	Oid			collations[INDEX_MAX_KEYS]; /* per key column */
	int16		options[INDEX_MAX_KEYS];	/* INDOPTION_* per key column */
	List	   *exprs;			/* expressions of the expression columns */
	Node	   *predicate;		/* WHERE clause as pg_index.indpred stores it */
	List	   *reloptions;		/* WITH (...) as "name=value" strings */
} PkIbShape;

/* What carries an index's name in its table's schema */
typedef enum PkIbNamed
{
	PK_IB_NAME_FREE,			/* nothing */
	PK_IB_NAME_OTHER,			/* another relation, or an index of another table */
	PK_IB_NAME_INVALID,			/* an INVALID index of the table */
	PK_IB_NAME_VALID			/* a valid index of the table */
} PkIbNamed;

/* The shared state, NULL when perfkit was not preloaded */
extern PkIbShared *pk_ib;

/* Settings */
extern int	pk_ib_lock_timeout;
extern int	pk_ib_statement_timeout;
extern int	pk_ib_max_attempts;
extern int	pk_ib_retry_delay;
extern int	pk_ib_max_workers;

/* indexbuild.c: shared state, wake-up at commit, the trusted requests table */
extern void pk_ib_require_loaded(void);
extern PkIbDatabase *pk_ib_slot_locked(Oid dboid, bool create);
extern void pk_ib_wake_database(Oid dboid);
extern void pk_ib_arm_wakeup(void);
extern Oid	pk_ib_requests_relid(LOCKMODE lockmode);
extern bool pk_ib_requests_lookalike(void);
extern Oid	pk_ib_requests_table(void);
extern void pk_ib_become_owner(Oid reqrel, PkSavedIdentity *saved);
extern Oid	pk_ib_rel_owner(Oid relid);

/* indexbuild_request.c: validation and the request row */
extern List *pk_ib_parse(const char *sql, int offset, const char *shown);
extern void pk_ib_not_null(FunctionCallInfo fcinfo, int argno, const char *what, const char *hint);
extern List *pk_ib_text_array(ArrayType *arr, const char *what);
extern void pk_ib_check_name_length(const char *what, const char *name);
extern void pk_ib_check_index_name(const char *name);
extern void pk_ib_owner_before_lock(Oid relid);
extern void pk_ib_check_table(Oid relid, bool creating);
extern PkIbNamed pk_ib_lookup_name(Oid relid, const char *name, Oid *indexoid);
extern int64 pk_ib_insert_request(const char *kind, Oid relid, Oid indexrelid,
								  const char *name, const char *definition);
extern void pk_ib_require_standard_strings(void);
extern int64 pk_ib_request_create(const char *definition);
extern void pk_ib_check_predicate(const char *predicate);

/* indexbuild_shape.c: a CREATE INDEX statement's shape (adapted from DefineIndex) */
extern AttrNumber pk_ib_column(Oid relid, const char *colname, Oid *atttype, Oid *attcoll);
extern void pk_ib_index_shape(Oid relid, IndexStmt *stmt, const char *sql,
							  PkIbShape *shape);
extern bool pk_ib_index_matches(Oid indexoid, const PkIbShape *want);

/* indexbuild_launcher.c and indexbuild_builder.c: the background workers */
extern void pk_indexbuild_register_workers(void);
extern PGDLLEXPORT void pk_indexbuild_launcher_main(Datum main_arg);
extern PGDLLEXPORT void pk_indexbuild_worker_main(Datum main_arg);

#endif							/* PERFKIT_INDEXBUILD_INTERNAL_H */
