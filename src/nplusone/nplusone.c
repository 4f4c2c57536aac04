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
 * Per backend, all in fixed-size arrays (O(1) work per statement):
 *	- parents: the last NP_PARENTS row-returning statements, each with a
 *	  small open-addressing set of hashes of the values in its first
 *	  NP_CAPTURE_ROWS rows, filled by a DestReceiver tap while rows flow;
 *	- trackers: NP_TRACKERS (parent, repeated statement) loops in progress;
 *	- per nesting level, the constants of the statement just parsed, and a
 *	  cache of which PL/pgSQL parameters each statement reads.
 * Nothing here allocates per statement beyond the executor's own memory.
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
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/guc.h"

#include "nplusone/nplusone.h"
#include "stats/stats.h"

#define NP_MAX_POS			8	/* parameter positions considered per statement */
#define NP_TEXT_KEEP		32	/* bytes of a text value kept for the sample */
#define NP_PARENTS			8	/* row-returning statements remembered */
#define NP_VALUES			256 /* value hashes per parent (power of two) */
#define NP_VALUES_FILL		192 /* ... of which at most this many are used */
#define NP_CAPTURE_ROWS		200 /* rows of a parent whose values are hashed */
#define NP_CAPTURE_COLS		16	/* columns of a parent whose values are hashed */
#define NP_TRACKERS			16	/* loops followed at once */
#define NP_LEVELS			8	/* nesting levels with their own parse memo */
#define NP_SHAPES			64	/* statements whose PL/pgSQL parameters are cached */
#define NP_IDENTICAL_SPAN	4	/* statements between two identical repeats, at most */

#if PG_VERSION_NUM >= 170000
#define NP_CURRENT_LXID		(MyProc->vxid.lxid)
#else
#define NP_CURRENT_LXID		(MyProc->lxid)
#endif

/* One parameter value: its hash, and enough of it to show in a sample */
typedef struct NpValue
{
	uint32		hash;
	bool		is_int;
	int64		ival;
	int			tlen;
	char		text[NP_TEXT_KEEP];
} NpValue;

/* The parameter values of one execution */
typedef struct NpValues
{
	int			n;
	NpValue		v[NP_MAX_POS];
} NpValues;

/* A recent row-returning statement and the values it returned */
typedef struct NpParent
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
	uint32		values[NP_VALUES];	/* open addressing, 0 = empty */
	uint16		used[NP_VALUES_FILL];	/* positions filled, to empty the set cheaply */
} NpParent;

/* A loop being followed: a repeated statement after a parent */
typedef struct NpTracker
{
	bool		used;
	bool		identical;		/* same values every time (no parent) */
	int			parent;			/* index in np_parents, -1 for identical */
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
	uint64		last_seq;		/* np_seq at the latest execution */
} NpTracker;

/* Constants of the statement just parsed at one nesting level */
typedef struct NpParseMemo
{
	uint64		queryid;
	NpValues	values;
} NpParseMemo;

/* Which PL/pgSQL (fetched) parameters a statement reads */
typedef struct NpShape
{
	uint64		queryid;
	int			nparams;
	int			paramids[NP_MAX_POS];
} NpShape;

/* The DestReceiver that hashes a parent's values on their way out */
typedef struct NpTap
{
	DestReceiver pub;
	DestReceiver *inner;		/* the real destination */
	NpParent   *parent;
	uint32		generation;
} NpTap;

PkNplusShared *pk_nplus_state = NULL;
HTAB	   *pk_nplus_hash = NULL;

static NpParent np_parents[NP_PARENTS];
static NpTracker np_trackers[NP_TRACKERS];
static NpParseMemo np_parse_memo[NP_LEVELS];

/*
 * One tap per nesting level, reused: a tap lives only while its ExecutorRun
 * call runs (hooks.c restores the destination after it), and any ExecutorRun
 * started meanwhile is one level deeper, so no allocation per statement.
 */
static NpTap np_taps[NP_LEVELS];
static NpShape np_shapes[NP_SHAPES];
static uint64 np_top_queryid = 0;	/* client statement now running */
static uint64 np_statements_started = 0;	/* client statements started in this backend */
static uint64 np_quiet_statement = 0;	/* the one of them whose loops are perfkit's own */
static uint32 np_generation = 0;
static uint64 np_seq = 0;			/* statements ended in this backend */

