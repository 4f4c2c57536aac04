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

#include "advisor/advisor.h"

#define PK_ADV_MIN_PAGES		10		/* smaller tables get no index */
#define PK_ADV_MAX_KEPT			0.5		/* filters keeping more than this share lead nothing */
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
