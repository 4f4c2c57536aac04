/*-------------------------------------------------------------------------
 *
 * advisor_internal.h
 *	  Types and functions shared by the files of src/advisor only: the
 *	  classified predicates, the statements, candidates and trials of one
 *	  computation.  Other code uses advisor.h.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PERFKIT_ADVISOR_INTERNAL_H
#define PERFKIT_ADVISOR_INTERNAL_H

#include "funcapi.h"
#include "nodes/parsenodes.h"
#include "nodes/pg_list.h"
#include "storage/spin.h"

#include "advisor/advisor.h"

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

/* advisor_collect.c: the shared table */
extern int	pk_quals_from_planstate(QueryDesc *queryDesc, PkQual *quals, int max);
extern PkAdvEntry *pk_advisor_snapshot(Oid dbid, int *count);
extern void pk_advisor_reset(void);
extern bool pk_advisor_loaded(void);

/* advisor_whatif.c: hypothetical indexes */
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

#define PK_ADV_MIN_PAGES		10		/* smaller tables get no index */
#define PK_ADV_MAX_KEPT			0.5		/* filters keeping this share of the rows or more lead nothing */
#define PK_ADV_PREFIX_SHARE		0.9		/* a prefix with this share of the benefit wins */
#define PK_ADV_PREFIX_SLACK		1.1		/* a longer index this close to its prefix replaces it */
#define PK_ADV_REC_COLS			12

/* How a predicate can use an index */
typedef enum PkQualClass
{
	PK_CLASS_NONE,				/* not indexable (or dropped) */
	PK_CLASS_EQ,				/* btree equality */
	PK_CLASS_RANGE,				/* btree <, <=, >, >= */
	PK_CLASS_SORT,				/* btree sort key */
	PK_CLASS_JOIN,				/* equality join column */
	PK_CLASS_OTHER				/* operator of another method (amoid) */
} PkQualClass;

/* A classified predicate */
typedef struct PkAdvQual
{
	PkQual		q;
	PkQualClass cls;
	Oid			amoid;			/* method that supports it */
	Oid			opclass;		/* that method's default opclass for the column */
	bool		desc;			/* sort keys: descending */
	int			eq_freq;		/* equalities: statements comparing this column */
} PkAdvQual;

/* A statement under analysis */
typedef struct PkAdvStmt
{
	uint64		queryid;
	Oid			userid;
	double		calls;
	PkAdvQual  *quals;
	int			nquals;
	/* representative execution (collected statements) */
	const PkAdvEntry *entry;
	/* the analyzed statement (recommend_indexes) */
	Query	   *query;
	const char *text;
	double		base_cost;		/* plan cost without candidates; < 0 if not planned */
} PkAdvStmt;

typedef struct PkAdvCand PkAdvCand;

/* What planning one statement with one candidate gave */
typedef struct PkAdvTrial
{
	PkAdvCand  *cand;			/* the candidate */
	int			stmt;			/* index into the statement array */
	double		cost;
	bool		used;
} PkAdvTrial;

/* A candidate index */
struct PkAdvCand
{
	PkHypoIndex hypo;
	List	   *trials;			/* PkAdvTrial * */
	double		benefit;		/* sum over helped statements of calls * (base - cost) */
	double		before;			/* sum of calls * base over helped statements */
	double		after;			/* sum of calls * cost over helped statements */
	double		improvement;	/* percent */
	double		write_ratio;
	double		score;
	bool		dropped;
	PkAdvCand **owner;			/* per statement: the chosen index serving it best */
};

extern void pk_adv_set_quals(PkAdvStmt *s, const PkQual *quals, int count);
extern int pk_adv_eq_frequency(PkAdvStmt *stmts, int nstmts, Oid relid, AttrNumber attnum);
extern bool pk_adv_already_indexed(const PkHypoIndex *h);
extern void pk_adv_candidates_for(List **cands, PkAdvStmt *s, Oid relid);
extern bool pk_adv_may_help(const PkAdvStmt *s, const PkHypoIndex *h);
extern Query *pk_adv_analyze(const char *sql, Oid *paramtypes, int nparams);
extern void pk_adv_plan_statement(PkAdvStmt *stmts, int i, List *cands, bool force, MemoryContext scratch);
extern bool pk_adv_helps(const PkAdvCand *c, const PkAdvTrial *t, const PkAdvStmt *stmts, double bar, PkAdvCand *const *owner);
extern List *pk_adv_compute(PkAdvStmt *stmts, int nstmts, double min_improvement);
extern void pk_adv_forget_opclasses(void);

#endif							/* PERFKIT_ADVISOR_INTERNAL_H */
