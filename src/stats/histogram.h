/*-------------------------------------------------------------------------
 *
 * histogram.h
 *	  Fixed-size log-linear latency histogram used for percentiles.
 *
 * Durations are bucketed in microseconds.  Below 16 us every microsecond
 * has its own bucket; above, each power of two is split into 16 equal
 * sub-buckets, up to 2^32 us (about 71 minutes).  A bucket therefore spans
 * at most 1/16 of its lower bound, and a percentile read back by linear
 * interpolation inside its bucket is within 6.25% (typically about 3%) of
 * the true value.  Longer durations land in the last bucket; percentiles
 * are clamped to the exact min and max, so they never leave that range.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PERFKIT_HISTOGRAM_H
#define PERFKIT_HISTOGRAM_H

#include "postgres.h"

#define PK_HIST_SUB_BITS	4	/* 16 sub-buckets per power of two */
#define PK_HIST_SUB			(1 << PK_HIST_SUB_BITS)
#define PK_HIST_MAX_BITS	32	/* durations up to 2^32 us */
#define PK_HIST_BUCKETS		(PK_HIST_SUB + (PK_HIST_MAX_BITS - PK_HIST_SUB_BITS) * PK_HIST_SUB)

typedef struct PkHistogram
{
	uint32		counts[PK_HIST_BUCKETS];	/* executions per bucket */
} PkHistogram;

extern void pk_hist_add(PkHistogram *hist, double ms);
extern int64 pk_hist_count_between(const PkHistogram *hist, double from_ms, double to_ms);
extern int64 pk_hist_cumulative(const PkHistogram *hist, const double *bounds_ms, int nbounds,
								int64 *counts);
extern double pk_hist_percentile(const PkHistogram *hist, double fraction,
								 double min_ms, double max_ms);

#endif							/* PERFKIT_HISTOGRAM_H */
