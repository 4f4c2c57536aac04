/*-------------------------------------------------------------------------
 *
 * nplusone.c
 *	  Detect N+1 loops inside the server, whatever the client language.
 *
 * The rule.  A loop is a parent statement that returned rows, followed in
 * the same session -- within one transaction, or with no more than
 * perfkit.nplusone_max_gap between executions when autocommit -- by at
 * least perfkit.nplusone_min_repeats executions of one other fingerprint
 * whose parameter values differ from one execution to the next and come
 * from the parent's result rows.  Values are bind parameters (extended
 * protocol, PREPARE/EXECUTE), PL/pgSQL variables, or constants written into
 * the SQL text by the client (they are read from the parse tree).  A loop
 * inside a function is reported with the client's statement (the function
 * call) as its parent.  A statement repeated with the same values each
 * time is reported too, unconfirmed, as a caching smell.
 *
 * Per backend, all in fixed-size arrays (O(1) work per statement, nothing
 * allocated):
 *	- parents: the last NPLUSONE_PARENTS row-returning statements, each with a
 *	  small open-addressing set of hashes of the values in its first
 *	  NPLUSONE_CAPTURE_ROWS rows, filled by a DestReceiver tap while rows flow
 *	  (the tap hashes, it copies nothing);
 *	- trackers: NPLUSONE_TRACKERS (parent, repeated statement) loops in progress;
 *	- per statement fingerprint (a small direct-mapped table), what identified
 *	  its previous execution's values, to tell an identical repeat;
 *	- per nesting level, a memo of the statement just parsed (its constants,
 *	  or only a hash of their text), and a cache of which PL/pgSQL parameters
 *	  each statement reads;
 *	- bit masks of the parent slots in use, of the parents still being
 *	  filled and of the trackers in use, so that an idle structure costs
 *	  nothing to skip.
 *
 * The cheap path.  Most statements cannot be a step of a loop: no remembered
 * parent of another fingerprint is live (same transaction, or within
 * nplusone_max_gap in autocommit) and no loop of theirs is in progress.
 * Those statements never read their values: at parse analysis the constants
 * are collected (a walk of the whole Query) only when a live parent exists,
 * when the statement may read PL/pgSQL parameters, or when the text of its
 * constants hashes as its previous execution's did (an identical repeat,
 * whose values the sample shows).  Otherwise the statement is identified by
 * that text hash alone: same fingerprint and same text of the constants
 * means same values (two texts that differ only in spacing or comments
 * after the first constant count as different values).  At the end such a
 * statement only compares the hash with the previous one and leaves.  Bind
 * parameters are hashed, never copied; values are kept in full only for the
 * sample of a new pattern.
 *
 * Shared memory holds one entry per pattern (role, database, parent,
 * repeated statement, application_name, confirmed), under its own LWLock:
 * SHARED plus the entry's spinlock to count a repeat of a known pattern,
 * EXCLUSIVE only to create (and, when full, evict) one.  Only executions
 * inside a detected loop touch shared memory at all.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/parallel.h"
#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "common/hashfn.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "port/pg_bitutils.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/tuplestore.h"

#include "core/compat.h"
#include "nplusone/nplusone.h"

#define NPLUSONE_MAX_POS			8	/* parameter positions considered per statement */
#define NPLUSONE_TEXT_KEEP		32	/* bytes of a text value kept for the sample */
#define NPLUSONE_PARENTS			8	/* row-returning statements remembered */
#define NPLUSONE_VALUES			256 /* value hashes per parent (power of two) */
#define NPLUSONE_VALUES_FILL		192 /* ... of which at most this many are used */
#define NPLUSONE_CAPTURE_ROWS		200 /* rows of a parent whose values are hashed */
#define NPLUSONE_CAPTURE_COLS		16	/* columns of a parent whose values are hashed */
#define NPLUSONE_TRACKERS			16	/* loops followed at once */
#define NPLUSONE_LEVELS			8	/* nesting levels with their own parse memo */
#define NPLUSONE_SHAPES			64	/* statements whose PL/pgSQL parameters are cached */
#define NPLUSONE_IDENTICAL_SPAN	4	/* statements between two identical repeats, at most */

/* parents and trackers in use are kept as bits of a uint32 */
StaticAssertDecl(NPLUSONE_PARENTS <= 32 && NPLUSONE_TRACKERS <= 32,
				 "parent and tracker masks are 32 bits wide");

/* One parameter value: its hash, and enough of it to show in a sample */
typedef struct NplusoneValue
{
	uint32		hash;
	bool		is_int;
	int64		ival;
	int			tlen;
	char		text[NPLUSONE_TEXT_KEEP];
} NplusoneValue;

/* The parameter values of one execution */
typedef struct NplusoneValues
{
	int			n;
	NplusoneValue		v[NPLUSONE_MAX_POS];
} NplusoneValues;

/* A recent row-returning statement and the values it returned */
typedef struct NplusoneParent
{
	uint64		queryid;		/* 0 = free slot */
	uint64		report_queryid; /* reported as parent: the client's statement */
	uint32		generation;		/* bumped whenever the slot is refilled */
	const QueryDesc *owner;		/* execution still filling it, NULL when done (never dereferenced) */
	LocalTransactionId lxid;	/* transaction it ran in */
	bool		in_block;		/* ... and whether that was a transaction block */
	TimestampTz last_activity;	/* end of the execution, or latest loop step */
	int			rows_seen;		/* rows passed through the tap */
	int			nvalues;		/* hashes in values[] */
	uint32		values[NPLUSONE_VALUES];	/* open addressing, 0 = empty */
	uint16		used[NPLUSONE_VALUES_FILL];	/* positions filled, to empty the set cheaply */
} NplusoneParent;

/* A loop being followed: a repeated statement after a parent (in use: nplusone_tracker_mask) */
typedef struct NplusoneTracker
{
	bool		identical;		/* same values every time (no parent) */
	int			parent;			/* index in nplusone_parents, -1 for identical */
	uint32		parent_generation;
	uint64		parent_report_queryid;
	uint64		queryid;		/* the repeated statement */
	int			count;			/* executions in this loop */
	double		time;			/* their total time (ms) */
	bool		published;		/* the loop is in shared memory already */
	bool		quiet;			/* ... or never will be: a loop of perfkit's own code */
	LocalTransactionId lxid;	/* transaction of the latest execution */
	bool		in_block;		/* ... and whether that was a transaction block */
	TimestampTz last_ts;		/* time of the latest execution */
	uint64		last_seq;		/* nplusone_seq at the latest execution */
} NplusoneTracker;

