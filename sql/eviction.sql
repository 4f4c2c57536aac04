-- Bounded memory: beyond perfkit.max_statements (1000 in the test
-- configuration) the least used entries are evicted in batches, counted,
-- and no statement fails.  A hot statement survives the churn.
SELECT perfkit.reset();
SET perfkit.track = 'all';

DO $$ BEGIN FOR i IN 1..300 LOOP PERFORM i AS hot_marker; END LOOP; END $$;

-- 1200 distinct statement shapes (a different number of constants each).
DO $$
BEGIN
  FOR i IN 1..1200 LOOP
    EXECUTE 'SELECT ' || repeat('1 + ', i) || '1';
  END LOOP;
END $$;

SELECT statements <= max_statements AS bounded,
       evictions >= 200 AS evicted,
       dropped AS dropped
  FROM perfkit.info;

-- (the DO statement that ran it once is a cold entry and may go: not checked)
SELECT calls AS hot_calls FROM perfkit.statements WHERE query LIKE '%hot_marker%' AND NOT toplevel;
