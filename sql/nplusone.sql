-- N+1 detection: a list query followed by a loop of lookups that consume its
-- rows is flagged; eager loading, short loops and independent lookups are not.
SET perfkit.track = 'all';
SET perfkit.nplusone_min_repeats = 5;
SELECT perfkit.reset_n_plus_one();

CREATE TABLE np_authors (id int PRIMARY KEY, name text);
CREATE TABLE np_publishers (id int PRIMARY KEY, name text);
CREATE TABLE np_books (id int PRIMARY KEY, title text, author_id int, publisher_id int);
INSERT INTO np_authors SELECT g, 'author ' || g FROM generate_series(1, 100) g;
INSERT INTO np_publishers SELECT g, 'publisher ' || g FROM generate_series(1, 100) g;
INSERT INTO np_books SELECT g, 'book ' || g, (g * 7) % 100 + 1, (g * 13) % 100 + 1
  FROM generate_series(1, 30) g;

-- What the view shows, without timings.
CREATE VIEW np_seen AS
SELECT parent_query, query, confirmed, detections, last_repeats, max_repeats, total_repeats,
       sample_params, suggestion
  FROM perfkit.n_plus_one ORDER BY parent_query COLLATE "C", query COLLATE "C";

-- 1. Values interpolated into the SQL text by the client (psycopg2 style).
BEGIN;
SELECT id, author_id FROM np_books WHERE id <= 6 ORDER BY id;
SELECT name FROM np_authors WHERE id = 8;
SELECT name FROM np_authors WHERE id = 15;
SELECT name FROM np_authors WHERE id = 22;
SELECT name FROM np_authors WHERE id = 29;
SELECT name FROM np_authors WHERE id = 36;
SELECT name FROM np_authors WHERE id = 43;
COMMIT;
SELECT * FROM np_seen;

-- 2. Bind parameters (PREPARE/EXECUTE), and a loop body of two statements
--    per iteration: for each book, its author then its publisher.
SELECT perfkit.reset_n_plus_one();
PREPARE np_author(int) AS SELECT name FROM np_authors WHERE id = $1;
PREPARE np_publisher(int) AS SELECT name FROM np_publishers WHERE id = $1;
BEGIN;
SELECT id, author_id, publisher_id FROM np_books WHERE id BETWEEN 10 AND 15 ORDER BY id;
EXECUTE np_author(71);  EXECUTE np_publisher(31);
EXECUTE np_author(78);  EXECUTE np_publisher(44);
EXECUTE np_author(85);  EXECUTE np_publisher(57);
EXECUTE np_author(92);  EXECUTE np_publisher(70);
EXECUTE np_author(99);  EXECUTE np_publisher(83);
EXECUTE np_author(6);   EXECUTE np_publisher(96);
COMMIT;
SELECT * FROM np_seen;

-- 3. A loop inside a PL/pgSQL function, reported with the function call as parent.
SELECT perfkit.reset_n_plus_one();
CREATE FUNCTION np_titles_with_authors() RETURNS int LANGUAGE plpgsql AS $$
DECLARE b record; n text; total int := 0;
BEGIN
  FOR b IN SELECT id, author_id FROM np_books WHERE id <= 8 ORDER BY id LOOP
    SELECT name INTO n FROM np_authors WHERE id = b.author_id;
    total := total + 1;
  END LOOP;
  RETURN total;
END $$;
SELECT np_titles_with_authors();
SELECT * FROM np_seen;

-- 4. Not flagged: eager loading with = ANY, an IN list, a JOIN.
SELECT perfkit.reset_n_plus_one();
BEGIN;
SELECT id, author_id FROM np_books WHERE id <= 6 ORDER BY id;
SELECT name FROM np_authors WHERE id = ANY('{8,15,22,29,36,43}'::int[]) ORDER BY id;
SELECT name FROM np_authors WHERE id IN (8, 15, 22, 29, 36, 43) ORDER BY id;
SELECT b.title, a.name FROM np_books b JOIN np_authors a ON a.id = b.author_id WHERE b.id <= 6 ORDER BY b.id;
COMMIT;

-- 5. Not flagged: a loop shorter than perfkit.nplusone_min_repeats.
BEGIN;
SELECT id, author_id FROM np_books WHERE id <= 4 ORDER BY id;
SELECT name FROM np_authors WHERE id = 8;
SELECT name FROM np_authors WHERE id = 15;
SELECT name FROM np_authors WHERE id = 22;
SELECT name FROM np_authors WHERE id = 29;
COMMIT;

-- 6. Not flagged: independent lookups whose keys no earlier statement returned
--    (pgbench -S, or a web worker serving unrelated requests).
BEGIN;
SELECT id, title FROM np_books WHERE id <= 5 ORDER BY id;
SELECT name FROM np_authors WHERE id = 3;
SELECT name FROM np_authors WHERE id = 61;
SELECT name FROM np_authors WHERE id = 17;
SELECT name FROM np_authors WHERE id = 90;
SELECT name FROM np_authors WHERE id = 54;
SELECT name FROM np_authors WHERE id = 38;
COMMIT;
SELECT count(*) AS patterns FROM perfkit.n_plus_one;

-- 7. The same statement with the same values over and over: a caching smell,
--    reported unconfirmed.
BEGIN;
SELECT name FROM np_publishers WHERE id = 5;
SELECT name FROM np_publishers WHERE id = 5;
SELECT name FROM np_publishers WHERE id = 5;
SELECT name FROM np_publishers WHERE id = 5;
SELECT name FROM np_publishers WHERE id = 5;
SELECT name FROM np_publishers WHERE id = 5;
COMMIT;
SELECT * FROM np_seen;

-- 8. Another role's parameters are hidden; resetting is not for PUBLIC.
CREATE ROLE np_other;
SET ROLE np_other;
SELECT query IS NULL AS query_hidden, sample_params IS NULL AS params_hidden
  FROM perfkit.n_plus_one;
SELECT perfkit.reset_n_plus_one();
RESET ROLE;
DROP ROLE np_other;

-- 9. Off switch.
SELECT perfkit.reset_n_plus_one();
SET perfkit.nplusone = off;
BEGIN;
SELECT id, author_id FROM np_books WHERE id <= 6 ORDER BY id;
SELECT name FROM np_authors WHERE id = 8;
SELECT name FROM np_authors WHERE id = 15;
SELECT name FROM np_authors WHERE id = 22;
SELECT name FROM np_authors WHERE id = 29;
SELECT name FROM np_authors WHERE id = 36;
COMMIT;
RESET perfkit.nplusone;
SELECT count(*) AS patterns FROM perfkit.n_plus_one;
