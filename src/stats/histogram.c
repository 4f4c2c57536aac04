/*-------------------------------------------------------------------------
 *
 * histogram.c
 *	  Log-linear latency histogram: O(1) insertion, percentiles on read.
 *
 * The layout and its error bounds are described in histogram.h.  The
 * functions here are pure: callers serialize access (stats.c holds the
 * entry's spinlock while adding, and reads from a private copy).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "port/pg_bitutils.h"

#include "stats/histogram.h"

/* Bucket index of a duration in microseconds */
static inline int
pk_hist_bucket(uint64 us)
{
	int			msb;

	if (us < PK_HIST_SUB)
		return (int) us;
	msb = pg_leftmost_one_pos64(us);
	if (msb >= PK_HIST_MAX_BITS)
		return PK_HIST_BUCKETS - 1;
	return PK_HIST_SUB + (msb - PK_HIST_SUB_BITS) * PK_HIST_SUB +
		(int) ((us >> (msb - PK_HIST_SUB_BITS)) - PK_HIST_SUB);
}

/* Lower bound and width, in microseconds, of a bucket */
static void
pk_hist_bucket_range(int bucket, double *lower, double *width)
{
	int			msb;
	int			sub;

	if (bucket < PK_HIST_SUB)
	{
		*lower = bucket;
		*width = 1;
		return;
	}
	msb = (bucket - PK_HIST_SUB) / PK_HIST_SUB + PK_HIST_SUB_BITS;
	sub = (bucket - PK_HIST_SUB) % PK_HIST_SUB;
	*width = ldexp(1.0, msb - PK_HIST_SUB_BITS);
	*lower = ldexp(1.0, msb) + sub * *width;
}

/* Count one execution of the given duration (ms) */
void
pk_hist_add(PkHistogram *hist, double ms)
{
	double		us = ms * 1000.0;
	int			bucket;
	uint32	   *slot;

	/* negative (clock step) and absurdly large values land in the end buckets */
	bucket = pk_hist_bucket(us <= 0 ? 0 : us >= 1e15 ? UINT64CONST(1) << 50 : (uint64) us);

	Assert(bucket >= 0 && bucket < PK_HIST_BUCKETS);
	slot = &hist->counts[bucket];
	if (unlikely(*slot == PG_UINT32_MAX))
	{
		/* a counter is saturated: halve all, keeping the distribution */
		for (int i = 0; i < PK_HIST_BUCKETS; i++)
			hist->counts[i] >>= 1;
	}
	(*slot)++;
}

/*
 * Duration (ms) below which the given fraction of executions fall, by
 * linear interpolation inside the bucket; clamped to [min_ms, max_ms].
 */
double
pk_hist_percentile(const PkHistogram *hist, double fraction,
				   double min_ms, double max_ms)
{
	uint64		total = 0;
	double		rank;
	uint64		seen = 0;
	double		result = max_ms;

	for (int i = 0; i < PK_HIST_BUCKETS; i++)
		total += hist->counts[i];
	if (total == 0)
		return 0.0;

	rank = fraction * total;
	for (int i = 0; i < PK_HIST_BUCKETS; i++)
	{
		uint32		c = hist->counts[i];

		if (c > 0 && seen + c >= rank)
		{
			double		lower;
			double		width;

			pk_hist_bucket_range(i, &lower, &width);
			result = (lower + width * ((rank - seen) / c)) / 1000.0;
			break;
		}
		seen += c;
	}
	if (result < min_ms)
		result = min_ms;
	if (result > max_ms)
		result = max_ms;
	return result;
}

/*
 * Executions whose bucket starts in [from_ms, to_ms); to_ms < 0 means no
 * upper bound.  A bucket counts where it starts, so a bound that falls
 * inside a bucket is approximate to the bucket width (at most 6.25%).
 */
int64
pk_hist_count_between(const PkHistogram *hist, double from_ms, double to_ms)
{
	int64		total = 0;

	for (int i = 0; i < PK_HIST_BUCKETS; i++)
	{
		double		lower;
		double		width;

		pk_hist_bucket_range(i, &lower, &width);
		if (lower >= from_ms * 1000.0 && (to_ms < 0 || lower < to_ms * 1000.0))
			total += hist->counts[i];
	}
	return total;
}

/*
 * Executions counted at or below each bound (ms, ascending), cumulative,
 * in one pass over the buckets: counts[i] is what
 * pk_hist_count_between(hist, 0, bounds[i]) gives.  Returns all executions.
 */
int64
pk_hist_cumulative(const PkHistogram *hist, const double *bounds_ms, int nbounds,
				   int64 *counts)
{
	int64		total = 0;
	int			b = 0;

	for (int i = 0; i < PK_HIST_BUCKETS; i++)
	{
		double		lower;
		double		width;

		pk_hist_bucket_range(i, &lower, &width);
		/* a bucket counts below every bound above its start */
		while (b < nbounds && lower >= bounds_ms[b] * 1000.0)
			counts[b++] = total;
		total += hist->counts[i];
	}
	while (b < nbounds)
		counts[b++] = total;
	return total;
}