/* Shared memory needed for the patterns */
Size
pk_nplus_shmem_size(void)
{
	return add_size(MAXALIGN(sizeof(PkNplusShared)),
					hash_estimate_size(pk_nplus_max_patterns, sizeof(PkNplusEntry)));
}

/* Attach to (or create) the pattern table; caller holds AddinShmemInitLock */
void
pk_nplus_shmem_init(void)
{
	HASHCTL		info;
	bool		found;

	pk_nplus_state = ShmemInitStruct("perfkit n+1 state", sizeof(PkNplusShared), &found);
	if (!found)
	{
		pk_nplus_state->lock = &(GetNamedLWLockTranche("perfkit"))[2].lock;
		SpinLockInit(&pk_nplus_state->mutex);
		pk_nplus_state->dropped = 0;
	}
	memset(&info, 0, sizeof(info));
	info.keysize = sizeof(PkNplusKey);
	info.entrysize = sizeof(PkNplusEntry);
	pk_nplus_hash = ShmemInitHash("perfkit n+1 patterns",
								  pk_nplus_max_patterns, pk_nplus_max_patterns,
								  &info, HASH_ELEM | HASH_BLOBS);
}

/* True when detection runs in this process */
static inline bool
np_active(void)
{
	return pk_nplus_enabled && pk_nplus_state != NULL && !IsParallelWorker();
}

/*
 * Fill *out from a datum of a key-like type (integers, text, uuid); false
 * for other types and for values we will not detoast.
 */
static bool
np_value_from_datum(Datum d, Oid type, NpValue *out)
{
	int64		i;
	const char *p;
	int			len;

	switch (type)
	{
		case INT2OID:
			i = DatumGetInt16(d);
			break;
		case INT4OID:
			i = DatumGetInt32(d);
			break;
		case INT8OID:
			i = DatumGetInt64(d);
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
			p = (const char *) DatumGetPointer(d);
			len = 16;
			out->is_int = false;
			out->hash = hash_bytes((const unsigned char *) p, len);
			out->tlen = 0;
			return true;
		default:
			return false;
	}
	/* integers of every width hash alike, so an int4 key matches an int8 parameter */
	out->is_int = true;
	out->ival = i;
	out->hash = (murmurhash32((uint32) i) ^ murmurhash32((uint32) ((uint64) i >> 32) + 0x9e3779b9)) | 1;
	return true;

bytes:
	out->is_int = false;
	out->hash = hash_bytes((const unsigned char *) p, len) | 1;
	out->tlen = Min(len, NP_TEXT_KEEP);
	memcpy(out->text, p, out->tlen);
	return true;
}

/* Walker: collect literal constants and PL/pgSQL parameter references */
typedef struct NpCollect
{
	NpValues   *consts;
	NpShape    *shape;
} NpCollect;

static bool
np_collect_walker(Node *node, NpCollect *c)
{
	if (node == NULL)
		return false;
	if (IsA(node, Const))
	{
		Const	   *k = (Const *) node;

		/* only constants written in the text (implicit ones have no location) */
		if (k->location >= 0 && !k->constisnull && c->consts->n < NP_MAX_POS &&
			np_value_from_datum(k->constvalue, k->consttype, &c->consts->v[c->consts->n]))
			c->consts->n++;
		return false;
	}
	if (IsA(node, Param))
	{
		Param	   *p = (Param *) node;

		if (p->paramkind == PARAM_EXTERN && c->shape->nparams < NP_MAX_POS)
		{
			for (int i = 0; i < c->shape->nparams; i++)
				if (c->shape->paramids[i] == p->paramid)
					return false;
			c->shape->paramids[c->shape->nparams++] = p->paramid;
		}
		return false;
	}
	if (IsA(node, Query))
		return query_tree_walker((Query *) node, np_collect_walker, c, 0);
	return expression_tree_walker(node, np_collect_walker, c);
}

