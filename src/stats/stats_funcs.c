/*-------------------------------------------------------------------------
 *
 * stats_funcs.c
 *	  SQL-callable functions behind the perfkit views.
 *
 * Readers first flush their own backend's pending figures (so a session
 * always sees its own statements), then take the table lock in SHARED mode, copy each entry's counters
 * under its spinlock and compute percentiles from the copy, so a reader
 * never holds a spinlock for longer than a memcpy.  Query texts of other
 * roles are returned as NULL unless the caller has the privileges of
 * pg_read_all_stats, as pg_stat_statements does.
 *
 * perfkit._top_statements(n), made for frequent scrapes by monitoring,
 * reads only the total time of each entry during its walk, keeps the n
 * largest in a bounded heap (O(entries * log n), no sort of the table, no
 * text, nothing written to a tuplestore under the lock), then copies the
 * counters of those n alone.  perfkit._top_statements_histogram(n, bounds)
 * chooses the same way and gives their histograms as cumulative counts.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "catalog/pg_authid.h"
#include "funcapi.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "stats/stats_internal.h"

PG_FUNCTION_INFO_V1(perfkit_statements);
PG_FUNCTION_INFO_V1(perfkit_info);
PG_FUNCTION_INFO_V1(perfkit_reset);
PG_FUNCTION_INFO_V1(perfkit_latency_bins);
PG_FUNCTION_INFO_V1(perfkit_top_statements);
PG_FUNCTION_INFO_V1(perfkit_top_statements_histogram);

#define PK_STATEMENTS_COLS	21
#define PK_INFO_COLS		5
#define PK_BINS				8	/* latency decades: <10us, <100us, ... <10s, >=10s */
#define PK_TOP_COLS			12
#define PK_TOP_MAX			10000	/* largest n of perfkit._top_statements() */
#define PK_TOP_HIST_COLS	7
#define PK_TOP_MAX_BOUNDS	64		/* bounds of perfkit._top_statements_histogram() */

/* One candidate of perfkit._top_statements(): an entry and its total time when seen */
typedef struct PkTopItem
{
	double		total_time;		/* ms, read during the walk */
	PkStatsEntry *entry;		/* valid while the shared lock is held */
} PkTopItem;

/* A chosen entry's identity and figures, copied out of shared memory */
typedef struct PkTopCopy
{
	PkStatsKey	key;
	PkCounters	counters;
} PkTopCopy;

