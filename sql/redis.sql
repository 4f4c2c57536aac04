-- Redis result push without Redis: the key an application computes, argument checks, settings
-- and the status view while the push is off (test/regress.conf sets no perfkit.redis_url).
-- The expected digests were computed independently, with Python's hashlib.sha1.

-- The key: prefix, database, role, SHA-1 of the statement text.
SELECT perfkit.redis_key('SELECT 1')
       = 'perfkit:' || current_database() || ':' || current_user || ':'
         || '42364a017b73ef516a0eca9827e6fa00623257ee' AS key_is_prefix_db_role_sha1;

-- A terminating semicolon (and white space after it) is not part of the statement ...
SELECT split_part(perfkit.redis_key(E'SELECT 1;  \n'), ':', 4) AS semicolon_not_hashed;
-- ... everything before it is, white space and comments included.
SELECT split_part(perfkit.redis_key(E'  SELECT 1 -- one\n'), ':', 4) AS text_hashed_as_sent;

-- Bind parameters: a NUL byte, then the text form with every backslash doubled; \N for NULL.
-- Here: SHA-1 of 'SELECT $1::text, $2::text, $3::int', NUL, 'a\\b', NUL, '\N', NUL, '42'.
SELECT split_part(perfkit.redis_key('SELECT $1::text, $2::text, $3::int', ARRAY['a\b', NULL, '42']), ':', 4)
       AS params_hashed;
SELECT split_part(perfkit.redis_key('SELECT * FROM items WHERE id = $1', ARRAY['7']), ':', 4) AS with_param;
-- a NULL parameter and the text \N differ; no parameters and an empty array agree
SELECT perfkit.redis_key('SELECT $1::text', ARRAY[NULL]) <> perfkit.redis_key('SELECT $1::text', ARRAY['\N'])
       AS null_is_not_backslash_n;
SELECT perfkit.redis_key('SELECT 1', ARRAY[]::text[]) = perfkit.redis_key('SELECT 1') AS empty_params;
-- VALUES and TABLE statements have results too
SELECT split_part(perfkit.redis_key('VALUES (1)'), ':', 4) AS values_statement;

-- Texts that are never pushed have no key.
SELECT perfkit.redis_key(NULL);
SELECT perfkit.redis_key(NULL, ARRAY['1']);
SELECT perfkit.redis_key('SELECT 1; SELECT 2');
SELECT perfkit.redis_key('SELECT 1; -- a comment after the statement');
SELECT perfkit.redis_key('UPDATE items SET a = 1');
SELECT perfkit.redis_key('');
SELECT perfkit.redis_key('SELEC 1');
SELECT perfkit.redis_key('SELECT $1', ARRAY[['a'], ['b']]);

-- The status view while the push is off.
\d perfkit.redis_status
SELECT connected, pushed, invalidated, skipped_unsafe, dropped_queue_full, dropped_stale, errors,
       last_error, queue_bytes, enabled, skipped_too_big
  FROM perfkit.redis_status;
-- never connected, never failed: no times
SELECT last_connected_at IS NULL AS never_connected, last_error_at IS NULL AS never_failed
  FROM perfkit.redis_status;
-- (the report's last section; statement texts in its other sections may mention Redis too)
SELECT line
  FROM regexp_split_to_table(substring(perfkit.report() FROM '== Redis result cache ==.*$'), E'\n') AS line
 WHERE line <> '';

-- Settings are validated.
SET perfkit.redis_url = 'redis://localhost';
ALTER SYSTEM SET perfkit.redis_url = 'http://localhost:6379';
ALTER SYSTEM SET perfkit.redis_url = 'redis://localhost:99999/0';
ALTER SYSTEM SET perfkit.redis_url = 'redis://localhost:6379/zero';
ALTER SYSTEM SET perfkit.redis_url = 'redis://user@localhost';
ALTER SYSTEM SET perfkit.redis_prefix = '';
-- the ping interval's range (the text of the out-of-range error differs between majors)
SELECT min_val, max_val, unit FROM pg_settings WHERE name = 'perfkit.redis_ping_interval';
SET perfkit.redis_exclude_queries = '12, abc';
SET perfkit.redis_exclude_queries = '12, -34';
SHOW perfkit.redis_exclude_queries;
SET perfkit.redis_exclude_tables = 'public.';
SET perfkit.redis_exclude_tables = 'public.orders, audit_log';
SHOW perfkit.redis_exclude_tables;
RESET perfkit.redis_exclude_queries;
RESET perfkit.redis_exclude_tables;
SET perfkit.redis_hot_calls = 0;
SET perfkit.redis_queue_size = '16MB';
