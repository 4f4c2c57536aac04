-- Concurrent index builds requested from SQL.  Requests are validated in the caller's transaction;
-- a background builder runs them after commit.  Only timing-independent facts are shown: errors
-- raised at request time, rolled-back requests, and statuses after CALL perfkit.wait_for_index_builds().

CREATE TABLE ib_t (id int PRIMARY KEY, x int, y text, z timestamptz);
INSERT INTO ib_t SELECT g, g % 10, 'v' || g, NULL FROM generate_series(1, 200) g;
CREATE TABLE ib_other (id int);
CREATE VIEW ib_view AS SELECT * FROM ib_t;
CREATE TABLE ib_parted (id int) PARTITION BY RANGE (id);
CREATE TEMP TABLE ib_temp (id int);
CREATE FUNCTION ib_volatile(int) RETURNS int LANGUAGE plpgsql VOLATILE AS 'BEGIN RETURN $1; END';

-- NULL arguments.
SELECT perfkit.create_index_concurrently(NULL);
SELECT perfkit.create_index_concurrently(NULL::regclass, ARRAY['x']);
SELECT perfkit.create_index_concurrently('ib_t', NULL);
SELECT perfkit.create_index_concurrently('ib_t', ARRAY[NULL]::text[]);
SELECT perfkit.create_index_concurrently('ib_t', '{}');
SELECT perfkit.create_index_concurrently('ib_t', ARRAY['x'], method => NULL);
SELECT perfkit.create_index_concurrently('ib_t', ARRAY['x'], is_unique => NULL);
SELECT perfkit.create_index_concurrently('ib_t', ARRAY['x'], include => ARRAY[NULL]::text[]);
SELECT perfkit.drop_index_concurrently(NULL);
SELECT perfkit.cancel_index_build(NULL);
CALL perfkit.wait_for_index_builds(NULL);
CALL perfkit.wait_for_index_builds('-1 second');

-- The definition must be exactly one CREATE INDEX statement: checked with the parser.
SELECT perfkit.create_index_concurrently('CREATE INDEX ib_a ON ib_t (x); DROP TABLE ib_t');
SELECT perfkit.create_index_concurrently('CREATE INDEX ib_a ON ib_t (x);;SELECT 1');
SELECT perfkit.create_index_concurrently('DROP TABLE ib_t');
SELECT perfkit.create_index_concurrently('SELECT 1');
SELECT perfkit.create_index_concurrently('ALTER TABLE ib_t ADD COLUMN w int');
SELECT perfkit.create_index_concurrently('REINDEX TABLE ib_t');
SELECT perfkit.create_index_concurrently('');
SELECT perfkit.create_index_concurrently('-- CREATE INDEX ib_a ON ib_t (x)');
SELECT perfkit.create_index_concurrently('CREATE INDEX ib_a ON ib_t (x');
SELECT perfkit.create_index_concurrently('CREATE INDEX ib_a ON ib_t (x) WHERE x > 0 /* unterminated');