/* Rows of perfkit.statements (joined to role and database names in SQL) */
Datum
perfkit_statements(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			viewer = GetUserId();
	bool		read_all = has_privs_of_role(viewer, ROLE_PG_READ_ALL_STATS);
	HASH_SEQ_STATUS hs;
	PkStatsEntry *entry;

	pk_stats_require_loaded();
	pk_stats_flush();
	InitMaterializedSRF(fcinfo, 0);

	LWLockAcquire(pk_state->lock, LW_SHARED);
	hash_seq_init(&hs, pk_hash);
	while ((entry = hash_seq_search(&hs)) != NULL)
	{
		Datum		values[PK_STATEMENTS_COLS];
		bool		nulls[PK_STATEMENTS_COLS];
		PkCounters	c;
		int			i = 0;
		double		stddev;

		SpinLockAcquire(&entry->mutex);
		c = entry->counters;
		SpinLockRelease(&entry->mutex);

		/* entries created at parse time whose execution has not finished */
		if (c.calls == 0)
			continue;

		memset(nulls, 0, sizeof(nulls));
		values[i++] = ObjectIdGetDatum(entry->key.userid);
		values[i++] = ObjectIdGetDatum(entry->key.dbid);
		values[i++] = Int64GetDatum((int64) entry->key.queryid);
		values[i++] = BoolGetDatum(entry->key.toplevel);
		if (read_all || entry->key.userid == viewer)
			values[i++] = PointerGetDatum(cstring_to_text_with_len(entry->query,
																   entry->query_len));
		else
			nulls[i++] = true;
		values[i++] = Int64GetDatum(c.calls);
		values[i++] = Float8GetDatum(c.total_time);
		values[i++] = Float8GetDatum(c.min_time);
		values[i++] = Float8GetDatum(c.max_time);
		values[i++] = Float8GetDatum(c.mean_time);
		stddev = c.calls > 1 ? sqrt(c.sum_var_time / c.calls) : 0.0;
		values[i++] = Float8GetDatum(stddev);
		values[i++] = Float8GetDatum(pk_hist_percentile(&c.hist, 0.50, c.min_time, c.max_time));
		values[i++] = Float8GetDatum(pk_hist_percentile(&c.hist, 0.95, c.min_time, c.max_time));
		values[i++] = Float8GetDatum(pk_hist_percentile(&c.hist, 0.99, c.min_time, c.max_time));
		values[i++] = Int64GetDatum(c.rows);
		values[i++] = Int64GetDatum(c.shared_blks_hit);
		values[i++] = Int64GetDatum(c.shared_blks_read);
		values[i++] = Int64GetDatum(c.temp_blks_written);
		values[i++] = Int64GetDatum(c.slow_calls);
		values[i++] = TimestampTzGetDatum(c.first_seen);
		values[i++] = TimestampTzGetDatum(c.last_seen);
		Assert(i == PK_STATEMENTS_COLS);

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	LWLockRelease(pk_state->lock);

	return (Datum) 0;
}

/* The single row of perfkit.info */
Datum
perfkit_info(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[PK_INFO_COLS];
	bool		nulls[PK_INFO_COLS] = {0};
	int64		entries;
	int64		evictions;
	int64		dropped;
	TimestampTz stats_reset;

	pk_stats_require_loaded();
	pk_stats_flush();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	LWLockAcquire(pk_state->lock, LW_SHARED);
	entries = hash_get_num_entries(pk_hash);
	SpinLockAcquire(&pk_state->mutex);
	evictions = pk_state->evictions;
	dropped = pk_state->dropped;
	stats_reset = pk_state->stats_reset;
	SpinLockRelease(&pk_state->mutex);
	LWLockRelease(pk_state->lock);

	values[0] = Int32GetDatum(pk_max_statements);
	values[1] = Int64GetDatum(entries);
	values[2] = Int64GetDatum(evictions);
	values[3] = Int64GetDatum(dropped);
	values[4] = TimestampTzGetDatum(stats_reset);

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/*
 * Counts of one entry's executions per latency decade (<0.01 ms, <0.1 ms,
 * ... <10 s, >= 10 s), for the distribution drawn by perfkit.report();
 * NULL when the entry does not exist.
 */
Datum
perfkit_latency_bins(PG_FUNCTION_ARGS)
{
	PkStatsKey	key;
	PkStatsEntry *entry;
	PkHistogram hist;
	Datum		bins[PK_BINS];
	double		bounds[PK_BINS - 1] = {0.01, 0.1, 1, 10, 100, 1000, 10000};
	bool		found = false;

	pk_stats_require_loaded();
	pk_stats_flush();
	memset(&key, 0, sizeof(key));
	key.userid = PG_GETARG_OID(0);
	key.dbid = PG_GETARG_OID(1);
	key.queryid = (uint64) PG_GETARG_INT64(2);
	key.toplevel = PG_GETARG_BOOL(3);

	LWLockAcquire(pk_state->lock, LW_SHARED);
	entry = hash_search(pk_hash, &key, HASH_FIND, NULL);
	if (entry != NULL)
	{
		SpinLockAcquire(&entry->mutex);
		hist = entry->counters.hist;
		SpinLockRelease(&entry->mutex);
		found = true;
	}
	LWLockRelease(pk_state->lock);
	if (!found)
		PG_RETURN_NULL();

	for (int i = 0; i < PK_BINS; i++)
		bins[i] = Int64GetDatum(pk_hist_count_between(&hist,
													  i == 0 ? 0 : bounds[i - 1],
													  i == PK_BINS - 1 ? -1 : bounds[i]));
	PG_RETURN_ARRAYTYPE_P(construct_array(bins, PK_BINS, INT8OID, 8, FLOAT8PASSBYVAL,
										  TYPALIGN_DOUBLE));
}

/* Restore the min-heap order of items[0..n) below position i (smallest total time at the root) */
static void
pk_top_sift_down(PkTopItem *items, int n, int i)
{
	for (;;)
	{
		int			smallest = i;
		int			l = 2 * i + 1;
		int			r = l + 1;
		PkTopItem	tmp;

		if (l < n && items[l].total_time < items[smallest].total_time)
			smallest = l;
		if (r < n && items[r].total_time < items[smallest].total_time)
			smallest = r;
		if (smallest == i)
			return;
		tmp = items[i];
		items[i] = items[smallest];
		items[smallest] = tmp;
		i = smallest;
	}
}

/* Order copied entries by total time, largest first, then by query id */
static int
pk_top_cmp(const void *a, const void *b)
{
	const PkTopCopy *ea = (const PkTopCopy *) a;
	const PkTopCopy *eb = (const PkTopCopy *) b;

	if (ea->counters.total_time != eb->counters.total_time)
		return ea->counters.total_time > eb->counters.total_time ? -1 : 1;
	if (ea->key.queryid != eb->key.queryid)
		return ea->key.queryid < eb->key.queryid ? -1 : 1;
	if (ea->key.userid != eb->key.userid)
		return ea->key.userid < eb->key.userid ? -1 : 1;
	if (ea->key.dbid != eb->key.dbid)
		return ea->key.dbid < eb->key.dbid ? -1 : 1;
	return (int) eb->key.toplevel - (int) ea->key.toplevel;
}

/*
 * The entries with the n largest total execution times (n already checked),
 * copied, largest first; returns how many (fewer when the table has fewer).
 */
static int
pk_top_select(int32 n, PkTopCopy **result)
{
	PkTopItem  *heap;
	PkTopCopy  *copies;
	int			size = 0;
	HASH_SEQ_STATUS hs;
	PkStatsEntry *entry;

	*result = NULL;
	n = Min(n, pk_max_statements);
	if (n == 0)
		return 0;
	heap = palloc(sizeof(PkTopItem) * n);
	copies = palloc(sizeof(PkTopCopy) * n);

	LWLockAcquire(pk_state->lock, LW_SHARED);
	hash_seq_init(&hs, pk_hash);
	while ((entry = hash_seq_search(&hs)) != NULL)
	{
		int64		calls;
		double		total_time;

		SpinLockAcquire(&entry->mutex);
		calls = entry->counters.calls;
		total_time = entry->counters.total_time;
		SpinLockRelease(&entry->mutex);

		/* entries created at parse time whose execution has not finished */
		if (calls == 0)
			continue;
		if (size < n)
		{
			/* fill, then heapify once full */
			heap[size].total_time = total_time;
			heap[size++].entry = entry;
			if (size == n)
				for (int i = n / 2 - 1; i >= 0; i--)
					pk_top_sift_down(heap, n, i);
		}
		else if (total_time > heap[0].total_time)
		{
			heap[0].total_time = total_time;
			heap[0].entry = entry;
			pk_top_sift_down(heap, n, 0);
		}
	}
	/* entries cannot go away while the shared lock is held: copy the chosen ones */
	for (int i = 0; i < size; i++)
	{
		copies[i].key = heap[i].entry->key;
		SpinLockAcquire(&heap[i].entry->mutex);
		copies[i].counters = heap[i].entry->counters;
		SpinLockRelease(&heap[i].entry->mutex);
	}
	LWLockRelease(pk_state->lock);

	pfree(heap);
	qsort(copies, size, sizeof(PkTopCopy), pk_top_cmp);
	*result = copies;
	return size;
}

/* The n argument of the top-statements functions, checked */
static int32
pk_top_arg(FunctionCallInfo fcinfo)
{
	int32		n;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("number of statements must not be null")));
	n = PG_GETARG_INT32(0);
	if (n < 0 || n > PK_TOP_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("number of statements must be between 0 and %d", PK_TOP_MAX)));
	return n;
}