/* post_parse_analyze: remember the statement's constants and parameter references */
void
pk_nplus_note_parse(Query *query, int level)
{
	NpParseMemo *memo;
	NpShape		shape;
	NpCollect	c;

	if (!np_active() || query->queryId == UINT64CONST(0) || query->utilityStmt != NULL ||
		level >= NP_LEVELS)
		return;

	memo = &np_parse_memo[level];
	memo->queryid = query->queryId;
	memo->values.n = 0;
	memset(&shape, 0, sizeof(shape));
	c.consts = &memo->values;
	c.shape = &shape;
	(void) query_tree_walker(query, np_collect_walker, &c, 0);

	if (shape.nparams > 0)
	{
		shape.queryid = query->queryId;
		np_shapes[query->queryId % NP_SHAPES] = shape;
	}
}

/* A statement sent by the client starts: loops inside it report it as their parent */
void
pk_nplus_note_toplevel(uint64 queryid)
{
	np_top_queryid = queryid;
	np_statements_started++;
}

/* perfkit's own function runs loops: ignore them until the client's statement ends */
void
pk_nplus_quiet(void)
{
	np_quiet_statement = np_statements_started;
}

/* Add a hash to a parent's value set */
static void
np_parent_add(NpParent *p, uint32 hash)
{
	uint32		i = hash & (NP_VALUES - 1);

	if (p->nvalues >= NP_VALUES_FILL)
		return;
	while (p->values[i] != 0)
	{
		if (p->values[i] == hash)
			return;
		i = (i + 1) & (NP_VALUES - 1);
	}
	p->values[i] = hash;
	p->used[p->nvalues++] = (uint16) i;
}

/* True when the parent returned a value with this hash */
static bool
np_parent_has(const NpParent *p, uint32 hash)
{
	uint32		i = hash & (NP_VALUES - 1);

	while (p->values[i] != 0)
	{
		if (p->values[i] == hash)
			return true;
		i = (i + 1) & (NP_VALUES - 1);
	}
	return false;
}

/* Tap: hash the key-like columns of the first rows, then pass the row on */
static bool
np_tap_receive(TupleTableSlot *slot, DestReceiver *self)
{
	NpTap	   *tap = (NpTap *) self;
	NpParent   *p = tap->parent;

	if (p->generation == tap->generation && p->rows_seen++ < NP_CAPTURE_ROWS)
	{
		TupleDesc	desc = slot->tts_tupleDescriptor;
		int			ncols = Min(desc->natts, NP_CAPTURE_COLS);

		slot_getsomeattrs(slot, ncols);
		for (int i = 0; i < ncols; i++)
		{
			NpValue		v;

			if (!slot->tts_isnull[i] &&
				np_value_from_datum(slot->tts_values[i], TupleDescAttr(desc, i)->atttypid, &v))
				np_parent_add(p, v.hash);
		}
	}
	return tap->inner->receiveSlot(slot, tap->inner);
}

/* Tap: forward startup */
static void
np_tap_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
	NpTap	   *tap = (NpTap *) self;

	tap->inner->rStartup(tap->inner, operation, typeinfo);
}

/* Tap: forward shutdown */
static void
np_tap_shutdown(DestReceiver *self)
{
	NpTap	   *tap = (NpTap *) self;

	tap->inner->rShutdown(tap->inner);
}

/* Tap: nothing to free, the taps are static */
static void
np_tap_destroy(DestReceiver *self)
{
}

/* Forget every loop that was following a parent slot */
static void
np_close_trackers_of(int parent)
{
	for (int i = 0; i < NP_TRACKERS; i++)
		if (np_trackers[i].used && np_trackers[i].parent == parent)
			np_trackers[i].used = false;
}

/*
 * ExecutorRun: for a statement that returns rows, make it a parent and
 * return a tap to put in front of its destination (NULL otherwise).
 */