/* What parse analysis learned of the statement just parsed at one nesting level */
typedef struct NplusoneParseMemo
{
	uint64		queryid;		/* 0 = none, or consumed by its execution */
	bool		by_text;		/* identified by text_hash (else by its values) */
	uint32		text_hash;		/* hash of the text of its constants */
	NplusoneValues	values;		/* its constants, when they were collected */
} NplusoneParseMemo;

/* The values of one execution as the rules see them: hashes, and what identifies them */
typedef struct NplusoneExec
{
	int			n;				/* hashes in hash[] */
	uint32		hash[NPLUSONE_MAX_POS];	/* of the values, matched against parents' */
	bool		by_text;		/* identified by text_hash rather than by hash[] */
	uint32		text_hash;		/* hash of the text of the constants */
	const NplusoneValues *sample;	/* constants kept in full for a sample, or NULL */
} NplusoneExec;

/* What identified the previous execution of a statement, to tell an identical repeat */
typedef struct NplusoneLast
{
	uint64		queryid;		/* 0 = free */
	bool		by_text;		/* hash[0] is a text hash (n = 1) */
	int			n;
	uint32		hash[NPLUSONE_MAX_POS];
} NplusoneLast;

/* Which PL/pgSQL (fetched) parameters a statement reads */
typedef struct NplusoneShape
{
	uint64		queryid;
	int			nparams;
	int			paramids[NPLUSONE_MAX_POS];
} NplusoneShape;

/* The DestReceiver that hashes a parent's values on their way out */
typedef struct NplusoneTap
{
	DestReceiver pub;
	DestReceiver *inner;		/* the real destination */
	NplusoneParent   *parent;
	uint32		generation;
} NplusoneTap;

/* Identity of one pattern: who looped, and which statement after which */
typedef struct PkNplusoneKey
{
	Oid			userid;			/* role */
	Oid			dbid;			/* database */
	uint64		parent_queryid; /* the list statement (0 for repeated identical statements without one) */
	uint64		queryid;		/* the repeated statement */
	uint32		appname_hash;	/* hash of application_name */
	bool		confirmed;		/* parameters came from the parent's rows */
} PkNplusoneKey;

/* One pattern in shared memory; figures protected by mutex */
typedef struct PkNplusoneEntry
{
	PkNplusoneKey	key;			/* hash key, must be first */
	slock_t		mutex;			/* protects the fields below */
	char		application_name[NAMEDATALEN];	/* client's application_name */
	int64		detections;		/* loops seen */
	int32		last_repeats;	/* executions in the latest loop */
	int32		max_repeats;	/* executions in the longest loop */
	int64		total_repeats;	/* executions in all loops */
	double		total_time;		/* ms spent in those executions */
	TimestampTz first_seen;		/* first detection */
	TimestampTz last_seen;		/* latest execution in a loop */
	char		sample_params[256]; /* parameters of one execution, e.g. "$1 = '42'" */
} PkNplusoneEntry;

/* Table-wide state */
typedef struct PkNplusoneShared
{
	LWLock	   *lock;			/* protects the hash table's structure */
	slock_t		mutex;			/* protects dropped */
	int64		dropped;		/* patterns not recorded: table full */
} PkNplusoneShared;

static PkNplusoneShared *pk_nplusone_state = NULL;
static HTAB *pk_nplusone_hash = NULL;

static NplusoneParent nplusone_parents[NPLUSONE_PARENTS];
static NplusoneTracker nplusone_trackers[NPLUSONE_TRACKERS];
static NplusoneParseMemo nplusone_parse_memo[NPLUSONE_LEVELS];

/*
 * One tap per nesting level, reused: a tap lives only while its ExecutorRun
 * call runs (hooks.c restores the destination after it), and any ExecutorRun
 * started meanwhile is one level deeper, so no allocation per statement.
 */
static NplusoneTap nplusone_taps[NPLUSONE_LEVELS];
static NplusoneShape nplusone_shapes[NPLUSONE_SHAPES];
static NplusoneLast nplusone_last[NPLUSONE_SHAPES];
static uint32 nplusone_parent_mask = 0;	/* parent slots filled (queryid set) */
static uint32 nplusone_owned_mask = 0;	/* parents with an owner (still being filled) */
static uint32 nplusone_tracker_mask = 0;	/* trackers in use */
static uint32 nplusone_hash_hi0 = 0;	/* murmurhash32(0x9e3779b9): high half 0 of an integer, set at init */
static uint64 nplusone_top_queryid = 0;	/* client statement now running */
static uint64 nplusone_statements_started = 0;	/* client statements started in this backend */
static uint64 nplusone_quiet_statement = 0;	/* the one of them whose loops are perfkit's own */
static uint32 nplusone_generation = 0;
static uint64 nplusone_seq = 0;			/* statements ended in this backend */

/* Settings */
bool		pk_nplusone_enabled = true;
int			pk_nplusone_min_repeats = 5;
int			pk_nplusone_max_gap = 500;
int			pk_nplusone_log_level = LOG;
int			pk_nplusone_max_patterns = 1000;

/* Values of perfkit.nplusone_log_level */
static const struct config_enum_entry pk_log_level_options[] = {
	{"debug5", DEBUG5, false},
	{"debug4", DEBUG4, false},
	{"debug3", DEBUG3, false},
	{"debug2", DEBUG2, false},
	{"debug1", DEBUG1, false},
	{"debug", DEBUG2, true},
	{"info", INFO, false},
	{"notice", NOTICE, false},
	{"warning", WARNING, false},
	{"log", LOG, false},
	{NULL, 0, false}
};

static void nplusone_init_taps(void);