/*
 * Rows of perfkit.top_statements(n): the n entries with the largest total
 * execution time, without their texts, largest first.
 */
Datum
perfkit_top_statements(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int32		n;
	PkTopCopy  *copies;
	int			size;

	pk_stats_require_loaded();
	pk_stats_flush();
	n = pk_top_arg(fcinfo);
	InitMaterializedSRF(fcinfo, 0);
	size = pk_top_select(n, &copies);

	for (int k = 0; k < size; k++)
	{
		PkCounters *c = &copies[k].counters;
		Datum		values[PK_TOP_COLS];
		bool		nulls[PK_TOP_COLS] = {0};
		int			i = 0;

		values[i++] = ObjectIdGetDatum(copies[k].key.userid);
		values[i++] = ObjectIdGetDatum(copies[k].key.dbid);
		values[i++] = Int64GetDatum((int64) copies[k].key.queryid);
		values[i++] = BoolGetDatum(copies[k].key.toplevel);
		values[i++] = Int64GetDatum(c->calls);
		values[i++] = Float8GetDatum(c->total_time);
		values[i++] = Float8GetDatum(c->mean_time);
		values[i++] = Float8GetDatum(pk_hist_percentile(&c->hist, 0.50, c->min_time, c->max_time));
		values[i++] = Float8GetDatum(pk_hist_percentile(&c->hist, 0.95, c->min_time, c->max_time));
		values[i++] = Float8GetDatum(pk_hist_percentile(&c->hist, 0.99, c->min_time, c->max_time));
		values[i++] = Int64GetDatum(c->rows);
		values[i++] = Int64GetDatum(c->slow_calls);
		Assert(i == PK_TOP_COLS);

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}

	return (Datum) 0;
}