DestReceiver *
pk_nplus_tap(QueryDesc *queryDesc, uint64 queryid)
{
	NpParent   *p = NULL;
	int			slot = -1;
	NpTap	   *tap;

	if (!np_active() || queryid == UINT64CONST(0) || queryDesc->dest == NULL ||
		pk_nesting_level >= NP_LEVELS ||
		!(queryDesc->operation == CMD_SELECT || queryDesc->plannedstmt->hasReturning))
		return NULL;

	/* a cursor fetched again keeps filling its slot */
	for (int i = 0; i < NP_PARENTS; i++)
		if (np_parents[i].owner == queryDesc && np_parents[i].queryid == queryid)
		{
			slot = i;
			break;
		}
	if (slot < 0)
	{
		/* the same statement's previous values, else the least recently active */
		for (int i = 0; i < NP_PARENTS && slot < 0; i++)
			if (np_parents[i].queryid == queryid)
				slot = i;
		for (int i = 0; i < NP_PARENTS && slot < 0; i++)
			if (np_parents[i].queryid == 0)
				slot = i;
		if (slot < 0)
		{
			slot = 0;
			for (int i = 1; i < NP_PARENTS; i++)
				if (np_parents[i].last_activity < np_parents[slot].last_activity)
					slot = i;
		}
		np_close_trackers_of(slot);
		p = &np_parents[slot];
		for (int i = 0; i < p->nvalues; i++)
			p->values[p->used[i]] = 0;
		p->nvalues = 0;
		p->rows_seen = 0;
		p->queryid = queryid;
		p->report_queryid = pk_nesting_level == 0 ? queryid : np_top_queryid;
		p->generation = ++np_generation;
		p->owner = queryDesc;
		p->lxid = NP_CURRENT_LXID;
		p->in_block = IsTransactionBlock();
		p->last_activity = GetCurrentStatementStartTimestamp();
	}
	p = &np_parents[slot];

	tap = &np_taps[pk_nesting_level];
	tap->pub.receiveSlot = np_tap_receive;
	tap->pub.rStartup = np_tap_startup;
	tap->pub.rShutdown = np_tap_shutdown;
	tap->pub.rDestroy = np_tap_destroy;
	tap->pub.mydest = queryDesc->dest->mydest;
	tap->inner = queryDesc->dest;
	tap->parent = p;
	tap->generation = p->generation;
	return &tap->pub;
}

/* The parameter values of this execution: bind parameters, fetched ones, or constants */
static void
np_execution_values(QueryDesc *queryDesc, uint64 queryid, int level, NpValues *out)
{
	ParamListInfo params = queryDesc->params;

	out->n = 0;
	if (params != NULL && params->numParams > 0 && params->paramFetch == NULL)
	{
		for (int i = 0; i < params->numParams && out->n < NP_MAX_POS; i++)
		{
			ParamExternData *prm = &params->params[i];

			if (!prm->isnull && OidIsValid(prm->ptype) &&
				np_value_from_datum(prm->value, prm->ptype, &out->v[out->n]))
				out->n++;
		}
		return;
	}
	if (params != NULL && params->paramFetch != NULL)
	{
		NpShape    *shape = &np_shapes[queryid % NP_SHAPES];

		if (shape->queryid != queryid)
			return;
		for (int i = 0; i < shape->nparams && out->n < NP_MAX_POS; i++)
		{
			ParamExternData work;
			ParamExternData *prm;

			/* speculative: never raise an error, e.g. for an unassigned record */
			prm = params->paramFetch(params, shape->paramids[i], true, &work);
			if (prm != NULL && !prm->isnull && OidIsValid(prm->ptype) &&
				np_value_from_datum(prm->value, prm->ptype, &out->v[out->n]))
				out->n++;
		}
		return;
	}
	if (level < NP_LEVELS && np_parse_memo[level].queryid == queryid)
	{
		*out = np_parse_memo[level].values;
		np_parse_memo[level].queryid = 0;
	}
}