-- Injection and nonsense inside an otherwise valid CREATE INDEX.
SELECT perfkit.create_index_concurrently('CREATE INDEX ib_a ON ib_t (x) WHERE (SELECT true)');
SELECT perfkit.create_index_concurrently('CREATE INDEX ib_a ON ib_t (x) WHERE EXISTS (SELECT 1 FROM ib_other)');
SELECT perfkit.create_index_concurrently('CREATE INDEX ib_a ON ib_t (x) WHERE ib_other.id > 0');
SELECT perfkit.create_index_concurrently('CREATE INDEX ib_a ON ib_t (x) WHERE x');
SELECT perfkit.create_index_concurrently('CREATE INDEX ib_a ON ib_t (x) WHERE random() > 0.5');
SELECT perfkit.create_index_concurrently('CREATE INDEX ib_a ON ib_t ((ib_volatile(x)))');
SELECT perfkit.create_index_concurrently('CREATE INDEX ib_a ON ib_t ((count(x)))');
SELECT perfkit.create_index_concurrently('CREATE INDEX "ib;a" ON ib_t (x)');
SELECT perfkit.create_index_concurrently('CREATE INDEX "ib""a" ON ib_t (x)');
SELECT perfkit.create_index_concurrently('CREATE INDEX ib_a ON ib_t (nope)');
SELECT perfkit.create_index_concurrently('CREATE INDEX ib_a ON ib_t (ctid)');
SELECT perfkit.create_index_concurrently('CREATE INDEX ib_a ON ib_t (x) INCLUDE (nope)');
SELECT perfkit.create_index_concurrently('CREATE INDEX ib_a ON ib_nope (x)');
SELECT perfkit.create_index_concurrently('CREATE INDEX ib_a ON ib_t USING nope (x)');
SELECT perfkit.create_index_concurrently('CREATE INDEX ib_a ON ib_t USING heap (x)');
SELECT perfkit.create_index_concurrently('CREATE UNIQUE INDEX ib_a ON ib_t USING brin (x)');
SELECT perfkit.create_index_concurrently('CREATE INDEX ib_a ON ib_t USING hash (x, y)');
SELECT perfkit.create_index_concurrently('CREATE INDEX ib_a ON ib_t USING hash (x DESC)');
SELECT perfkit.create_index_concurrently('CREATE INDEX ib_a ON ib_t (y nope_ops)');
SELECT perfkit.create_index_concurrently('CREATE INDEX ib_a ON ib_t (y COLLATE "nope")');
SELECT perfkit.create_index_concurrently('CREATE INDEX ib_a ON ib_t (x) WITH (nonsense = 1)');
SELECT perfkit.create_index_concurrently('CREATE INDEX ib_a ON ib_t (x) TABLESPACE nope');
SELECT perfkit.create_index_concurrently('CREATE INDEX ib_other ON ib_t (x)');
SELECT perfkit.create_index_concurrently('CREATE INDEX ib_t_pkey ON ib_t (x)');

-- The builder parses definitions with standard_conforming_strings on: requests made with it off
-- are refused (a backslash in a literal would mean something else there).  19 no longer has the
-- off value: the SET itself fails there and there is nothing to refuse (index_builds_1.out).
SET standard_conforming_strings = off;
SELECT current_setting('standard_conforming_strings') = 'off' AS scs_off \gset
\if :scs_off
SELECT perfkit.create_index_concurrently('CREATE INDEX ib_a ON ib_t (y) WHERE y <> ''a''');
SELECT perfkit.create_index_concurrently('ib_t', ARRAY['y'], predicate => 'y <> ''a''');
\endif
RESET standard_conforming_strings;

-- Tables perfkit cannot build on.
SELECT perfkit.create_index_concurrently('CREATE INDEX ib_a ON ib_view (x)');
SELECT perfkit.create_index_concurrently('CREATE INDEX ib_a ON ib_parted (id)');
SELECT perfkit.create_index_concurrently('CREATE INDEX ib_a ON ib_temp (id)');
SELECT perfkit.create_index_concurrently('CREATE INDEX ib_a ON pg_class (relname)');
SELECT perfkit.create_index_concurrently('-'::regclass, ARRAY['x']);

-- The structured form: every text argument is checked, identifiers are quoted.
SELECT perfkit.create_index_concurrently('ib_t', ARRAY['x'], name => 'x"; DROP TABLE ib_t; --');
SELECT perfkit.create_index_concurrently('ib_t', ARRAY['x'], name => 'ib_a;');
SELECT perfkit.create_index_concurrently('ib_t', ARRAY['x'], name => '');
SELECT perfkit.create_index_concurrently('ib_t', ARRAY['x'], name => repeat('n', 64));
SELECT perfkit.create_index_concurrently('ib_t', ARRAY['x); DROP TABLE ib_t; --']);
SELECT perfkit.create_index_concurrently('ib_t', ARRAY['nope']);
SELECT perfkit.create_index_concurrently('ib_t', ARRAY['X']);
SELECT perfkit.create_index_concurrently('ib_t', ARRAY['x'], include => ARRAY['y) WHERE (true']);
SELECT perfkit.create_index_concurrently('ib_t', ARRAY['x'], method => 'btree; DROP TABLE ib_t');
SELECT perfkit.create_index_concurrently('ib_t', ARRAY['x'], method => 'nope');
SELECT perfkit.create_index_concurrently('ib_t', ARRAY['x'], predicate => 'x > 0; DROP TABLE ib_t');
SELECT perfkit.create_index_concurrently('ib_t', ARRAY['x'], predicate => 'x > 0) OR (true');
SELECT perfkit.create_index_concurrently('ib_t', ARRAY['x'], predicate => 'x > 0 FROM ib_other');
SELECT perfkit.create_index_concurrently('ib_t', ARRAY['x'], predicate => 'x > 0 AS alias');
SELECT perfkit.create_index_concurrently('ib_t', ARRAY['x'], predicate => '');
SELECT perfkit.create_index_concurrently('ib_t', ARRAY['x'], predicate => '(SELECT true)');
SELECT perfkit.create_index_concurrently('ib_t', ARRAY['x'], predicate => 'ib_other.id > 0');
SELECT perfkit.create_index_concurrently('ib_t', ARRAY['x'], predicate => 'x + 1');
SELECT perfkit.create_index_concurrently('ib_t', ARRAY['x'], predicate => 'z < now()');

