-- perfkit.reset() forgets every entry and restarts the counters.
SET perfkit.track = 'top';
SELECT stats_reset AS before_reset FROM perfkit.info \gset
SELECT 12345 AS marker;
SELECT count(*) > 0 AS has_marker FROM perfkit.statements WHERE query = 'SELECT $1 AS marker';

SELECT perfkit.reset();
SELECT count(*) AS marker_rows FROM perfkit.statements WHERE query = 'SELECT $1 AS marker';
SELECT statements AS after_reset_entries, evictions, dropped,
       stats_reset > :'before_reset'::timestamptz AS reset_time_moved
  FROM perfkit.info;
-- Only the reset call itself (and the queries above) were recorded since.
SELECT query FROM perfkit.statements ORDER BY query COLLATE "C";