/* "$1 = '42', $2 = 'abc'" from kept values */
static void
np_format_values(const NpValues *vals, char *buf, size_t size)
{
	StringInfoData s;

	initStringInfo(&s);
	for (int i = 0; i < vals->n; i++)
	{
		const NpValue *v = &vals->v[i];

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

/* Count one more execution of a loop in shared memory, creating the pattern if new */
static void
np_publish(NpTracker *t, bool new_loop, int repeats, double time, QueryDesc *queryDesc,
		   const NpValues *vals)
{
	PkNplusKey	key;
	PkNplusEntry *e;
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

	LWLockAcquire(pk_nplus_state->lock, LW_SHARED);
	e = hash_search(pk_nplus_hash, &key, HASH_FIND, NULL);
	if (e == NULL)
	{
		bool		found;

		LWLockRelease(pk_nplus_state->lock);
		LWLockAcquire(pk_nplus_state->lock, LW_EXCLUSIVE);
		if (hash_get_num_entries(pk_nplus_hash) >= pk_nplus_max_patterns &&
			hash_search(pk_nplus_hash, &key, HASH_FIND, NULL) == NULL)
		{
			/* full: make room by forgetting the pattern seen longest ago */
			HASH_SEQ_STATUS hs;
			PkNplusEntry *it;
			PkNplusEntry *oldest = NULL;

			hash_seq_init(&hs, pk_nplus_hash);
			while ((it = hash_seq_search(&hs)) != NULL)
				if (oldest == NULL || it->last_seen < oldest->last_seen)
					oldest = it;
			if (oldest != NULL)
				hash_search(pk_nplus_hash, &oldest->key, HASH_REMOVE, NULL);
		}
		e = hash_search(pk_nplus_hash, &key, HASH_ENTER_NULL, &found);
		if (e == NULL)
		{
			LWLockRelease(pk_nplus_state->lock);
			SpinLockAcquire(&pk_nplus_state->mutex);
			pk_nplus_state->dropped++;
			SpinLockRelease(&pk_nplus_state->mutex);
			return;
		}
		if (!found)
		{
			char		sample[sizeof(e->sample_params)];
			ParamListInfo params = queryDesc->params;

			created = true;
			if (params != NULL && params->paramFetch == NULL && params->numParams > 0)
			{
				char	   *s = BuildParamLogString(params, NULL, NP_TEXT_KEEP);

				strlcpy(sample, s ? s : "", sizeof(sample));
			}
			else
				np_format_values(vals, sample, sizeof(sample));

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
	LWLockRelease(pk_nplus_state->lock);

	if (created)
	{
		int			location = queryDesc->plannedstmt->stmt_location;
		int			len = queryDesc->plannedstmt->stmt_len;
		const char *text = CleanQuerytext(queryDesc->sourceText ? queryDesc->sourceText : "",
										  &location, &len);

		ereport(pk_nplus_log_level,
				(errmsg("perfkit: %s detected: %d executions of query %lld after query %lld",
						t->identical ? "repeated identical statement" : "N+1 loop",
						t->count, (long long) t->queryid, (long long) t->parent_report_queryid),
				 errdetail("Repeated statement: %.*s", len, text),
				 errhidestmt(true)));
	}
}

/* Find the tracker of a (parent, statement) loop, or start one in the stalest slot */
static NpTracker *
np_tracker(int parent, uint32 generation, uint64 queryid, bool identical)
{
	NpTracker  *victim = &np_trackers[0];

	for (int i = 0; i < NP_TRACKERS; i++)
	{
		NpTracker  *t = &np_trackers[i];

		if (t->used && t->identical == identical && t->queryid == queryid &&
			(identical || (t->parent == parent && t->parent_generation == generation)))
			return t;
		if (!t->used || (victim->used && t->last_ts < victim->last_ts))
			victim = t;
	}
	memset(victim, 0, sizeof(NpTracker));
	victim->used = true;
	victim->identical = identical;
	victim->parent = parent;
	victim->parent_generation = generation;
	victim->queryid = queryid;
	return victim;
}

/*
 * True when something that happened at "last" in transaction lxid belongs to
 * the same loop as now: the same transaction, or, when it was not inside a
 * transaction block (autocommit), a pause of at most nplusone_max_gap.
 */
static inline bool
np_same_loop(LocalTransactionId lxid, bool in_block, TimestampTz last, TimestampTz now)
{
	return lxid == NP_CURRENT_LXID ||
		(!in_block && (now - last) <= (int64) pk_nplus_max_gap * 1000);
}

/* One step of a loop: count it, and publish once it is long enough */
static void
np_step(NpTracker *t, double duration_ms, TimestampTz now, QueryDesc *queryDesc,
		const NpValues *vals)
{
	if (t->count > 0 &&
		(!np_same_loop(t->lxid, t->in_block, t->last_ts, now) ||
		 (t->identical && np_seq - t->last_seq > NP_IDENTICAL_SPAN)))
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
	t->lxid = NP_CURRENT_LXID;
	t->in_block = IsTransactionBlock();
	t->last_ts = now;
	t->last_seq = np_seq;

	if (t->published)
	{
		if (!t->quiet)
			np_publish(t, false, 1, duration_ms, queryDesc, vals);
	}
	else if (t->count >= pk_nplus_min_repeats)
	{
		/* loops of perfkit's own functions (perfkit.report()) are not the user's */
		t->quiet = np_quiet_statement == np_statements_started;
		if (!t->quiet)
			np_publish(t, true, t->count, t->time, queryDesc, vals);
		t->published = true;
	}
}

/* The hashes of the last values of each statement, to tell repeats with the same values */
typedef struct NpLastValues
{
	uint64		queryid;
	int			n;
	uint32		hash[NP_MAX_POS];
} NpLastValues;

static NpLastValues np_last_values[NP_SHAPES];

/* True when this execution has the values of the statement's previous one; remembers them */
static bool
np_same_as_last(uint64 queryid, const NpValues *vals)
{
	NpLastValues *last = &np_last_values[queryid % NP_SHAPES];
	bool		same = last->queryid == queryid && last->n == vals->n;

	for (int i = 0; i < vals->n; i++)
	{
		same = same && last->hash[i] == vals->v[i].hash;
		last->hash[i] = vals->v[i].hash;
	}
	last->queryid = queryid;
	last->n = vals->n;
	return same;
}

/*
 * ExecutorEnd: close the statement's own parent slot, then follow the loops
 * it may be a step of.
 */
void
pk_nplus_statement_end(QueryDesc *queryDesc, uint64 queryid, double duration_ms, int level,
					   TimestampTz now)
{
	NpValues	vals;
	bool		identical;
	int			ntrackers = 0;
	int			trackers[NP_TRACKERS];

	if (!np_active() || queryid == UINT64CONST(0))
		return;
	np_seq++;

	for (int i = 0; i < NP_PARENTS; i++)
		if (np_parents[i].owner == queryDesc)
		{
			np_parents[i].owner = NULL;
			np_parents[i].last_activity = now;
		}

	np_execution_values(queryDesc, queryid, level, &vals);

	identical = np_same_as_last(queryid, &vals);

	if (identical)
	{
		np_step(np_tracker(-1, 0, queryid, true), duration_ms, now, queryDesc, &vals);
		return;
	}
	/* new values: any run of identical repeats of this statement is over */
	for (int i = 0; i < NP_TRACKERS; i++)
		if (np_trackers[i].used && np_trackers[i].queryid == queryid)
		{
			if (np_trackers[i].identical)
				np_trackers[i].used = false;
			else
				trackers[ntrackers++] = i;
		}

	for (int p = 0; p < NP_PARENTS; p++)
	{
		NpParent   *parent = &np_parents[p];
		bool		hit = false;
		NpTracker  *t;

		if (parent->queryid != 0 && parent->queryid != queryid && parent->nvalues > 0 &&
			np_same_loop(parent->lxid, parent->in_block, parent->last_activity, now))
		{
			for (int i = 0; i < vals.n && !hit; i++)
				hit = np_parent_has(parent, vals.v[i].hash);
		}
		if (!hit)
		{
			/* every step of a loop consumes the parent's values: a miss ends it */
			for (int i = 0; i < ntrackers; i++)
				if (np_trackers[trackers[i]].parent == p)
					np_trackers[trackers[i]].used = false;
			continue;
		}

		t = np_tracker(p, parent->generation, queryid, false);
		t->parent_report_queryid = parent->report_queryid;
		np_step(t, duration_ms, now, queryDesc, &vals);
		parent->last_activity = now;
		parent->lxid = NP_CURRENT_LXID;
		parent->in_block = IsTransactionBlock();
	}
}

/* Forget every pattern */
void
pk_nplus_reset(void)
{
	HASH_SEQ_STATUS hs;
	PkNplusEntry *e;

	LWLockAcquire(pk_nplus_state->lock, LW_EXCLUSIVE);
	hash_seq_init(&hs, pk_nplus_hash);
	while ((e = hash_seq_search(&hs)) != NULL)
		hash_search(pk_nplus_hash, &e->key, HASH_REMOVE, NULL);
	SpinLockAcquire(&pk_nplus_state->mutex);
	pk_nplus_state->dropped = 0;
	SpinLockRelease(&pk_nplus_state->mutex);
	LWLockRelease(pk_nplus_state->lock);
}
