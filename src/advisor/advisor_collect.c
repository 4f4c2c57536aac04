/*-------------------------------------------------------------------------
 *
 * advisor_collect.c
 *	  Index advisor, collection: the predicates, join columns and sort keys
 *	  of sampled statements, kept per fingerprint in bounded shared memory.
 *
 * Sampling: each execution is sampled with probability
 * perfkit.advisor_sample_rate, drawn as a geometric number of executions
 * to skip (one random number per sample, a countdown per statement); below
 * 1, a fingerprint is sampled at most once per PK_ADV_RESAMPLE_US in a
 * backend, since a hot statement's later samples add nothing but their
 * cost.  A sampled statement gets row counting in its plan nodes (INSTRUMENT_ROWS, no timing), so that its filters report
 * how many rows they removed.  Its ExecutorEnd walks the plan state and
 * keeps, per scanned table:
 *	- "column op constant" clauses evaluated as filters (with the share of
 *	  rows the filter kept) or already used as index conditions;
 *	- the sort keys of a Sort whose keys are all columns of one scan below
 *	  it (ORDER BY ... LIMIT served by a sort is the classic missed index);
 *	- the columns of hash, merge and nested-loop join clauses.
 * Statements without any of these (INSERT ... VALUES, key lookups served
 * by index-only scans) leave nothing behind.
 *
 * The shared table is a hash keyed by (database, role, query id) of
 * perfkit.advisor_max_quals / PK_ADV_QUALS_PER_STMT fixed-size entries.
 * An entry keeps up to PK_ADV_QUALS_PER_STMT predicates and, from the
 * first sampled execution, a representative text with its search_path and
 * bind parameter values, which the advisor plans again (advisor.c).
 *
 * Locking: the advisor's LWLock (the "perfkit" tranche's 4th) protects
 * the hash table's structure; each entry's spinlock protects its counters
 * and predicate list.  A sampled execution of a known statement takes the
 * LWLock shared and the entry's spinlock; only a new statement takes it
 * exclusive, and evicts the least sampled tenth of the table when full.
 * Unsampled statements touch no shared memory at all.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/detoast.h"
#include "access/parallel.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "common/pg_prng.h"
#include "executor/executor.h"
#include "executor/instrument.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parsetree.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"

#include "advisor/advisor_internal.h"
#include "core/compat.h"

/* Settings */
double		pk_advisor_sample_rate = 0.1;
int			pk_advisor_max_quals = 16384;
double		pk_advisor_min_improvement = 20.0;
double		pk_advisor_space_cost = 1.0;

#define PK_ADV_RECENT_SLOTS	64	/* fingerprints whose last sample time is kept */
#define PK_ADV_RESAMPLE_US	USECS_PER_SEC	/* least time between two samples of one */

/* The last sample of a fingerprint in this backend */
typedef struct PkAdvRecent
{
	uint64		queryid;
	TimestampTz sampled_at;
} PkAdvRecent;

static PkAdvRecent pk_adv_recent[PK_ADV_RECENT_SLOTS];
static int64 pk_adv_skip = 0;		/* executions to pass over before the next sample */
static double pk_adv_skip_rate = -1;	/* the sample rate pk_adv_skip was drawn for */

/* Table-wide state, in shared memory */
typedef struct PkAdvState
{
	LWLock	   *lock;			/* protects the hash table's structure */
} PkAdvState;

static PkAdvState *pk_adv_state = NULL;
static HTAB *pk_adv_hash = NULL;

/*
 * The statements sampled at ExecutorStart, by nesting level, with the role
 * and search_path they started under (a cursor may end under others)
 */
#define PK_ADV_MAX_LEVELS 16
#define PK_ADV_PATH_SIZE 1024
typedef struct PkAdvSample
{
	QueryDesc  *queryDesc;		/* compared only, never followed before ExecutorEnd */
	Oid			userid;
	bool		path_ok;		/* search_path fitted in path[] */
	char		path[PK_ADV_PATH_SIZE];
} PkAdvSample;
static PkAdvSample pk_adv_sampled[PK_ADV_MAX_LEVELS];

