-- Query texts of other roles are hidden unless the viewer has the
-- privileges of pg_read_all_stats; perfkit.reset() is not for PUBLIC.
SET perfkit.track = 'top';
SELECT perfkit.reset();
CREATE ROLE pk_alice;
CREATE ROLE pk_bob;
GRANT SELECT ON items TO pk_alice;

SET ROLE pk_alice;
SELECT count(*) FROM items WHERE id < 42;
RESET ROLE;

SET ROLE pk_bob;
-- bob sees that alice ran something, but not what
SELECT rolname, query, calls FROM perfkit.statements
 WHERE rolname = 'pk_alice' ORDER BY query;
SELECT perfkit.reset();
RESET ROLE;

GRANT pg_read_all_stats TO pk_bob;
SET ROLE pk_bob;
SELECT rolname, query, calls FROM perfkit.statements
 WHERE rolname = 'pk_alice' ORDER BY query;
RESET ROLE;

-- alice always sees her own statements
SET ROLE pk_alice;
SELECT query FROM perfkit.statements WHERE rolname = 'pk_alice' ORDER BY query;
RESET ROLE;

-- reset can be granted
GRANT EXECUTE ON FUNCTION perfkit.reset() TO pk_bob;
SET ROLE pk_bob;
SELECT perfkit.reset();
RESET ROLE;
SELECT count(*) AS alice_rows FROM perfkit.statements WHERE rolname = 'pk_alice';

REVOKE ALL ON items FROM pk_alice;
REVOKE EXECUTE ON FUNCTION perfkit.reset() FROM pk_bob;
DROP ROLE pk_alice;
DROP ROLE pk_bob;