/* Register the N+1 settings (from _PG_init) */
void
pk_nplusone_init(void)
{
	DefineCustomBoolVariable("perfkit.nplusone",
							 "Detects N+1 loops and repeated identical statements.",
							 NULL, &pk_nplusone_enabled, true,
							 PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("perfkit.nplusone_min_repeats",
							"Executions of the same statement after a parent that make a loop.",
							NULL, &pk_nplusone_min_repeats, 5, 2, INT_MAX,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("perfkit.nplusone_max_gap",
							"Longest pause between two steps of a loop outside a transaction block.",
							NULL, &pk_nplusone_max_gap, 500, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomEnumVariable("perfkit.nplusone_log_level",
							 "Log level of the server-log line written when a new pattern is detected.",
							 NULL, &pk_nplusone_log_level, LOG, pk_log_level_options,
							 PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("perfkit.nplusone_max_patterns",
							"Number of N+1 patterns kept; the one seen longest ago makes room for a new one.",
							NULL, &pk_nplusone_max_patterns, 1000, 10, 1000000,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);
	nplusone_init_taps();
	nplusone_hash_hi0 = murmurhash32(0x9e3779b9);
}

/* Shared memory needed for the patterns */
Size
pk_nplusone_shmem_size(void)
{
	return add_size(MAXALIGN(sizeof(PkNplusoneShared)),
					hash_estimate_size(pk_nplusone_max_patterns, sizeof(PkNplusoneEntry)));
}

/* Attach to (or create) the pattern table; caller holds AddinShmemInitLock */
void
pk_nplusone_shmem_init(void)
{
	HASHCTL		info;
	bool		found;

	pk_nplusone_state = ShmemInitStruct("perfkit n+1 state", sizeof(PkNplusoneShared), &found);
	if (!found)
	{
		pk_nplusone_state->lock = pk_lwlock(PK_LOCK_NPLUSONE);
		SpinLockInit(&pk_nplusone_state->mutex);
		pk_nplusone_state->dropped = 0;
	}
	memset(&info, 0, sizeof(info));
	info.keysize = sizeof(PkNplusoneKey);
	info.entrysize = sizeof(PkNplusoneEntry);
	pk_nplusone_hash = pk_ShmemInitHash("perfkit n+1 patterns",
										pk_nplusone_max_patterns, pk_nplusone_max_patterns,
										&info, HASH_ELEM | HASH_BLOBS);
}

/* True when detection runs in this process */
static inline bool
nplusone_active(void)
{
	return pk_nplusone_enabled && pk_nplusone_state != NULL && !IsParallelWorker();
}

/* Hash of an integer: of every width alike, so an int4 key matches an int8 parameter; never 0 */
static inline uint32
nplusone_hash_int(int64 i)
{
	uint32		hi = (uint32) ((uint64) i >> 32);

	return (murmurhash32((uint32) i) ^
			(hi == 0 ? nplusone_hash_hi0 : murmurhash32(hi + 0x9e3779b9))) | 1;
}

/*
 * Hash a datum of a key-like type (integers, text, uuid) into *hash, and
 * when keep is not NULL keep enough of it for a sample; false for other
 * types and for values we will not detoast.
 */
static bool
nplusone_hash_datum(Datum d, Oid type, uint32 *hash, NplusoneValue *keep)
{
	int64		i;
	const char *p;
	int			len;

	switch (type)
	{
		case INT4OID:
			i = DatumGetInt32(d);
			break;
		case INT8OID:
			i = DatumGetInt64(d);
			break;
		case INT2OID:
			i = DatumGetInt16(d);
			break;
		case OIDOID:
			i = DatumGetObjectId(d);
			break;
		case TEXTOID:
		case VARCHAROID:
		case BPCHAROID:
			{
				struct varlena *v = (struct varlena *) DatumGetPointer(d);

				if (VARATT_IS_EXTENDED(v) && !VARATT_IS_SHORT(v))
					return false;	/* toasted or compressed: not a key */
				p = VARDATA_ANY(v);
				len = VARSIZE_ANY_EXHDR(v);
				goto bytes;
			}
		case NAMEOID:
			p = NameStr(*DatumGetName(d));
			len = strlen(p);
			goto bytes;
		case UUIDOID:
			*hash = hash_bytes((const unsigned char *) DatumGetPointer(d), 16);
			if (keep != NULL)
			{
				keep->is_int = false;
				keep->tlen = 0;
			}
			return true;
		default:
			return false;
	}
	*hash = nplusone_hash_int(i);
	if (keep != NULL)
	{
		keep->is_int = true;
		keep->ival = i;
	}
	return true;

bytes:
	*hash = hash_bytes((const unsigned char *) p, len) | 1;
	if (keep != NULL)
	{
		keep->is_int = false;
		keep->tlen = Min(len, NPLUSONE_TEXT_KEEP);
		memcpy(keep->text, p, keep->tlen);
	}
	return true;
}

/* Hash of a key-like datum, integers without a call: false for other types */
static inline bool
nplusone_hash_key(Datum d, Oid type, uint32 *hash)
{
	if (type == INT4OID)
	{
		*hash = nplusone_hash_int(DatumGetInt32(d));
		return true;
	}
	return nplusone_hash_datum(d, type, hash, NULL);
}

/* Walker: collect literal constants and PL/pgSQL parameter references */
typedef struct NplusoneCollect
{
	NplusoneValues   *consts;
	NplusoneShape    *shape;
} NplusoneCollect;

static bool
nplusone_collect_walker(Node *node, NplusoneCollect *c)
{
	if (node == NULL)
		return false;
	if (IsA(node, Const))
	{
		Const	   *k = (Const *) node;
		NplusoneValue *v = &c->consts->v[c->consts->n];

		/* only constants written in the text (implicit ones have no location) */
		if (k->location >= 0 && !k->constisnull && c->consts->n < NPLUSONE_MAX_POS &&
			nplusone_hash_datum(k->constvalue, k->consttype, &v->hash, v))
			c->consts->n++;
		return false;
	}
	if (IsA(node, Param))
	{
		Param	   *p = (Param *) node;

		if (p->paramkind == PARAM_EXTERN && c->shape->nparams < NPLUSONE_MAX_POS)
		{
			for (int i = 0; i < c->shape->nparams; i++)
				if (c->shape->paramids[i] == p->paramid)
					return false;
			c->shape->paramids[c->shape->nparams++] = p->paramid;
		}
		return false;
	}
	if (IsA(node, Query))
		return query_tree_walker((Query *) node, nplusone_collect_walker, c, 0);
	return expression_tree_walker(node, nplusone_collect_walker, c);
}

/*
 * True when something that happened at "last" in transaction lxid belongs to
 * the same loop as now: the same transaction, or, when it was not inside a
 * transaction block (autocommit), a pause of at most nplusone_max_gap.
 */
static inline bool
nplusone_same_loop(LocalTransactionId lxid, bool in_block, TimestampTz last, TimestampTz now)
{
	return lxid == PK_MY_LXID ||
		(!in_block && (now - last) <= (int64) pk_nplusone_max_gap * 1000);
}

/* True when a parent of another statement holds values and is in the same loop window as now */
static inline bool
nplusone_live_parent(uint64 queryid, TimestampTz now)
{
	for (uint32 m = nplusone_parent_mask; m != 0; m &= m - 1)
	{
		const NplusoneParent *p = &nplusone_parents[pg_rightmost_one_pos32(m)];

		if (p->queryid != queryid && p->nvalues > 0 &&
			nplusone_same_loop(p->lxid, p->in_block, p->last_activity, now))
			return true;
	}
	return false;
}

/*
 * A cheap hash of text[first, end), eight bytes at a time, only ever compared
 * for equality; the last word may reach back before first (never before the
 * text), which only makes the comparison stricter.
 */
static inline uint32
nplusone_hash_text(const char *text, int first, int end)
{
	uint64		h = (uint64) (end - first);
	uint64		w = 0;
	int			pos;

	for (pos = first; pos + 8 <= end; pos += 8)
	{
		memcpy(&w, text + pos, 8);
		h = (h ^ w) * UINT64CONST(0x9e3779b97f4a7c15);
		h ^= h >> 29;
	}
	if (pos < end)
	{
		if (end >= 8)
			memcpy(&w, text + end - 8, 8);
		else
			for (w = 0; pos < end; pos++)
				w = (w << 8) | (unsigned char) text[pos];
		h = (h ^ w) * UINT64CONST(0x9e3779b97f4a7c15);
	}
	h ^= h >> 32;
	return (uint32) h;
}

/*
 * Hash of the text of a statement's constants: from the first constant the
 * jumbler recorded (the words before it hold none) to the statement's end.
 */
static uint32
nplusone_text_hash(const char *text, const Query *query, PkHookJumbleState *jstate)
{
	int			start = query->stmt_location >= 0 ? query->stmt_location : 0;
	int			end;
	int			first;

	if (query->stmt_location >= 0 && query->stmt_len > 0)
		end = start + query->stmt_len;
	else
		end = start + strlen(text + start);
	first = end;
	for (int i = 0; i < jstate->clocations_count; i++)
		if (jstate->clocations[i].location >= start && jstate->clocations[i].location < first)
			first = jstate->clocations[i].location;
	if (first == end)
		first = start;			/* no location inside the statement: hash all of it */
	return nplusone_hash_text(text, first, end);
}

/* True when the previous execution of the statement had this text of constants */
static inline bool
nplusone_same_text_as_last(uint64 queryid, uint32 text_hash)
{
	const NplusoneLast *last = &nplusone_last[queryid % NPLUSONE_SHAPES];

	return last->queryid == queryid && last->by_text && last->hash[0] == text_hash;
}

/* Walk the Query: its constants into the memo, the PL/pgSQL parameters it reads into the shape cache */
static pg_noinline void
nplusone_collect(Query *query, NplusoneParseMemo *memo)
{
	NplusoneShape shape;
	NplusoneCollect c;

	memset(&shape, 0, sizeof(shape));
	c.consts = &memo->values;
	c.shape = &shape;
	(void) query_tree_walker(query, nplusone_collect_walker, &c, 0);

	if (shape.nparams > 0)
	{
		shape.queryid = query->queryId;
		nplusone_shapes[query->queryId % NPLUSONE_SHAPES] = shape;
	}
}

/*
 * post_parse_analyze: note how to identify the statement's values and, only
 * when they may matter (a live parent, a possible identical repeat, PL/pgSQL
 * parameters), collect its constants and parameter references.
 */
void
pk_nplusone_note_parse(ParseState *pstate, Query *query, PkHookJumbleState *jstate, int level)
{
	NplusoneParseMemo *memo;

	if (!nplusone_active() || query->queryId == UINT64CONST(0) || query->utilityStmt != NULL ||
		level >= NPLUSONE_LEVELS)
		return;

	memo = &nplusone_parse_memo[level];
	memo->queryid = query->queryId;
	memo->values.n = 0;
	/* without a jumble state or a text, identify by the values, as collected below */
	memo->by_text = false;
	if (jstate != NULL && jstate->clocations_count == 0)
	{
		/* no constant in the text: nothing to collect, unless parameters */
		if (pstate->p_paramref_hook == NULL)
			return;
	}
	else if (jstate != NULL && pstate->p_sourcetext != NULL)
	{
		memo->by_text = true;
		memo->text_hash = nplusone_text_hash(pstate->p_sourcetext, query, jstate);
		if (pstate->p_paramref_hook == NULL &&
			!nplusone_same_text_as_last(query->queryId, memo->text_hash) &&
			!nplusone_live_parent(query->queryId, GetCurrentStatementStartTimestamp()))
			return;				/* the cheap path: the values cannot matter */
	}
	/* else no jumble state or no text: identified by the values collected here */
	nplusone_collect(query, memo);
}

/* A statement sent by the client starts: loops inside it report it as their parent */
void
pk_nplusone_note_toplevel(uint64 queryid)
{
	nplusone_top_queryid = queryid;
	nplusone_statements_started++;
}

/* perfkit's own function runs loops: ignore them until the client's statement ends */
void
pk_nplusone_quiet(void)
{
	nplusone_quiet_statement = nplusone_statements_started;
}

/* Add a hash to a parent's value set */
static void
nplusone_parent_add(NplusoneParent *p, uint32 hash)
{
	uint32		i = hash & (NPLUSONE_VALUES - 1);

	if (p->nvalues >= NPLUSONE_VALUES_FILL)
		return;
	while (p->values[i] != 0)
	{
		if (p->values[i] == hash)
			return;
		i = (i + 1) & (NPLUSONE_VALUES - 1);
	}
	p->values[i] = hash;
	p->used[p->nvalues++] = (uint16) i;
}

/* True when the parent returned a value with this hash */
static bool
nplusone_parent_has(const NplusoneParent *p, uint32 hash)
{
	uint32		i = hash & (NPLUSONE_VALUES - 1);

	while (p->values[i] != 0)
	{
		if (p->values[i] == hash)
			return true;
		i = (i + 1) & (NPLUSONE_VALUES - 1);
	}
	return false;
}

/* Tap: hash the key-like columns of the first rows, then pass the row on */
static bool
nplusone_tap_receive(TupleTableSlot *slot, DestReceiver *self)
{
	NplusoneTap	   *tap = (NplusoneTap *) self;
	NplusoneParent   *p = tap->parent;

	if (p->generation == tap->generation && p->rows_seen++ < NPLUSONE_CAPTURE_ROWS)
	{
		TupleDesc	desc = slot->tts_tupleDescriptor;
		int			ncols = Min(desc->natts, NPLUSONE_CAPTURE_COLS);
		uint32		hash;

		slot_getsomeattrs(slot, ncols);
		for (int i = 0; i < ncols; i++)
			if (!slot->tts_isnull[i] &&
				nplusone_hash_key(slot->tts_values[i], TupleDescAttr(desc, i)->atttypid, &hash))
				nplusone_parent_add(p, hash);
	}
	return tap->inner->receiveSlot(slot, tap->inner);
}

/* Tap: forward startup */
static void
nplusone_tap_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
	NplusoneTap	   *tap = (NplusoneTap *) self;

	tap->inner->rStartup(tap->inner, operation, typeinfo);
}

/* Tap: forward shutdown */
static void
nplusone_tap_shutdown(DestReceiver *self)
{
	NplusoneTap	   *tap = (NplusoneTap *) self;

	tap->inner->rShutdown(tap->inner);
}

/* Tap: nothing to free, the taps are static */
static void
nplusone_tap_destroy(DestReceiver *self)
{
}

/* Set the callbacks of the static taps once */
static void
nplusone_init_taps(void)
{
	for (int i = 0; i < NPLUSONE_LEVELS; i++)
	{
		nplusone_taps[i].pub.receiveSlot = nplusone_tap_receive;
		nplusone_taps[i].pub.rStartup = nplusone_tap_startup;
		nplusone_taps[i].pub.rShutdown = nplusone_tap_shutdown;
		nplusone_taps[i].pub.rDestroy = nplusone_tap_destroy;
	}
}

/* Forget every loop that was following a parent slot */
static void
nplusone_close_trackers_of(int parent)
{
	for (uint32 m = nplusone_tracker_mask; m != 0; m &= m - 1)
	{
		int			i = pg_rightmost_one_pos32(m);

		if (nplusone_trackers[i].parent == parent)
			nplusone_tracker_mask &= ~((uint32) 1 << i);
	}
}

/* The parent slot a new execution of queryid fills: its previous one, a free one, else the least recently active */
static int
nplusone_parent_slot(uint64 queryid)
{
	int			free_slot = -1;
	int			oldest = 0;

	for (int i = 0; i < NPLUSONE_PARENTS; i++)
	{
		if (nplusone_parents[i].queryid == queryid)
			return i;
		if (free_slot < 0 && nplusone_parents[i].queryid == 0)
			free_slot = i;
		if (nplusone_parents[i].last_activity < nplusone_parents[oldest].last_activity)
			oldest = i;
	}
	return free_slot >= 0 ? free_slot : oldest;
}

/*
 * ExecutorRun: for a statement that returns rows, make it a parent and
 * return a tap to put in front of its destination (NULL otherwise).
 */
DestReceiver *
pk_nplusone_tap(QueryDesc *queryDesc, uint64 queryid)
{
	NplusoneParent   *p;
	int			slot = -1;
	NplusoneTap	   *tap;

	if (!nplusone_active() || queryid == UINT64CONST(0) || queryDesc->dest == NULL ||
		pk_nesting_level >= NPLUSONE_LEVELS ||
		!(queryDesc->operation == CMD_SELECT || queryDesc->plannedstmt->hasReturning))
		return NULL;

	/* a cursor fetched again keeps filling its slot */
	for (uint32 m = nplusone_owned_mask; m != 0; m &= m - 1)
	{
		int			i = pg_rightmost_one_pos32(m);

		if (nplusone_parents[i].owner == queryDesc && nplusone_parents[i].queryid == queryid)
		{
			slot = i;
			break;
		}
	}
	if (slot < 0)
	{
		slot = nplusone_parent_slot(queryid);
		nplusone_close_trackers_of(slot);
		p = &nplusone_parents[slot];
		for (int i = 0; i < p->nvalues; i++)
			p->values[p->used[i]] = 0;
		p->nvalues = 0;
		nplusone_parent_mask |= (uint32) 1 << slot;
		p->rows_seen = 0;
		p->queryid = queryid;
		p->report_queryid = pk_nesting_level == 0 ? queryid : nplusone_top_queryid;
		p->generation = ++nplusone_generation;
		p->owner = queryDesc;
		nplusone_owned_mask |= (uint32) 1 << slot;
		p->lxid = PK_MY_LXID;
		p->in_block = IsTransactionBlock();
		p->last_activity = GetCurrentStatementStartTimestamp();
	}
	p = &nplusone_parents[slot];

	tap = &nplusone_taps[pk_nesting_level];
	tap->pub.mydest = queryDesc->dest->mydest;
	tap->inner = queryDesc->dest;
	tap->parent = p;
	tap->generation = p->generation;
	return &tap->pub;
}

/*
 * PL/pgSQL parameters of an execution, fetched as the statement's cached
 * shape says: their hashes into hash[], and into keep when not NULL; returns
 * how many.
 */
static int
nplusone_fetched_values(ParamListInfo params, uint64 queryid, uint32 *hash, NplusoneValues *keep)
{
	NplusoneShape *shape = &nplusone_shapes[queryid % NPLUSONE_SHAPES];
	int			n = 0;

	if (keep != NULL)
		keep->n = 0;
	if (shape->queryid != queryid)
		return 0;
	for (int i = 0; i < shape->nparams && n < NPLUSONE_MAX_POS; i++)
	{
		ParamExternData work;
		ParamExternData *prm;

		/* speculative: never raise an error, e.g. for an unassigned record */
		prm = params->paramFetch(params, shape->paramids[i], true, &work);
		if (prm != NULL && !prm->isnull && OidIsValid(prm->ptype) &&
			nplusone_hash_datum(prm->value, prm->ptype, &hash[n], keep ? &keep->v[n] : NULL))
			n++;
	}
	if (keep != NULL)
	{
		for (int i = 0; i < n; i++)
			keep->v[i].hash = hash[i];
		keep->n = n;
	}
	return n;
}

/* The values of this execution: bind parameters, fetched ones, or what parsing noted of its constants */
static inline void
nplusone_execution_values(QueryDesc *queryDesc, uint64 queryid, int level, NplusoneExec *out)
{
	ParamListInfo params = queryDesc->params;

	out->n = 0;
	out->by_text = false;
	out->sample = NULL;
	if (params != NULL && params->paramFetch == NULL && params->numParams > 0)
	{
		for (int i = 0; i < params->numParams && out->n < NPLUSONE_MAX_POS; i++)
		{
			ParamExternData *prm = &params->params[i];

			if (!prm->isnull && OidIsValid(prm->ptype) &&
				nplusone_hash_key(prm->value, prm->ptype, &out->hash[out->n]))
				out->n++;
		}
		return;
	}
	if (params != NULL && params->paramFetch != NULL)
	{
		out->n = nplusone_fetched_values(params, queryid, out->hash, NULL);
		return;
	}
	if (level < NPLUSONE_LEVELS && nplusone_parse_memo[level].queryid == queryid)
	{
		NplusoneParseMemo *memo = &nplusone_parse_memo[level];

		out->by_text = memo->by_text;
		out->text_hash = memo->text_hash;
		out->n = memo->values.n;
		for (int i = 0; i < out->n; i++)
			out->hash[i] = memo->values.v[i].hash;
		/* the memo's values stay put until the next parse at this level */
		out->sample = &memo->values;
		memo->queryid = 0;
	}
}

/* "$1 = '42', $2 = 'abc'" from kept values */
static void
nplusone_format_values(const NplusoneValues *vals, char *buf, size_t size)
{
	StringInfoData s;

	initStringInfo(&s);
	for (int i = 0; i < vals->n; i++)
	{
		const NplusoneValue *v = &vals->v[i];

		appendStringInfo(&s, "%s$%d = '", i > 0 ? ", " : "", i + 1);
		if (v->is_int)
			appendStringInfo(&s, INT64_FORMAT, v->ival);
		else
			appendBinaryStringInfo(&s, v->text, v->tlen);
		appendStringInfoChar(&s, '\'');
	}
	strlcpy(buf, s.data, size);
	pfree(s.data);
}

/* Full pattern table: forget the pattern seen longest ago (why not as stats.c evicts: see there); caller holds the lock exclusive */
static void
nplusone_evict_oldest_locked(void)
{
	HASH_SEQ_STATUS hs;
	PkNplusoneEntry *it;
	PkNplusoneEntry *oldest = NULL;

	hash_seq_init(&hs, pk_nplusone_hash);
	while ((it = hash_seq_search(&hs)) != NULL)
		if (oldest == NULL || it->last_seen < oldest->last_seen)
			oldest = it;
	if (oldest != NULL)
		hash_search(pk_nplusone_hash, &oldest->key, HASH_REMOVE, NULL);
}

/* A sample of the execution's parameters for a new pattern, e.g. "$1 = '42'" */
static void
nplusone_sample(QueryDesc *queryDesc, uint64 queryid, const NplusoneExec *x, char *buf, size_t size)
{
	ParamListInfo params = queryDesc->params;

	if (params != NULL && params->paramFetch == NULL && params->numParams > 0)
	{
		char	   *s = BuildParamLogString(params, NULL, NPLUSONE_TEXT_KEEP);

		strlcpy(buf, s ? s : "", size);
	}
	else if (params != NULL && params->paramFetch != NULL)
	{
		NplusoneValues vals;
		uint32		hash[NPLUSONE_MAX_POS];

		/* fetched again, now keeping them: a new pattern is rare */
		(void) nplusone_fetched_values(params, queryid, hash, &vals);
		nplusone_format_values(&vals, buf, size);
	}
	else if (x->sample != NULL)
		nplusone_format_values(x->sample, buf, size);
	else
		buf[0] = '\0';
}

/* Fill a new pattern: application, a sample of the parameters, zero figures */
static void
nplusone_init_entry(PkNplusoneEntry *e, const char *sample, const char *appname, TimestampTz now)
{
	SpinLockInit(&e->mutex);
	strlcpy(e->application_name, appname, NAMEDATALEN);
	strlcpy(e->sample_params, sample, sizeof(e->sample_params));
	e->detections = 0;
	e->last_repeats = 0;
	e->max_repeats = 0;
	e->total_repeats = 0;
	e->total_time = 0;
	e->first_seen = now;
}

/* The server-log line of a newly detected pattern */
static void
nplusone_log_detection(const NplusoneTracker *t, QueryDesc *queryDesc)
{
	int			location = queryDesc->plannedstmt->stmt_location;
	int			len = queryDesc->plannedstmt->stmt_len;
	const char *text = CleanQuerytext(queryDesc->sourceText ? queryDesc->sourceText : "",
									  &location, &len);

	ereport(pk_nplusone_log_level,
			(errmsg("perfkit: %s detected: %d executions of query %lld after query %lld",
					t->identical ? "repeated identical statement" : "N+1 loop",
					t->count, (long long) t->queryid, (long long) t->parent_report_queryid),
			 errdetail("Repeated statement: %.*s", len, text),
			 errhidestmt(true)));
}

/* Count one more execution of a loop in shared memory, creating the pattern if new */
static void
nplusone_publish(NplusoneTracker *t, bool new_loop, int repeats, double time, QueryDesc *queryDesc,
				 const NplusoneExec *x)
{
	PkNplusoneKey	key;
	PkNplusoneEntry *e;
	bool		created = false;
	TimestampTz now = GetCurrentTimestamp();
	const char *appname = application_name ? application_name : "";

	memset(&key, 0, sizeof(key));
	key.userid = GetUserId();
	key.dbid = MyDatabaseId;
	key.parent_queryid = t->parent_report_queryid;
	key.queryid = t->queryid;
	key.appname_hash = hash_bytes((const unsigned char *) appname, strlen(appname));
	key.confirmed = !t->identical;

	LWLockAcquire(pk_nplusone_state->lock, LW_SHARED);
	e = hash_search(pk_nplusone_hash, &key, HASH_FIND, NULL);
	if (e == NULL)
	{
		bool		found;
		char		sample[sizeof(e->sample_params)];

		LWLockRelease(pk_nplusone_state->lock);
		/* built outside the lock: it may fetch parameters */
		nplusone_sample(queryDesc, t->queryid, x, sample, sizeof(sample));
		LWLockAcquire(pk_nplusone_state->lock, LW_EXCLUSIVE);
		if (hash_get_num_entries(pk_nplusone_hash) >= pk_nplusone_max_patterns &&
			hash_search(pk_nplusone_hash, &key, HASH_FIND, NULL) == NULL)
			nplusone_evict_oldest_locked();
		e = hash_search(pk_nplusone_hash, &key, HASH_ENTER_NULL, &found);
		if (e == NULL)
		{
			LWLockRelease(pk_nplusone_state->lock);
			SpinLockAcquire(&pk_nplusone_state->mutex);
			pk_nplusone_state->dropped++;
			SpinLockRelease(&pk_nplusone_state->mutex);
			return;
		}
		if (!found)
		{
			created = true;
			nplusone_init_entry(e, sample, appname, now);
		}
	}

	SpinLockAcquire(&e->mutex);
	if (new_loop)
	{
		/* the loop just crossed the threshold: a new detection */
		e->detections++;
		e->last_repeats = 0;
	}
	e->last_repeats += repeats;
	e->max_repeats = Max(e->max_repeats, e->last_repeats);
	e->total_repeats += repeats;
	e->total_time += time;
	e->last_seen = now;
	SpinLockRelease(&e->mutex);
	LWLockRelease(pk_nplusone_state->lock);

	if (created)
		nplusone_log_detection(t, queryDesc);
}

/* Find the tracker of a (parent, statement) loop, or start one: in the last free slot, else the stalest */
static NplusoneTracker *
nplusone_tracker(int parent, uint32 generation, uint64 queryid, bool identical)
{
	uint32		free_mask = ~nplusone_tracker_mask & (((uint32) 1 << NPLUSONE_TRACKERS) - 1);
	int			victim = 0;

	for (uint32 m = nplusone_tracker_mask; m != 0; m &= m - 1)
	{
		NplusoneTracker  *t = &nplusone_trackers[pg_rightmost_one_pos32(m)];

		if (t->identical == identical && t->queryid == queryid &&
			(identical || (t->parent == parent && t->parent_generation == generation)))
			return t;
	}
	if (free_mask != 0)
		victim = pg_leftmost_one_pos32(free_mask);
	else
		for (int i = 1; i < NPLUSONE_TRACKERS; i++)
			if (nplusone_trackers[i].last_ts < nplusone_trackers[victim].last_ts)
				victim = i;
	memset(&nplusone_trackers[victim], 0, sizeof(NplusoneTracker));
	nplusone_tracker_mask |= (uint32) 1 << victim;
	nplusone_trackers[victim].identical = identical;
	nplusone_trackers[victim].parent = parent;
	nplusone_trackers[victim].parent_generation = generation;
	nplusone_trackers[victim].queryid = queryid;
	return &nplusone_trackers[victim];
}

/* One step of a loop: count it, and publish once it is long enough */
static void
nplusone_step(NplusoneTracker *t, double duration_ms, TimestampTz now, QueryDesc *queryDesc,
			  const NplusoneExec *x)
{
	if (t->count > 0 &&
		(!nplusone_same_loop(t->lxid, t->in_block, t->last_ts, now) ||
		 (t->identical && nplusone_seq - t->last_seq > NPLUSONE_IDENTICAL_SPAN)))
	{
		t->count = 0;
		t->time = 0;
		t->published = false;
		t->quiet = false;
	}
	/* a run of identical executions includes the first one, seen before it was a run */
	if (t->identical && t->count == 0)
		t->count = 1;
	t->count++;
	t->time += duration_ms;
	t->lxid = PK_MY_LXID;
	t->in_block = IsTransactionBlock();
	t->last_ts = now;
	t->last_seq = nplusone_seq;

	if (t->published)
	{
		if (!t->quiet)
			nplusone_publish(t, false, 1, duration_ms, queryDesc, x);
	}
	else if (t->count >= pk_nplusone_min_repeats)
	{
		/* loops of perfkit's own functions (perfkit.report()) are not the user's */
		t->quiet = nplusone_quiet_statement == nplusone_statements_started;
		if (!t->quiet)
			nplusone_publish(t, true, t->count, t->time, queryDesc, x);
		t->published = true;
	}
}

/* True when this execution is identified as the statement's previous one; remembers it */
static bool
nplusone_same_as_last(uint64 queryid, const NplusoneExec *x)
{
	NplusoneLast *last = &nplusone_last[queryid % NPLUSONE_SHAPES];
	bool		same;

	if (x->by_text)
	{
		same = last->queryid == queryid && last->by_text && last->hash[0] == x->text_hash;
		last->hash[0] = x->text_hash;
		last->n = 1;
	}
	else
	{
		same = last->queryid == queryid && !last->by_text && last->n == x->n;
		for (int i = 0; i < x->n; i++)
		{
			same = same && last->hash[i] == x->hash[i];
			last->hash[i] = x->hash[i];
		}
		last->n = x->n;
	}
	last->queryid = queryid;
	last->by_text = x->by_text;
	return same;
}

/*
 * A statement with new values may be a step of a loop: end the loops of it
 * that it does not continue, and count one step of each it does.
 */
static pg_noinline void
nplusone_follow_loops(QueryDesc *queryDesc, uint64 queryid, double duration_ms, TimestampTz now,
					  const NplusoneExec *x)
{
	int			ntrackers = 0;
	int			trackers[NPLUSONE_TRACKERS];

	/* new values: any run of identical repeats of this statement is over */
	for (uint32 m = nplusone_tracker_mask; m != 0; m &= m - 1)
	{
		int			i = pg_rightmost_one_pos32(m);

		if (nplusone_trackers[i].queryid == queryid)
		{
			if (nplusone_trackers[i].identical)
				nplusone_tracker_mask &= ~((uint32) 1 << i);
			else
				trackers[ntrackers++] = i;
		}
	}
	if (ntrackers == 0 && (x->n == 0 || !nplusone_live_parent(queryid, now)))
		return;

	/* slots never filled have no values and no loops */
	for (uint32 pm = nplusone_parent_mask; pm != 0; pm &= pm - 1)
	{
		int			p = pg_rightmost_one_pos32(pm);
		NplusoneParent   *parent = &nplusone_parents[p];
		bool		hit = false;
		NplusoneTracker  *t;

		if (parent->queryid != queryid && parent->nvalues > 0 &&
			nplusone_same_loop(parent->lxid, parent->in_block, parent->last_activity, now))
		{
			for (int i = 0; i < x->n && !hit; i++)
				hit = nplusone_parent_has(parent, x->hash[i]);
		}
		if (!hit)
		{
			/* every step of a loop consumes the parent's values: a miss ends it */
			for (int i = 0; i < ntrackers; i++)
				if (nplusone_trackers[trackers[i]].parent == p)
					nplusone_tracker_mask &= ~((uint32) 1 << trackers[i]);
			continue;
		}

		t = nplusone_tracker(p, parent->generation, queryid, false);
		t->parent_report_queryid = parent->report_queryid;
		nplusone_step(t, duration_ms, now, queryDesc, x);
		parent->last_activity = now;
		parent->lxid = PK_MY_LXID;
		parent->in_block = IsTransactionBlock();
	}
}

/*
 * ExecutorEnd: close the statement's own parent slot, then follow the loops
 * it may be a step of; the cheap path leaves after comparing its values'
 * identity with the previous execution's.
 */
void
pk_nplusone_statement_end(QueryDesc *queryDesc, uint64 queryid, double duration_ms, int level,
					   TimestampTz now)
{
	NplusoneExec x;

	if (!nplusone_active() || queryid == UINT64CONST(0))
		return;
	nplusone_seq++;

	for (uint32 m = nplusone_owned_mask; m != 0; m &= m - 1)
	{
		int			i = pg_rightmost_one_pos32(m);

		if (nplusone_parents[i].owner == queryDesc)
		{
			nplusone_parents[i].owner = NULL;
			nplusone_parents[i].last_activity = now;
			nplusone_owned_mask &= ~((uint32) 1 << i);
		}
	}

	nplusone_execution_values(queryDesc, queryid, level, &x);

	if (nplusone_same_as_last(queryid, &x))
		nplusone_step(nplusone_tracker(-1, 0, queryid, true), duration_ms, now, queryDesc, &x);
	else if (nplusone_tracker_mask != 0 || (x.n > 0 && nplusone_live_parent(queryid, now)))
		nplusone_follow_loops(queryDesc, queryid, duration_ms, now, &x);
}

/* Forget every pattern */
void
pk_nplusone_reset(void)
{
	HASH_SEQ_STATUS hs;
	PkNplusoneEntry *e;

	LWLockAcquire(pk_nplusone_state->lock, LW_EXCLUSIVE);
	hash_seq_init(&hs, pk_nplusone_hash);
	while ((e = hash_seq_search(&hs)) != NULL)
		hash_search(pk_nplusone_hash, &e->key, HASH_REMOVE, NULL);
	SpinLockAcquire(&pk_nplusone_state->mutex);
	pk_nplusone_state->dropped = 0;
	SpinLockRelease(&pk_nplusone_state->mutex);
	LWLockRelease(pk_nplusone_state->lock);
}

/* ---------------------------------------------------------------------
 * SQL-callable functions
 * ---------------------------------------------------------------------
 */

PG_FUNCTION_INFO_V1(perfkit_n_plus_one);
PG_FUNCTION_INFO_V1(perfkit_reset_n_plus_one);
PG_FUNCTION_INFO_V1(perfkit_nplusone_quiet);

#define PK_NPLUSONE_COLS	14

/* Rows of perfkit.n_plus_one (texts and the suggestion are added in SQL) */
Datum
perfkit_n_plus_one(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			viewer = GetUserId();
	bool		read_all = has_privs_of_role(viewer, ROLE_PG_READ_ALL_STATS);
	HASH_SEQ_STATUS hs;
	PkNplusoneEntry *e;

	pk_require_preloaded(pk_nplusone_state != NULL);
	InitMaterializedSRF(fcinfo, 0);

	LWLockAcquire(pk_nplusone_state->lock, LW_SHARED);
	hash_seq_init(&hs, pk_nplusone_hash);
	while ((e = hash_seq_search(&hs)) != NULL)
	{
		Datum		values[PK_NPLUSONE_COLS];
		bool		nulls[PK_NPLUSONE_COLS];
		PkNplusoneEntry c;
		int			i = 0;

		SpinLockAcquire(&e->mutex);
		memcpy(&c, e, sizeof(c));
		SpinLockRelease(&e->mutex);

		memset(nulls, 0, sizeof(nulls));
		values[i++] = ObjectIdGetDatum(c.key.userid);
		values[i++] = ObjectIdGetDatum(c.key.dbid);
		values[i++] = CStringGetTextDatum(c.application_name);
		values[i++] = Int64GetDatum((int64) c.key.parent_queryid);
		nulls[i - 1] = c.key.parent_queryid == 0;
		values[i++] = Int64GetDatum((int64) c.key.queryid);
		values[i++] = Int64GetDatum(c.detections);
		values[i++] = Int32GetDatum(c.last_repeats);
		values[i++] = Int32GetDatum(c.max_repeats);
		values[i++] = Int64GetDatum(c.total_repeats);
		values[i++] = Float8GetDatum(c.total_time);
		values[i++] = BoolGetDatum(c.key.confirmed);
		if (read_all || c.key.userid == viewer)
			values[i] = CStringGetTextDatum(c.sample_params);
		else
			nulls[i] = true;
		i++;
		values[i++] = TimestampTzGetDatum(c.first_seen);
		values[i++] = TimestampTzGetDatum(c.last_seen);
		Assert(i == PK_NPLUSONE_COLS);

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	LWLockRelease(pk_nplusone_state->lock);

	return (Datum) 0;
}

/* perfkit.reset_n_plus_one(): forget every detected pattern */
Datum
perfkit_reset_n_plus_one(PG_FUNCTION_ARGS)
{
	pk_require_preloaded(pk_nplusone_state != NULL);
	pk_nplusone_reset();
	PG_RETURN_VOID();
}

/* perfkit._nplusone_quiet(): the loops of the running client statement are perfkit's own */
Datum
perfkit_nplusone_quiet(PG_FUNCTION_ARGS)
{
	pk_require_preloaded(pk_nplusone_state != NULL);
	pk_nplusone_quiet();
	PG_RETURN_VOID();
}
