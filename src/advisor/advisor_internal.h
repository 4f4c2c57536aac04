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
extern double pk_advisor_space_cost;

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
								   PkHypoIndex **hypos, int n);
extern void pk_whatif_used(PlannedStmt *pstmt, int n, bool *used);

#define PK_ADV_MIN_PAGES		10		/* smaller tables get no index */
#define PK_ADV_MAX_KEPT			0.5		/* filters keeping this share of the rows or more lead nothing */
#define PK_ADV_PREFIX_SHARE		0.9		/* a prefix with this share of the benefit wins */
#define PK_ADV_REC_COLS			18		/* columns of _index_recommendations() */
#define PK_ADV_OLD_REC_COLS		12		/* before 0.3.0 */
#define PK_ADV_MIN_STEP_SHARE	0.001	/* a step must save this share of the workload's cost */
#define PK_ADV_ENTRY_COST		0.5		/* planner cost of writing one index entry (btree) */
#define PK_ADV_PAIR_MARGIN		1.05	/* a pair must beat its better half by this factor */

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
	double		total_time;		/* measured execution time of those calls, ms; < 0 if unknown */
	PkAdvQual  *quals;
	int			nquals;
	/* representative execution (collected statements) */
	const PkAdvEntry *entry;
	/* the analyzed statement (recommend_indexes) */
	Query	   *query;
	const char *text;
	double		base_cost;		/* plan cost with the existing indexes only; < 0 if not planned */
	double		cur_cost;		/* plan cost under the configuration chosen so far */
	/* the search's steps that may help it (advisor_choose.c) */
	int			nopts;
	int		   *opts;			/* option numbers */
	double	   *ocost;			/* per option: cost under the configuration plus the option */
	uint8	   *oused;			/* per option: bit i set when member i is in the plan */
} PkAdvStmt;

/* A candidate index */
typedef struct PkAdvCand
{
	PkHypoIndex hypo;
	bool		dropped;		/* covered by an existing index, or a prefix does as well */
	double		benefit;		/* alone: sum over helped statements of calls * (base - cost) */
	double		maintenance;	/* planner cost of keeping it up to date under the observed writes */
	double		space;			/* price of its estimated size (perfkit.advisor_space_cost) */
	double		est_bytes;		/* estimated size */
	int			single;			/* its own option (advisor_choose.c), -1 if none */
	/* once chosen */
	int			step;			/* greedy step that chose it, from 1; 0 if not chosen */
	double		saving;			/* its share of its step's net saving */
	double		saving_ms;		/* its share of the measured time its step saved, ms */
	List	   *served;			/* statement numbers whose cost its step lowered */
	double		before;			/* sum of calls * base cost over them */
	double		after;			/* sum of calls * cost under the whole configuration */
	double		improvement;	/* percent */
} PkAdvCand;

/* One planning of a statement: the configuration plus up to two more candidates */
typedef struct PkAdvPlanReq
{
	PkHypoIndex *extra[2];
	int			nextra;
	double		cost;			/* out: plan cost */
	uint8		used;			/* out: bit i set when extra[i] is in the plan */
} PkAdvPlanReq;

/* What one computation works on besides the statements */
typedef struct PkAdvWorkload
{
	bool		weigh_writes;	/* charge maintenance for the observed writes */
	int			max_indexes;	/* budget; < 0 for none */
	double		min_improvement;	/* percent, per index (README) */
	List	   *writes;			/* PkAdvWrite *: rows written per table (advisor.c) */
	double		hours;			/* observed span of the workload, hours */
	double		ms_per_cost;	/* measured ms per planner cost unit; < 0 if unknown */
	double		total_cost;		/* out: sum of calls * base cost of the planned statements */
} PkAdvWorkload;

/* Rows written to one table by the observed statements, weighted (README) */
typedef struct PkAdvWrite
{
	Oid			relid;
	double		entries;		/* index entries a new index on it would have had to write */
} PkAdvWrite;

extern void pk_adv_set_quals(PkAdvStmt *s, const PkQual *quals, int count);
extern int pk_adv_eq_frequency(PkAdvStmt *stmts, int nstmts, Oid relid, AttrNumber attnum);
extern bool pk_adv_already_indexed(const PkHypoIndex *h);
extern void pk_adv_candidates_for(List **cands, PkAdvStmt *s, Oid relid);
extern bool pk_adv_may_help(const PkAdvStmt *s, const PkHypoIndex *h);
extern bool pk_adv_may_use(const PkAdvStmt *s, const PkHypoIndex *h);
extern PkAdvCand *pk_adv_add_candidate(List **cands, const PkHypoIndex *h);
extern Query *pk_adv_analyze(const char *sql, Oid *paramtypes, int nparams);
extern bool pk_adv_plan_statement(PkAdvStmt *s, PkHypoIndex **conf, int nconf,
								  PkAdvPlanReq *reqs, int nreqs, double *conf_cost,
								  MemoryContext scratch);
extern List *pk_adv_compute(PkAdvStmt *stmts, int nstmts, PkAdvWorkload *w);
extern double pk_adv_table_tuples(Oid relid);
extern void pk_adv_forget_opclasses(void);

#endif							/* PERFKIT_ADVISOR_INTERNAL_H */
