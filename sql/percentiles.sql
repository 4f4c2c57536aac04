-- Latency percentiles come from the per-entry histogram: 19 short sleeps and
-- one long one must put p50 and p95 near the short, p99 near the long duration.
SELECT perfkit.reset();
SET perfkit.track = 'top';

SELECT 'SELECT pg_sleep(0.01)' FROM generate_series(1, 19) \gexec
SELECT pg_sleep(0.25);

SELECT calls,
       min_exec_time >= 10 AS min_ok,
       p50_exec_time BETWEEN 10 AND 200 AS p50_short,
       p95_exec_time BETWEEN 10 AND 200 AS p95_short,
       p99_exec_time >= 240 AS p99_long,
       p99_exec_time <= max_exec_time AS p99_le_max,
       max_exec_time >= 250 AS max_ok
  FROM perfkit.statements WHERE query = 'SELECT pg_sleep($1)';

-- A single execution: every percentile equals the one duration.
SELECT 1 AS single FROM pg_sleep(0.02);
SELECT calls, p50_exec_time = min_exec_time AND p99_exec_time = max_exec_time
              AND min_exec_time = max_exec_time AS all_equal
  FROM perfkit.statements WHERE query = 'SELECT $1 AS single FROM pg_sleep($2)';