/* What the plan walker collects */
typedef struct PkQualWalk
{
	List	   *rtable;
	PkQual	   *quals;
	int			count;
	int			max;
} PkQualWalk;

/* Number of statements the shared table holds */
static int
pk_advisor_max_entries(void)
{
	return Max(pk_advisor_max_quals / PK_ADV_QUALS_PER_STMT, 16);
}

/* Register the perfkit.advisor_* settings */
static void
pk_advisor_define_settings(void)
{
	DefineCustomRealVariable("perfkit.advisor_sample_rate",
							 "Fraction of statements whose predicates the index advisor collects.",
							 NULL, &pk_advisor_sample_rate, 0.1, 0.0, 1.0,
							 PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("perfkit.advisor_max_quals",
							"Predicates the index advisor keeps in shared memory (16 per statement).",
							NULL, &pk_advisor_max_quals, 16384, 256, INT_MAX / 2,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomRealVariable("perfkit.advisor_min_improvement",
							 "Smallest planner-estimated cost cut, in percent, for which perfkit.index_recommendations lists an index.",
							 NULL, &pk_advisor_min_improvement, 20.0, 0.0, 100.0,
							 PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomRealVariable("perfkit.advisor_space_cost",
							 "Price the index advisor charges per MB of estimated index size, in planner cost units.",
							 NULL, &pk_advisor_space_cost, 1.0, 0.0, 1e12,
							 PGC_USERSET, 0, NULL, NULL, NULL);
}

/* Module load: the settings and the what-if planner hooks */
void
pk_advisor_init(void)
{
	pk_advisor_define_settings();
	pk_whatif_install_hook();
}

/* Shared memory needed by the advisor */
Size
pk_advisor_shmem_size(void)
{
	return add_size(MAXALIGN(sizeof(PkAdvState)),
					hash_estimate_size(pk_advisor_max_entries(), sizeof(PkAdvEntry)));
}

/* Attach (or create) the advisor's shared memory; caller holds AddinShmemInitLock */
void
pk_advisor_shmem_init(void)
{
	bool		found;
	HASHCTL		info;

	pk_adv_state = ShmemInitStruct("perfkit advisor", sizeof(PkAdvState), &found);
	if (!found)
		pk_adv_state->lock = pk_lwlock(PK_LOCK_ADVISOR);
	memset(&info, 0, sizeof(info));
	info.keysize = sizeof(PkAdvKey);
	info.entrysize = sizeof(PkAdvEntry);
	pk_adv_hash = pk_ShmemInitHash("perfkit advisor hash",
								   pk_advisor_max_entries(), pk_advisor_max_entries(),
								   &info, HASH_ELEM | HASH_BLOBS);
}

/*
 * Executions to pass over before the next sample: geometric, so that each
 * execution is sampled with probability perfkit.advisor_sample_rate
 */
static int64
pk_adv_next_skip(void)
{
	double		u = pg_prng_double(&pg_global_prng_state);

	pk_adv_skip_rate = pk_advisor_sample_rate;
	if (pk_advisor_sample_rate >= 1.0)
		return 0;
	return (int64) Min(floor(log(1.0 - u) / log(1.0 - pk_advisor_sample_rate)), (double) PG_INT32_MAX);
}

/* True unless this backend sampled the fingerprint less than PK_ADV_RESAMPLE_US ago */
static bool
pk_adv_sample_due(uint64 queryid)
{
	PkAdvRecent *recent = &pk_adv_recent[queryid % PK_ADV_RECENT_SLOTS];
	TimestampTz now = GetCurrentStatementStartTimestamp();

	if (recent->queryid == queryid && now - recent->sampled_at < PK_ADV_RESAMPLE_US)
		return false;
	recent->queryid = queryid;
	recent->sampled_at = now;
	return true;
}

/* Decide whether to sample this statement; if so ask for row counts per plan node */
void
pk_advisor_executor_start(QueryDesc *queryDesc, int eflags, int level)
{
	CmdType		cmd = queryDesc->operation;

	if (level >= PK_ADV_MAX_LEVELS)
		return;
	pk_adv_sampled[level].queryDesc = NULL;
	if (pk_adv_state == NULL || pk_advisor_sample_rate <= 0.0 || !pk_tracking(level) ||
		(eflags & EXEC_FLAG_EXPLAIN_ONLY) != 0 ||
		queryDesc->plannedstmt->queryId == UINT64CONST(0) ||
		(cmd != CMD_SELECT && cmd != CMD_UPDATE && cmd != CMD_DELETE))
		return;
	if (pk_adv_skip_rate != pk_advisor_sample_rate)
		pk_adv_skip = pk_adv_next_skip();
	if (pk_adv_skip > 0)
	{
		pk_adv_skip--;
		return;
	}
	pk_adv_skip = pk_adv_next_skip();
	if (pk_advisor_sample_rate < 1.0 && !pk_adv_sample_due(queryDesc->plannedstmt->queryId))
		return;
	queryDesc->instrument_options |= INSTRUMENT_ROWS;
	pk_adv_sampled[level].queryDesc = queryDesc;
	pk_adv_sampled[level].userid = GetUserId();
	pk_adv_sampled[level].path_ok =
		strlcpy(pk_adv_sampled[level].path, namespace_search_path, PK_ADV_PATH_SIZE) < PK_ADV_PATH_SIZE;
}

/* Strip binary-compatible casts */
static Expr *
pk_strip(Expr *expr)
{
	while (expr != NULL && IsA(expr, RelabelType))
		expr = ((RelabelType *) expr)->arg;
	return expr;
}

/*
 * The table column an expression of a plan node's clause or target list
 * stands for, following OUTER_VAR/INNER_VAR references down to the scan
 * that produces it; false for anything but a plain column of a table.
 */
static bool
pk_resolve_column(Plan *plan, List *rtable, Expr *expr, Oid *relid, AttrNumber *attnum)
{
	Var		   *var;

	for (;;)
	{
		Plan	   *child;
		TargetEntry *tle;
		RangeTblEntry *rte;

		expr = pk_strip(expr);
		if (expr == NULL || !IsA(expr, Var))
			return false;
		var = (Var *) expr;
		if (var->varattno <= 0 || var->varlevelsup != 0)
			return false;
		if (var->varno == OUTER_VAR || var->varno == INNER_VAR)
		{
			child = var->varno == OUTER_VAR ? outerPlan(plan) : innerPlan(plan);
			if (child == NULL)
				return false;
			tle = get_tle_by_resno(child->targetlist, var->varattno);
			if (tle == NULL)
				return false;
			plan = child;
			expr = tle->expr;
			continue;
		}
		if (IS_SPECIAL_VARNO(var->varno) || var->varno > list_length(rtable))
			return false;
		rte = rt_fetch(var->varno, rtable);
		if (rte->rtekind != RTE_RELATION)
			return false;
		*relid = rte->relid;
		*attnum = var->varattno;
		return true;
	}
}

/* Add a predicate unless the statement already has it */
static void
pk_add_qual(PkQualWalk *walk, const PkQual *qual)
{
	int			i;

	for (i = 0; i < walk->count; i++)
	{
		PkQual	   *q = &walk->quals[i];

		if (q->relid == qual->relid && q->attnum == qual->attnum && q->opno == qual->opno &&
			q->kind == qual->kind && q->position == qual->position)
			return;
	}
	if (walk->count < walk->max)
		walk->quals[walk->count++] = *qual;
}

/* True for a comparison value the planner could use as an index key */
static bool
pk_is_pseudo_constant(Node *node)
{
	return !contain_var_clause(node) && !contain_volatile_functions(node);
}

/* Note "column op value" clauses of a scan: kind PK_QUAL_FILTER or PK_QUAL_INDEX */
static void
pk_note_scan_clauses(PkQualWalk *walk, Scan *scan, List *clauses, uint8 kind, float4 kept)
{
	ListCell   *lc;

	foreach(lc, clauses)
	{
		Expr	   *clause = (Expr *) lfirst(lc);
		Expr	   *left;
		Expr	   *right;
		Oid			opno;
		bool		is_array = false;
		PkQual		qual;

		if (IsA(clause, BoolExpr) && ((BoolExpr *) clause)->boolop == AND_EXPR)
		{
			pk_note_scan_clauses(walk, scan, ((BoolExpr *) clause)->args, kind, kept);
			continue;
		}
		if (IsA(clause, OpExpr) && list_length(((OpExpr *) clause)->args) == 2)
		{
			opno = ((OpExpr *) clause)->opno;
			left = pk_strip(linitial(((OpExpr *) clause)->args));
			right = pk_strip(lsecond(((OpExpr *) clause)->args));
		}
		else if (IsA(clause, ScalarArrayOpExpr) && ((ScalarArrayOpExpr *) clause)->useOr)
		{
			opno = ((ScalarArrayOpExpr *) clause)->opno;
			left = pk_strip(linitial(((ScalarArrayOpExpr *) clause)->args));
			right = pk_strip(lsecond(((ScalarArrayOpExpr *) clause)->args));
			is_array = true;
		}
		else
			continue;

		/* the column on the left: commute "value op column" */
		if (!IsA(left, Var) && IsA(right, Var) && !is_array)
		{
			Expr	   *tmp = left;

			left = right;
			right = tmp;
			opno = get_commutator(opno);
			if (!OidIsValid(opno))
				continue;
		}
		if (!IsA(left, Var) || ((Var *) left)->varno != scan->scanrelid ||
			((Var *) left)->varattno <= 0 || !pk_is_pseudo_constant((Node *) right))
			continue;

		memset(&qual, 0, sizeof(qual));
		if (!pk_resolve_column(&scan->plan, walk->rtable, left, &qual.relid, &qual.attnum))
			continue;
		qual.opno = opno;
		qual.kind = kind;
		qual.is_array = is_array;
		qual.kept = kept;
		pk_add_qual(walk, &qual);
	}
}

/* Note the keys of a Sort when all of them are columns of one table below it */
static void
pk_note_sort(PkQualWalk *walk, Sort *sort)
{
	Plan	   *child = outerPlan(&sort->plan);
	PkQual		keys[PK_ADV_MAX_COLUMNS];
	int			i;

	if (child == NULL || sort->numCols > PK_ADV_MAX_COLUMNS)
		return;
	for (i = 0; i < sort->numCols; i++)
	{
		TargetEntry *tle = get_tle_by_resno(child->targetlist, sort->sortColIdx[i]);

		memset(&keys[i], 0, sizeof(PkQual));
		if (tle == NULL ||
			!pk_resolve_column(child, walk->rtable, tle->expr, &keys[i].relid, &keys[i].attnum) ||
			(i > 0 && keys[i].relid != keys[0].relid))
			return;
		keys[i].opno = sort->sortOperators[i];
		keys[i].kind = PK_QUAL_SORT;
		keys[i].position = i;
		keys[i].nulls_first = sort->nullsFirst[i];
		keys[i].kept = -1;
	}
	for (i = 0; i < sort->numCols; i++)
		pk_add_qual(walk, &keys[i]);
}

/* Note both columns of "column op column" join clauses */
static void
pk_note_join_clauses(PkQualWalk *walk, Plan *join, List *clauses)
{
	ListCell   *lc;

	foreach(lc, clauses)
	{
		OpExpr	   *op = (OpExpr *) lfirst(lc);
		ListCell   *arg;

		if (!IsA(op, OpExpr) || list_length(op->args) != 2)
			continue;
		foreach(arg, op->args)
		{
			PkQual		qual;

			memset(&qual, 0, sizeof(qual));
			if (!pk_resolve_column(join, walk->rtable, lfirst(arg), &qual.relid, &qual.attnum))
				continue;
			qual.opno = op->opno;
			qual.kind = PK_QUAL_JOIN;
			qual.kept = -1;
			pk_add_qual(walk, &qual);
		}
	}
}

/* Share of the rows a node looked at that its filter kept; -1 when not counted */
static float4
pk_kept_fraction(PlanState *ps)
{
	PkNodeInstrumentation *instr = ps->instrument;
	double		out;

	if (instr == NULL)
		return -1;
	out = instr->ntuples + instr->tuplecount;
	if (out + instr->nfiltered1 <= 0)
		return -1;
	return (float4) (out / (out + instr->nfiltered1));
}

/* Plan state walker: note what each node offers the advisor */
static bool
pk_quals_walker(PlanState *ps, void *arg)
{
	PkQualWalk *walk = (PkQualWalk *) arg;
	Plan	   *plan;

	if (ps == NULL)
		return false;
	plan = ps->plan;
	switch (nodeTag(plan))
	{
		case T_SeqScan:
			pk_note_scan_clauses(walk, (Scan *) plan, plan->qual, PK_QUAL_FILTER,
								 pk_kept_fraction(ps));
			break;
		case T_IndexScan:
			pk_note_scan_clauses(walk, (Scan *) plan, ((IndexScan *) plan)->indexqualorig,
								 PK_QUAL_INDEX, -1);
			pk_note_scan_clauses(walk, (Scan *) plan, plan->qual, PK_QUAL_FILTER,
								 pk_kept_fraction(ps));
			break;
		case T_BitmapHeapScan:
			pk_note_scan_clauses(walk, (Scan *) plan,
								 ((BitmapHeapScan *) plan)->bitmapqualorig, PK_QUAL_INDEX, -1);
			pk_note_scan_clauses(walk, (Scan *) plan, plan->qual, PK_QUAL_FILTER,
								 pk_kept_fraction(ps));
			break;
		case T_Sort:
		case T_IncrementalSort:
			pk_note_sort(walk, (Sort *) plan);
			break;
		case T_HashJoin:
			pk_note_join_clauses(walk, plan, ((HashJoin *) plan)->hashclauses);
			break;
		case T_MergeJoin:
			pk_note_join_clauses(walk, plan, ((MergeJoin *) plan)->mergeclauses);
			break;
		case T_NestLoop:
			pk_note_join_clauses(walk, plan, ((NestLoop *) plan)->join.joinqual);
			break;
		default:
			break;
	}
	return planstate_tree_walker(ps, pk_quals_walker, arg);
}

/* Collect the predicates of an initialized plan into quals[max]; returns how many */
int
pk_quals_from_planstate(QueryDesc *queryDesc, PkQual *quals, int max)
{
	PkQualWalk	walk;

	walk.rtable = queryDesc->plannedstmt->rtable;
	walk.quals = quals;
	walk.count = 0;
	walk.max = max;
	pk_quals_walker(queryDesc->planstate, &walk);
	return walk.count;
}

/* Append the bytes of s (with its NUL) to buf at *used; false when they do not fit */
static bool
pk_append(char *buf, int *used, const char *s, int len)
{
	if (*used + len + 1 > PK_ADV_TEXT_SIZE)
		return false;
	memcpy(buf + *used, s, len);
	buf[*used + len] = '\0';
	*used += len + 1;
	return true;
}

/* Append one parameter to buf at *used: "n" for NULL, else "v" and the value; false if it does not fit */
static bool
pk_append_param(char *buf, int *used, const char *value)
{
	int			len = value ? strlen(value) : 0;

	if (*used + 1 + len + 1 > PK_ADV_TEXT_SIZE)
		return false;
	buf[(*used)++] = value ? 'v' : 'n';
	return pk_append(buf, used, value ? value : "", len);
}

/* Fill an entry's representative execution: text, search_path and parameter values */
static void
pk_fill_representative(PkAdvEntry *e, QueryDesc *queryDesc, const PkAdvSample *sample)
{
	const char *source = queryDesc->sourceText;
	int			location = queryDesc->plannedstmt->stmt_location;
	int			len = queryDesc->plannedstmt->stmt_len;
	ParamListInfo params = queryDesc->params;
	int			used = 0;
	int			i;

	e->nparams = -1;
	e->text_len = e->path_len = 0;
	if (source == NULL)
		return;
	if (location < 0 || location > (int) strlen(source))
		location = 0;
	if (len <= 0)
		len = strlen(source + location);
	if (!pk_append(e->text, &used, source + location, len))
		return;
	e->text_len = len;
	if (!sample->path_ok || !pk_append(e->text, &used, sample->path, strlen(sample->path)))
		return;
	e->path_len = strlen(sample->path);

	/* values fetched on demand (PL/pgSQL variables) cannot be replayed */
	if (params != NULL && (params->paramFetch != NULL || params->numParams > PK_ADV_MAX_PARAMS))
		return;
	e->nparams = 0;
	if (params == NULL || params->numParams <= 0)
		return;
	for (i = 0; i < params->numParams; i++)
	{
		ParamExternData *prm = &params->params[i];
		char	   *value = NULL;
		Oid			typoutput;
		bool		varlena;
		bool		fits;

		e->paramtypes[i] = prm->ptype;
		if (!OidIsValid(prm->ptype))
		{
			e->nparams = -1;
			return;
		}
		if (!prm->isnull)
		{
			getTypeOutputInfo(prm->ptype, &typoutput, &varlena);
			/* a value that cannot fit is not even converted: it may be huge */
			if (varlena && toast_raw_datum_size(prm->value) > PK_ADV_TEXT_SIZE)
			{
				e->nparams = -1;
				return;
			}
			value = OidOutputFunctionCall(typoutput, prm->value);
		}
		fits = pk_append_param(e->text, &used, value);
		if (value != NULL)
			pfree(value);
		if (!fits)
		{
			e->nparams = -1;
			return;
		}
	}
	e->nparams = params->numParams;
}

/* Add predicates not yet known to an entry; caller holds its spinlock */
static void
pk_merge_quals(PkAdvEntry *e, const PkQual *quals, int count)
{
	int			i,
				j;

	for (i = 0; i < count && e->nquals < PK_ADV_QUALS_PER_STMT; i++)
	{
		const PkQual *q = &quals[i];

		for (j = 0; j < e->nquals; j++)
		{
			PkQual	   *k = &e->quals[j];

			if (k->relid == q->relid && k->attnum == q->attnum && k->opno == q->opno &&
				k->kind == q->kind && k->position == q->position)
				break;
		}
		if (j == e->nquals)
			e->quals[e->nquals++] = *q;
	}
}

/* Count one more sampled execution of an entry and add its new predicates */
static void
pk_adv_add_sample(PkAdvEntry *e, const PkQual *quals, int count)
{
	SpinLockAcquire(&e->mutex);
	e->samples++;
	pk_merge_quals(e, quals, count);
	SpinLockRelease(&e->mutex);
}

/* Order entries by samples, fewest first */
static int
pk_adv_cmp_samples(const void *a, const void *b)
{
	int64		x = (*(PkAdvEntry *const *) a)->samples;
	int64		y = (*(PkAdvEntry *const *) b)->samples;

	return (x > y) - (x < y);
}

/* Make room: remove the least sampled tenth of the entries (why not as stats.c evicts: see there); caller holds the lock exclusive */
static void
pk_adv_evict_locked(void)
{
	int			count = hash_get_num_entries(pk_adv_hash);
	PkAdvEntry **entries = palloc(sizeof(PkAdvEntry *) * Max(count, 1));
	HASH_SEQ_STATUS hs;
	PkAdvEntry *e;
	int			n = 0;
	int			i;

	hash_seq_init(&hs, pk_adv_hash);
	while ((e = hash_seq_search(&hs)) != NULL)
		entries[n++] = e;
	qsort(entries, n, sizeof(PkAdvEntry *), pk_adv_cmp_samples);
	for (i = 0; i < Max(n / 10, 1) && i < n; i++)
		hash_search(pk_adv_hash, &entries[i]->key, HASH_REMOVE, NULL);
	pfree(entries);
}

/* Keep the predicates of a sampled execution (out of line: most statements are not sampled) */
static pg_noinline void
pk_advisor_keep_sample(QueryDesc *queryDesc, int level)
{
	PkQual		quals[PK_ADV_QUALS_PER_STMT];
	int			count;
	PkAdvKey	key;
	PkAdvEntry *e;
	PkAdvEntry *fresh;
	PkAdvSample *sample;
	bool		found;

	sample = &pk_adv_sampled[level];
	sample->queryDesc = NULL;
	if (queryDesc->planstate == NULL)
		return;

	count = pk_quals_from_planstate(queryDesc, quals, PK_ADV_QUALS_PER_STMT);
	if (count == 0)
		return;

	memset(&key, 0, sizeof(key));
	key.dbid = MyDatabaseId;
	key.userid = sample->userid;
	key.queryid = queryDesc->plannedstmt->queryId;

	LWLockAcquire(pk_adv_state->lock, LW_SHARED);
	e = hash_search(pk_adv_hash, &key, HASH_FIND, NULL);
	if (e != NULL)
	{
		pk_adv_add_sample(e, quals, count);
		LWLockRelease(pk_adv_state->lock);
		return;
	}
	LWLockRelease(pk_adv_state->lock);

	/* a new statement: prepare its entry outside the lock */
	fresh = palloc0(sizeof(PkAdvEntry));
	fresh->samples = 1;
	pk_merge_quals(fresh, quals, count);
	pk_fill_representative(fresh, queryDesc, sample);

	LWLockAcquire(pk_adv_state->lock, LW_EXCLUSIVE);
	if (hash_get_num_entries(pk_adv_hash) >= pk_advisor_max_entries())
		pk_adv_evict_locked();
	/* eviction made room in the preallocated table: NULL only if it failed */
	e = hash_search(pk_adv_hash, &key, HASH_ENTER_NULL, &found);
	if (e != NULL && !found)
	{
		memcpy((char *) e + offsetof(PkAdvEntry, samples),
			   (char *) fresh + offsetof(PkAdvEntry, samples),
			   sizeof(PkAdvEntry) - offsetof(PkAdvEntry, samples));
		SpinLockInit(&e->mutex);
	}
	else if (e != NULL)
	{
		/* another backend created it meanwhile */
		pk_adv_add_sample(e, quals, count);
	}
	LWLockRelease(pk_adv_state->lock);
	pfree(fresh);
}

/* At ExecutorEnd: keep the predicates of a sampled statement */
void
pk_advisor_executor_end(QueryDesc *queryDesc, int level)
{
	if (level < PK_ADV_MAX_LEVELS && pk_adv_sampled[level].queryDesc == queryDesc)
		pk_advisor_keep_sample(queryDesc, level);
}

/* Copies of the entries of one database, palloc'd; *count receives their number */
PkAdvEntry *
pk_advisor_snapshot(Oid dbid, int *count)
{
	PkAdvEntry *copies;
	HASH_SEQ_STATUS hs;
	PkAdvEntry *e;
	int			n = 0;

	LWLockAcquire(pk_adv_state->lock, LW_SHARED);
	copies = palloc(sizeof(PkAdvEntry) * Max(hash_get_num_entries(pk_adv_hash), 1));
	hash_seq_init(&hs, pk_adv_hash);
	while ((e = hash_seq_search(&hs)) != NULL)
	{
		if (e->key.dbid != dbid)
			continue;
		SpinLockAcquire(&e->mutex);
		memcpy(&copies[n], e, sizeof(PkAdvEntry));
		SpinLockRelease(&e->mutex);
		n++;
	}
	LWLockRelease(pk_adv_state->lock);
	*count = n;
	return copies;
}

/* Forget every collected statement */
void
pk_advisor_reset(void)
{
	HASH_SEQ_STATUS hs;
	PkAdvEntry *e;

	LWLockAcquire(pk_adv_state->lock, LW_EXCLUSIVE);
	hash_seq_init(&hs, pk_adv_hash);
	while ((e = hash_seq_search(&hs)) != NULL)
		hash_search(pk_adv_hash, &e->key, HASH_REMOVE, NULL);
	LWLockRelease(pk_adv_state->lock);
}

/* True once the advisor's shared memory is attached (perfkit preloaded) */
bool
pk_advisor_loaded(void)
{
	return pk_adv_state != NULL;
}
