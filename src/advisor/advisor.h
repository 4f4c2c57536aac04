/*-------------------------------------------------------------------------
 *
 * advisor.h
 *	  The index advisor: predicate collection (quals.c), hypothetical
 *	  indexes and what-if planning (whatif.c), candidates and SQL functions
 *	  (advisor.c).
 *
 * Data flow: ExecutorEnd of a sampled statement walks its plan state and
 * keeps the predicates its scans filtered on, its join clauses and the
 * sort keys above its scans, with one representative text (constants and
 * bind parameters included) per fingerprint, in a bounded shared table.
 * perfkit.index_recommendations reads that table, derives candidate
 * indexes, and plans every affected statement again with each candidate
 * injected as a hypothetical index; nothing is ever executed.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PERFKIT_ADVISOR_H
#define PERFKIT_ADVISOR_H

#include "core/core.h"

#include "executor/execdesc.h"
#include "nodes/plannodes.h"

#define PK_ADV_QUALS_PER_STMT	16		/* predicates kept per statement */
#define PK_ADV_TEXT_SIZE		4096	/* text + search_path + parameters */
#define PK_ADV_MAX_PARAMS		32		/* bind parameters kept per statement */
#define PK_ADV_MAX_COLUMNS		4		/* key columns of a candidate index */

/* What a collected predicate is; classified later (advisor.c) */
typedef enum PkQualKind
{
	PK_QUAL_FILTER,				/* column <op> constant, evaluated as a filter */
	PK_QUAL_INDEX,				/* column <op> constant, already an index condition */
	PK_QUAL_SORT,				/* sort key above a scan of the relation */
	PK_QUAL_JOIN				/* column of a join clause */
} PkQualKind;

/* One predicate, sort key or join column */
typedef struct PkQual
{
	Oid			relid;			/* table */
	Oid			opno;			/* operator (column on the left), sort operator for sorts */
	int16		attnum;			/* column */
	uint8		kind;			/* PkQualKind */
	uint8		position;		/* sort key position; 0 otherwise */
	bool		nulls_first;	/* sort keys: NULLS FIRST */
	bool		is_array;		/* "column op ANY (array)" */
	float4		kept;			/* filters: share of rows the filter kept, -1 if unknown */
} PkQual;

/* Identity of an advisor entry (hashed as bytes: zero-fill before use) */
typedef struct PkAdvKey
{
	Oid			dbid;
	Oid			userid;
	uint64		queryid;
} PkAdvKey;

/* What the advisor keeps of one statement (shared memory) */
typedef struct PkAdvEntry
{
	PkAdvKey	key;			/* hash key, must be first */
	slock_t		mutex;			/* protects the fields below key */
	int64		samples;		/* sampled executions */
	int			nquals;
	PkQual		quals[PK_ADV_QUALS_PER_STMT];
	/* representative execution: set at creation, never changed */
	int			nparams;		/* bind parameters, -1 if not replayable */
	Oid			paramtypes[PK_ADV_MAX_PARAMS];
	int			text_len;		/* bytes of statement text in text[] */
	int			path_len;		/* bytes of search_path after it */
	char		text[PK_ADV_TEXT_SIZE]; /* "text\0path\0" + per param 'n' or 'v'value"\0" */
} PkAdvEntry;

/* Settings */
extern double pk_advisor_sample_rate;
extern int	pk_advisor_max_quals;
extern double pk_advisor_min_improvement;

/* quals.c: collection and the shared table */
extern void pk_advisor_init(void);
extern Size pk_advisor_shmem_size(void);
extern void pk_advisor_shmem_init(void);
extern void pk_advisor_executor_start(QueryDesc *queryDesc, int eflags, int level);
extern void pk_advisor_executor_end(QueryDesc *queryDesc, int level);
extern int	pk_quals_from_planstate(QueryDesc *queryDesc, PkQual *quals, int max);
extern PkAdvEntry *pk_advisor_snapshot(Oid dbid, int *count);
extern void pk_advisor_reset(void);
extern bool pk_advisor_loaded(void);

/* whatif.c: hypothetical indexes */
typedef struct PkHypoIndex
{
	Oid			relid;
	Oid			amoid;
	int			ncolumns;
	AttrNumber	attnums[PK_ADV_MAX_COLUMNS];
	Oid			opclasses[PK_ADV_MAX_COLUMNS];
	bool		desc[PK_ADV_MAX_COLUMNS];
	bool		nulls_first[PK_ADV_MAX_COLUMNS];
} PkHypoIndex;

extern void pk_whatif_install_hook(void);
extern double pk_whatif_estimate_pages(const PkHypoIndex *hypo, double tuples, int *height);
extern PlannedStmt *pk_whatif_plan(Query *query, const char *text, ParamListInfo params,
								   PkHypoIndex *hypo);
extern bool pk_whatif_uses_candidate(PlannedStmt *pstmt);

#endif							/* PERFKIT_ADVISOR_H */