-- Drop requests.
SELECT perfkit.drop_index_concurrently('ib_t');
SELECT perfkit.drop_index_concurrently('ib_t_pkey');
SELECT perfkit.drop_index_concurrently('-'::regclass);

-- Cancelling an unknown build.
SELECT perfkit.cancel_index_build(-1);

-- Waiting is impossible inside a transaction block or a function: an error at once.
BEGIN;
CALL perfkit.wait_for_index_builds();
ROLLBACK;
CREATE FUNCTION ib_wait() RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE done boolean;
BEGIN
    CALL perfkit.wait_for_index_builds('1 second', done);
    RETURN done;
END $$;
SELECT ib_wait();
DROP FUNCTION ib_wait();

-- Nothing was requested by any of the above.
SELECT count(*) FROM perfkit.index_builds;

-- A request is part of the caller's transaction: visible inside it, gone after a rollback.
BEGIN;
SELECT perfkit.create_index_concurrently('CREATE INDEX ib_rolled_back ON ib_t (y)') > 0 AS requested;
SELECT index_name, status, kind FROM perfkit.index_builds;
ROLLBACK;
SELECT count(*) FROM perfkit.index_builds;

-- A pending request cancelled in the same transaction is never built.
BEGIN;
SELECT perfkit.create_index_concurrently('CREATE INDEX ib_cancelled ON ib_t (y)') AS id \gset
SELECT perfkit.cancel_index_build(:id);
SELECT perfkit.cancel_index_build(:id);
COMMIT;

-- Real builds: a written definition, the structured form (generated name, partial, INCLUDE),
-- a table created earlier in the same transaction, the same definition twice (skipped), a unique
-- index over duplicates (failed).
BEGIN;
SELECT perfkit.create_index_concurrently('CREATE INDEX ib_x ON ib_t (x)') > 0 AS requested;
SELECT perfkit.create_index_concurrently('ib_t', ARRAY['y'], predicate => 'x > 5') > 0 AS requested;
SELECT perfkit.create_index_concurrently('ib_t', ARRAY['x', 'y'], name => 'ib xy', include => ARRAY['z']) > 0 AS requested;
SELECT perfkit.create_index_concurrently('CREATE INDEX CONCURRENTLY IF NOT EXISTS ib_lower ON ib_t (lower(y)) WHERE z IS NULL') > 0 AS requested;
CREATE TABLE ib_new (a int, b text);
SELECT perfkit.create_index_concurrently('CREATE UNIQUE INDEX ib_new_a ON ib_new (a)') > 0 AS requested;
SELECT perfkit.create_index_concurrently('CREATE INDEX ib_x ON ib_t (x)') > 0 AS requested;
SELECT perfkit.create_index_concurrently('ib_t', ARRAY['x'], name => 'ib_dup', is_unique => true) > 0 AS requested;
COMMIT;

CALL perfkit.wait_for_index_builds('5 minutes');

-- (which duplicate key the unique build meets first differs between majors)
SELECT relation, index_name, status, attempts,
       regexp_replace(error, '\(x\)=\(\d+\)', '(x)=(N)') AS error, definition
  FROM perfkit.index_builds ORDER BY id;
SELECT indexrelid::regclass AS index, indisvalid, pg_get_indexdef(indexrelid)
  FROM pg_index WHERE indrelid IN ('ib_t'::regclass, 'ib_new'::regclass)
 ORDER BY indexrelid::regclass::text;