/*
 * Rows of perfkit.top_statements_histogram(n, bounds): the same entries as
 * perfkit.top_statements(n), each with its executions at or below each
 * bound (ms, ascending), cumulative as Prometheus histograms want them, and
 * the executions of the whole histogram.  A bound inside one of the
 * histogram's buckets is exact to that bucket's width (6.25%).
 */
Datum
perfkit_top_statements_histogram(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int32		n;
	ArrayType  *arr;
	Datum	   *elems;
	bool	   *elem_nulls;
	int			nbounds;
	double	   *bounds;
	int64	   *cumulative;
	PkTopCopy  *copies;
	int			size;

	pk_stats_require_loaded();
	pk_stats_flush();
	n = pk_top_arg(fcinfo);
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("histogram bounds must not be null")));
	arr = PG_GETARG_ARRAYTYPE_P(1);
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("histogram bounds must be a one-dimensional array")));
	deconstruct_array(arr, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
					  &elems, &elem_nulls, &nbounds);
	if (nbounds < 1 || nbounds > PK_TOP_MAX_BOUNDS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("histogram bounds must have between 1 and %d elements", PK_TOP_MAX_BOUNDS)));
	bounds = palloc(sizeof(double) * nbounds);
	for (int i = 0; i < nbounds; i++)
	{
		bounds[i] = elem_nulls[i] ? NAN : DatumGetFloat8(elems[i]);
		if (elem_nulls[i] || isnan(bounds[i]) || isinf(bounds[i]) || bounds[i] <= 0 ||
			(i > 0 && bounds[i] <= bounds[i - 1]))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("histogram bounds must be finite, positive and ascending"),
					 errhint("Pass milliseconds such as '{1,10,100,1000}'.")));
	}
	InitMaterializedSRF(fcinfo, 0);
	cumulative = palloc(sizeof(int64) * nbounds);
	size = pk_top_select(n, &copies);

	for (int k = 0; k < size; k++)
	{
		PkCounters *c = &copies[k].counters;
		Datum		values[PK_TOP_HIST_COLS];
		bool		nulls[PK_TOP_HIST_COLS] = {0};
		Datum	   *counts = palloc(sizeof(Datum) * nbounds);
		int64		total;
		int			i = 0;

		total = pk_hist_cumulative(&c->hist, bounds, nbounds, cumulative);
		for (int b = 0; b < nbounds; b++)
			counts[b] = Int64GetDatum(cumulative[b]);
		values[i++] = ObjectIdGetDatum(copies[k].key.userid);
		values[i++] = ObjectIdGetDatum(copies[k].key.dbid);
		values[i++] = Int64GetDatum((int64) copies[k].key.queryid);
		values[i++] = BoolGetDatum(copies[k].key.toplevel);
		values[i++] = PointerGetDatum(construct_array(counts, nbounds, INT8OID, 8, FLOAT8PASSBYVAL,
													  TYPALIGN_DOUBLE));
		values[i++] = Int64GetDatum(total);
		values[i++] = Float8GetDatum(c->total_time);
		Assert(i == PK_TOP_HIST_COLS);

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		pfree(counts);
	}

	return (Datum) 0;
}

/* perfkit.reset(): forget all statement statistics */
Datum
perfkit_reset(PG_FUNCTION_ARGS)
{
	pk_stats_require_loaded();
	pk_stats_reset();
	PG_RETURN_VOID();
}
