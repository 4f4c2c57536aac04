-- Statements run inside functions: recorded with toplevel = false when
-- perfkit.track = all, not at all with perfkit.track = top.
SELECT perfkit.reset();
SET perfkit.track = 'all';

CREATE TABLE nest_t (id int PRIMARY KEY, v int);
INSERT INTO nest_t SELECT g, g % 7 FROM generate_series(1, 100) g;

CREATE FUNCTION nest_lookup(n int) RETURNS int LANGUAGE plpgsql AS $$
DECLARE total int := 0;
BEGIN
  FOR i IN 1..n LOOP
    total := total + (SELECT v FROM nest_t WHERE id = i);
  END LOOP;
  RETURN total;
END $$;

SELECT nest_lookup(10);

SELECT query, calls, rows, toplevel
  FROM perfkit.statements
 WHERE query LIKE '%nest_t WHERE id%' OR query LIKE '%nest_lookup(%'
 ORDER BY toplevel, query COLLATE "C";

-- track = top: the function call is recorded, its inner statement is not.
SELECT perfkit.reset();
SET perfkit.track = 'top';
SELECT nest_lookup(5);
SELECT query, calls, toplevel
  FROM perfkit.statements
 WHERE query LIKE '%nest_t WHERE id%' OR query LIKE '%nest_lookup(%'
 ORDER BY toplevel, query COLLATE "C";

-- A DO block's statements, and a trigger's, are nested too.
SELECT perfkit.reset();
SET perfkit.track = 'all';
CREATE TABLE nest_log (id int);
CREATE FUNCTION nest_trig() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO nest_log VALUES (NEW.id); RETURN NEW; END $$;
CREATE TRIGGER nest_tr AFTER INSERT ON nest_t FOR EACH ROW EXECUTE FUNCTION nest_trig();
INSERT INTO nest_t VALUES (101, 1), (102, 2);
DO $$ BEGIN FOR i IN 1..3 LOOP UPDATE nest_t SET v = v + 1 WHERE id = i; END LOOP; END $$;
SELECT query, calls, rows, toplevel
  FROM perfkit.statements
 WHERE query LIKE '%nest_log%' OR query LIKE 'UPDATE nest_t%' OR query LIKE 'INSERT INTO nest_t%'
 ORDER BY toplevel, query COLLATE "C";

-- With utility statements not recorded, a DO block still nests its statements (as
-- pg_stat_statements does from 17 on): they are not the client's.
SELECT perfkit.reset();
SET perfkit.track_utility = off;
DO $$ BEGIN UPDATE nest_t SET v = v + 1 WHERE id = 7; END $$;
RESET perfkit.track_utility;
SELECT query, calls, toplevel
  FROM perfkit.statements
 WHERE query LIKE 'UPDATE nest_t%' OR query LIKE 'DO %'
 ORDER BY toplevel, query COLLATE "C";
