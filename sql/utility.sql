-- Utility statements: timed when perfkit.track_utility is on; PREPARE and
-- EXECUTE are not entries themselves, the prepared statement's runs are.
-- Alternative outputs, as pg_stat_statements of each major records them:
-- utility_1.out for 17 (DEALLOCATE is an entry, "DEALLOCATE $1"), utility_2.out
-- for 18+ (also SET's constants normalized: "SET perfkit.track = $1").
SELECT perfkit.reset();
SET perfkit.track = 'top';

CREATE TABLE util_t (a int);
COPY util_t FROM stdin;
1
2
3
\.
COPY util_t TO stdout;
PREPARE util_p(int) AS SELECT a FROM util_t WHERE a >= $1;
EXECUTE util_p(2);
EXECUTE util_p(3);
DEALLOCATE util_p;
VACUUM util_t;

SET perfkit.track_utility = off;
CREATE TABLE util_untracked (a int);
DROP TABLE util_untracked;
SET perfkit.track_utility = on;

SELECT query, calls, rows
  FROM perfkit.statements
 WHERE query NOT LIKE 'SELECT perfkit.reset()%'
 ORDER BY query COLLATE "C";