-- The same definition spelled differently is recognized; a different one under the name is not.
SELECT perfkit.create_index_concurrently('create index ib_x on public.ib_t using btree (x ASC NULLS LAST)') > 0 AS requested;
SELECT perfkit.create_index_concurrently('CREATE INDEX ib_x ON ib_t (y)');
CALL perfkit.wait_for_index_builds();
SELECT index_name, status, error FROM perfkit.index_builds ORDER BY id DESC LIMIT 1;

-- Finished builds cannot be cancelled any more.
SELECT perfkit.cancel_index_build(id) FROM perfkit.index_builds WHERE index_name = 'ib_x' AND status = 'succeeded';

-- Dropping.
SELECT perfkit.drop_index_concurrently('"ib xy"') > 0 AS requested;
CALL perfkit.wait_for_index_builds();
SELECT index_name, status, kind, definition FROM perfkit.index_builds ORDER BY id DESC LIMIT 1;
SELECT count(*) FROM pg_class WHERE relname = 'ib xy';

-- A drop request names its index by OID, name and table: an index renamed, or dropped and
-- replaced by another of the same name, before the builder gets to it is not dropped.
CREATE INDEX ib_renamed ON ib_t (y);
CREATE INDEX ib_replaced ON ib_t (y);
BEGIN;
SELECT perfkit.drop_index_concurrently('ib_renamed') > 0 AS requested;
ALTER INDEX ib_renamed RENAME TO ib_renamed_since;
SELECT perfkit.drop_index_concurrently('ib_replaced') > 0 AS requested;
DROP INDEX ib_replaced;
CREATE INDEX ib_replaced ON ib_t (x, y);
COMMIT;
CALL perfkit.wait_for_index_builds();
SELECT index_name, status, error FROM perfkit.index_builds ORDER BY id DESC LIMIT 2;
SELECT relname FROM pg_class WHERE relname IN ('ib_renamed', 'ib_renamed_since', 'ib_replaced') ORDER BY 1;
DROP INDEX ib_renamed_since, ib_replaced;

-- Only the owner of a table may ask; other roles do not see other roles' errors.
CREATE ROLE regress_ib_other;
GRANT CREATE ON SCHEMA public TO regress_ib_other;
SET ROLE regress_ib_other;
SELECT perfkit.create_index_concurrently('CREATE INDEX ib_theirs ON ib_t (y)');
SELECT perfkit.create_index_concurrently('ib_t', ARRAY['y']);
SELECT perfkit.drop_index_concurrently('ib_x');
DO $$
BEGIN
    PERFORM perfkit.cancel_index_build(id) FROM perfkit.index_builds
      WHERE index_name = 'ib_x' AND status = 'succeeded';
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'cancel refused: insufficient_privilege (%)', SQLSTATE;
END $$;
SELECT index_name, status, error FROM perfkit.index_builds WHERE status = 'failed' ORDER BY id;
SELECT * FROM perfkit.index_build_requests;
CREATE TABLE ib_mine (a int);
SELECT perfkit.create_index_concurrently('CREATE INDEX ib_mine_a ON ib_mine (a)') > 0 AS requested;
RESET ROLE;
CALL perfkit.wait_for_index_builds();
SELECT index_name, status, requested_by FROM perfkit.index_builds ORDER BY id DESC LIMIT 1;
SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'ib_mine_a';

-- Dropping an index needs no privilege on its schema (DROP INDEX needs none); building one does.
REVOKE CREATE ON SCHEMA public FROM regress_ib_other;
SET ROLE regress_ib_other;
SELECT perfkit.create_index_concurrently('CREATE INDEX ib_mine_a2 ON ib_mine (a)');
SELECT perfkit.drop_index_concurrently('ib_mine_a') > 0 AS requested;
RESET ROLE;
CALL perfkit.wait_for_index_builds();
SELECT index_name, status, kind FROM perfkit.index_builds ORDER BY id DESC LIMIT 1;
SELECT count(*) FROM pg_class WHERE relname = 'ib_mine_a';

DROP TABLE ib_mine;
DROP ROLE regress_ib_other;
DROP TABLE ib_t, ib_other, ib_new, ib_parted CASCADE;
DROP TABLE ib_temp;
DROP FUNCTION ib_volatile(int);
