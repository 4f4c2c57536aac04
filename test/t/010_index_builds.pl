# Concurrent index builds requested from transactions: the builder wakes at commit and runs CREATE
# INDEX CONCURRENTLY; rollback means never built; waiting is refused inside a transaction block and
# does not deadlock outside one (a SELECT-style poll does); unique violations, duplicates, INVALID
# leftovers, cancellation, lock timeouts with retry, other databases, non-owners, DROP EXTENSION
# while builds are pending, the requester's code running restricted and as the requester, clean-ups
# bounded by the lock timeout, and interrupted drops being completed.
#
# A build is held at a known point without timing games: an open REPEATABLE READ transaction that
# took a snapshot makes CREATE INDEX CONCURRENTLY wait ("waiting for old snapshots") until it ends.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('index_builds');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'perfkit'
perfkit.index_build_retry_delay = '200ms'
max_worker_processes = 12
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION perfkit;
CREATE TABLE items (id int PRIMARY KEY, a int, b text, v int);
INSERT INTO items SELECT g, g % 100, 'b' || g, g FROM generate_series(1, 20000) g;
CREATE TABLE dups (id int, v int);
INSERT INTO dups SELECT g, g % 5 FROM generate_series(1, 100) g;
});

# Status of the latest request for an index name.
sub status_of
{
	my ($name, $db) = @_;
	return $node->safe_psql($db // 'postgres',
		"SELECT status FROM perfkit.index_builds WHERE index_name = '$name' ORDER BY id DESC LIMIT 1");
}

# CALL the wait procedure; returns its output ("t" when everything finished).
sub wait_builds
{
	my ($db) = @_;
	return $node->safe_psql($db // 'postgres', "CALL perfkit.wait_for_index_builds('3 minutes')");
}

# Is the index valid ('' when it does not exist)?
sub index_valid
{
	my ($name, $db) = @_;
	return $node->safe_psql($db // 'postgres',
		"SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('$name')");
}

# Number of INVALID indexes on a table.
sub invalid_indexes
{
	my ($table) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_index WHERE indrelid = '$table'::regclass AND NOT indisvalid");
}

# Open a session holding a snapshot (and no lock on any table): builds started after this wait.
sub hold_snapshot
{
	my $s = $node->background_psql('postgres');
	$s->query_safe('BEGIN ISOLATION LEVEL REPEATABLE READ');
	$s->query_safe('SELECT 1');
	return $s;
}

# Wait until the latest build of an index is held in its "waiting for old snapshots" phase.
sub wait_stuck
{
	my ($name) = @_;
	return $node->poll_query_until('postgres',
		"SELECT phase FROM perfkit.index_builds WHERE index_name = '$name' ORDER BY id DESC LIMIT 1",
		'waiting for old snapshots');
}

# --- 1. Requested in a transaction, built after COMMIT (the builder is woken at commit).
$node->safe_psql('postgres', q{
BEGIN;
SELECT perfkit.create_index_concurrently('CREATE INDEX items_a_idx ON items (a)');
COMMIT;
});
ok($node->poll_query_until('postgres',
		q{SELECT status FROM perfkit.index_builds WHERE index_name = 'items_a_idx'}, 'succeeded'),
	'committed request is built by the background worker');
is(index_valid('items_a_idx'), 't', 'the index exists and is valid');
is( $node->safe_psql('postgres',
		q{SELECT requested_by = current_user AND attempts = 1 AND error IS NULL
		    AND finished_at >= started_at AND started_at >= requested_at
		    FROM perfkit.index_builds WHERE index_name = 'items_a_idx'}),
	't', 'view: requester, one attempt, no error, consistent timestamps');

# --- 2. Rolled back: never built (the request vanished with the transaction).
$node->safe_psql('postgres', q{
BEGIN;
SELECT perfkit.create_index_concurrently('CREATE INDEX items_rolled_back ON items (b)');
ROLLBACK;
SELECT perfkit.create_index_concurrently('CREATE INDEX items_b_idx ON items (b)');
});
is(wait_builds(), 't', 'wait procedure reports all builds finished');
is(status_of('items_b_idx'), 'succeeded', 'the next request was built');
is( $node->safe_psql('postgres',
		q{SELECT count(*) FROM perfkit.index_builds WHERE index_name = 'items_rolled_back'}),
	'0', 'rolled-back request left no row');
is(index_valid('items_rolled_back'), '', 'rolled-back request was never built');

# --- 3. Waiting inside a transaction block fails at once.
my ($ret, $stdout, $stderr) = $node->psql('postgres', q{
BEGIN;
SELECT perfkit.create_index_concurrently('CREATE INDEX items_v_idx ON items (v)');
CALL perfkit.wait_for_index_builds('10 minutes');
COMMIT;
});
like($stderr, qr/ERROR:  perfkit\.wait_for_index_builds\(\) cannot run inside a transaction block/,
	'wait inside a transaction block: error');
is( $node->safe_psql('postgres',
		q{SELECT count(*) FROM perfkit.index_builds WHERE index_name = 'items_v_idx'}),
	'0', 'the failed transaction requested nothing');

# --- 4. The procedure waits without holding a snapshot, so a build it waits for can finish.
my $holder = hold_snapshot();
$node->safe_psql('postgres',
	q{SELECT perfkit.create_index_concurrently('CREATE INDEX items_v_idx ON items (v)')});
ok(wait_stuck('items_v_idx'), 'build held by an older snapshot');

my $waiter = $node->background_psql('postgres');
$waiter->query_until(qr/waiting/, "\\echo waiting\nCALL perfkit.wait_for_index_builds('3 minutes');\n");
ok( $node->poll_query_until('postgres',
		q{SELECT wait_event = 'Extension' AND backend_xmin IS NULL FROM pg_stat_activity
		   WHERE query LIKE 'CALL perfkit.wait_for_index_builds%' AND state = 'active'}),
	'the procedure sleeps between its polls holding no snapshot');
is(status_of('items_v_idx'), 'running', 'the build is still running');

$holder->query_safe('COMMIT');
my $waited = $waiter->query('SELECT 1');
like($waited, qr/^t\n1$/, 'the procedure returned finished = true once the build completed');
is(status_of('items_v_idx'), 'succeeded', 'build succeeded while the procedure waited');
is(index_valid('items_v_idx'), 't', 'its index is valid');

# A SELECT-style long poll holds its statement's snapshot, which the build waits for: it can only
# give up.  (The build cannot finish while the SELECT runs, whatever the timing.)
$node->safe_psql('postgres', q{
CREATE FUNCTION poll_for(name text, seconds int) RETURNS text LANGUAGE plpgsql AS $$
DECLARE s text;
BEGIN
    FOR i IN 1 .. seconds * 10 LOOP
        SELECT status INTO s FROM perfkit.index_builds WHERE index_name = name ORDER BY id DESC LIMIT 1;
        IF s IN ('succeeded', 'failed', 'skipped', 'cancelled') THEN
            RETURN s;
        END IF;
        PERFORM pg_sleep(0.1);
    END LOOP;
    RETURN 'gave up while ' || coalesce(s, 'not requested');
END $$;
});
my $poller = $node->background_psql('postgres');
$poller->query_until(qr/polling/, "\\echo polling\nSELECT poll_for('items_ab_idx', 3);\n");
ok( $node->poll_query_until('postgres',
		q{SELECT backend_xmin IS NOT NULL FROM pg_stat_activity
		   WHERE query LIKE 'SELECT poll_for(%' AND state = 'active'}),
	'the polling SELECT runs before the request');
$node->safe_psql('postgres',
	q{SELECT perfkit.create_index_concurrently('CREATE INDEX items_ab_idx ON items (a, b)')});
my $polled = $poller->query('SELECT 1');
like($polled, qr/^gave up while (pending|running|not requested)\n1$/,
	'a SELECT polling for the build never sees it finish (the build waits for its snapshot)');
$poller->quit;
is(wait_builds(), 't', 'the build finishes once the SELECT has ended');
is(status_of('items_ab_idx'), 'succeeded', 'and it succeeded');
$waiter->quit;
$holder->quit;

# --- 5. Unique violation: failed with the error, no INVALID index left behind.
$node->safe_psql('postgres',
	q{SELECT perfkit.create_index_concurrently('CREATE UNIQUE INDEX dups_v_key ON dups (v)')});
wait_builds();
is(status_of('dups_v_key'), 'failed', 'unique index over duplicates: failed');
like( $node->safe_psql('postgres',
		q{SELECT error FROM perfkit.index_builds WHERE index_name = 'dups_v_key'}),
	qr/could not create unique index "dups_v_key" \(Key \(v\)=\(\d\) is duplicated\.\)/,
	'error text recorded');
is( $node->safe_psql('postgres',
		q{SELECT attempts FROM perfkit.index_builds WHERE index_name = 'dups_v_key'}),
	'1', 'not retried (retrying cannot help)');
is(invalid_indexes('dups'), '0', 'no INVALID index left');
is(index_valid('dups_v_key'), '', 'the failed index was dropped');

# --- 6. The same definition again: skipped.
$node->safe_psql('postgres',
	q{SELECT perfkit.create_index_concurrently('items', ARRAY['a'], name => 'items_a_idx')});
wait_builds();
is(status_of('items_a_idx'), 'skipped', 'identical index already there: skipped');

# --- 7. A leftover INVALID index of the same name (from anyone's failed build) is dropped and rebuilt.
$node->psql('postgres', 'CREATE UNIQUE INDEX CONCURRENTLY dups_id_key ON dups (v)');
is(index_valid('dups_id_key'), 'f', 'a failed CREATE INDEX CONCURRENTLY left an INVALID index');
my $old_oid = $node->safe_psql('postgres', q{SELECT 'dups_id_key'::regclass::oid});
$node->safe_psql('postgres', q{
SELECT perfkit.create_index_concurrently('CREATE UNIQUE INDEX dups_id_key ON dups (id)');
});
wait_builds();
is(status_of('dups_id_key'), 'succeeded', 'request over the INVALID leftover succeeded');
is(index_valid('dups_id_key'), 't', 'the index is valid now');
isnt($node->safe_psql('postgres', q{SELECT 'dups_id_key'::regclass::oid}), $old_oid,
	'it is a new index (the leftover was dropped)');
is(invalid_indexes('dups'), '0', 'no INVALID index on the table');

# --- 8. Cancelling a running build: cancelled, nothing left behind.
$holder = hold_snapshot();
my $id = $node->safe_psql('postgres',
	q{SELECT perfkit.create_index_concurrently('CREATE INDEX items_b_v_idx ON items (b, v)')});
ok(wait_stuck('items_b_v_idx'), 'build running');
is($node->safe_psql('postgres', "SELECT perfkit.cancel_index_build($id)"), 't', 'cancel accepted');
ok($node->poll_query_until('postgres', "SELECT status FROM perfkit.index_builds WHERE id = $id", 'cancelled'),
	'running build cancelled');
is(index_valid('items_b_v_idx'), '', 'its INVALID index was dropped');
$holder->query_safe('COMMIT');
$holder->quit;

# --- 9. Lock timeouts are retried, then reported; the INVALID index is dropped each time.
$node->safe_psql('postgres', q{
ALTER SYSTEM SET perfkit.index_build_lock_timeout = '300ms';
ALTER SYSTEM SET perfkit.index_build_max_attempts = 2;
SELECT pg_reload_conf();
});
$holder = hold_snapshot();
$node->safe_psql('postgres',
	q{SELECT perfkit.create_index_concurrently('CREATE INDEX items_lt_idx ON items (v, a)')});
ok($node->poll_query_until('postgres',
		q{SELECT status FROM perfkit.index_builds WHERE index_name = 'items_lt_idx'}, 'failed'),
	'build failed after its lock timeouts');
is( $node->safe_psql('postgres',
		q{SELECT attempts || ' ' || error FROM perfkit.index_builds WHERE index_name = 'items_lt_idx'}),
	'2 canceling statement due to lock timeout', 'retried once, then failed with the lock timeout');
is(index_valid('items_lt_idx'), '', 'no INVALID index left while the old transaction is still open');
$holder->query_safe('COMMIT');
$holder->quit;
$node->safe_psql('postgres', q{
ALTER SYSTEM RESET perfkit.index_build_lock_timeout;
ALTER SYSTEM RESET perfkit.index_build_max_attempts;
SELECT pg_reload_conf();
});

# --- 10. Another database: the launcher starts a builder there.
$node->safe_psql('postgres', 'CREATE DATABASE other');
$node->safe_psql('other', q{
CREATE EXTENSION perfkit;
CREATE TABLE t AS SELECT g AS x FROM generate_series(1, 1000) g;
SELECT perfkit.create_index_concurrently('CREATE INDEX t_x_idx ON t (x)');
});
is(wait_builds('other'), 't', 'waited in the other database');
is(status_of('t_x_idx', 'other'), 'succeeded', 'built in the other database');
is(index_valid('t_x_idx', 'other'), 't', 'valid there');

# --- 11. Only the table's owner may ask; the view hides other roles' errors.
$node->safe_psql('postgres', q{
CREATE ROLE app LOGIN;
GRANT USAGE, CREATE ON SCHEMA public TO app;
});
($ret, $stdout, $stderr) = $node->psql('postgres',
	q{SELECT perfkit.create_index_concurrently('CREATE INDEX items_by_app ON items (b)')},
	extra_params => [ '-U', 'app' ]);
like($stderr, qr/ERROR:  must be owner of table "items"/, 'non-owner: error');
is( $node->safe_psql('postgres',
		q{SET ROLE app; SELECT count(*) FROM perfkit.index_builds WHERE error IS NOT NULL}),
	'0', 'other roles see no error texts');
$node->safe_psql('postgres',
	q{CREATE TABLE app_t (x int); INSERT INTO app_t VALUES (1), (1); SELECT perfkit.create_index_concurrently('CREATE UNIQUE INDEX app_t_x ON app_t (x)')},
	extra_params => [ '-U', 'app' ]);
wait_builds();
is( $node->safe_psql('postgres',
		q{SELECT status, error IS NOT NULL FROM perfkit.index_builds WHERE index_name = 'app_t_x'},
		extra_params => [ '-U', 'app' ]),
	'failed|t', 'the requester sees the error of its own build');

# --- 12. DROP EXTENSION while builds are pending: the running one finishes, the worker goes away
# quietly, nothing else is built, no errors in the log.
$holder = hold_snapshot();
$node->safe_psql('postgres', q{
SELECT perfkit.create_index_concurrently('CREATE INDEX items_b_a_idx ON items (b, a)');
SELECT perfkit.create_index_concurrently('CREATE INDEX items_v_b_idx ON items (v, b)');
});
ok(wait_stuck('items_b_a_idx'), 'one build running, one pending');
my $log_offset = -s $node->logfile;
$node->safe_psql('postgres', 'DROP EXTENSION perfkit');
$holder->query_safe('COMMIT');
$holder->quit;
ok( $node->poll_query_until('postgres',
		q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'perfkit index builder'}, '0'),
	'the builder exited');
is(index_valid('items_b_a_idx'), 't', 'the build that was running completed');
is(index_valid('items_v_b_idx'), '', 'the pending one was not built');
my $log = slurp_file($node->logfile, $log_offset);
unlike($log, qr/ERROR|FATAL/, 'no error in the server log');
$node->safe_psql('postgres', q{
CREATE EXTENSION perfkit;
SELECT perfkit.create_index_concurrently('CREATE INDEX items_v_b_idx ON items (v, b)');
});
is(wait_builds(), 't', 'after CREATE EXTENSION again');
is(status_of('items_v_b_idx'), 'succeeded', 'requests work again');

# --- 13. The requester's code runs restricted: comparing a request with an existing index
# constant-folds its expressions, which calls the requester's IMMUTABLE functions; like CREATE INDEX
# itself, perfkit runs them as the table's owner in a security-restricted operation (no temporary
# tables) whose setting changes are undone, so nothing reaches the next build.  During the builds the
# session user is the requester, not the builder's superuser.  (Names inside the functions are
# schema-qualified: from 17 on, CREATE INDEX runs them with search_path = pg_catalog, pg_temp.)
$node->safe_psql('postgres', q{
CREATE TABLE app_probe_log (step text, sess_user text, cur_user text, leaked text, temp_table text);
CREATE FUNCTION app_probe(step text) RETURNS int LANGUAGE plpgsql VOLATILE AS $$
DECLARE t text := 'created';
BEGIN
    IF current_setting('application_name') = 'perfkit index builder' THEN
        BEGIN
            CREATE TEMP TABLE app_hijack (x int);
        EXCEPTION WHEN OTHERS THEN
            t := SQLERRM;
        END;
        INSERT INTO public.app_probe_log
            VALUES (step, session_user, current_user, current_setting('app.leak', true), t);
        PERFORM set_config('app.leak', 'leaked by ' || step, false);
    END IF;
    RETURN 0;
END $$;
CREATE FUNCTION app_fold(step text) RETURNS int LANGUAGE plpgsql IMMUTABLE
    AS $$ BEGIN RETURN public.app_probe(step); END $$;
CREATE TABLE app_probed (x int);
INSERT INTO app_probed VALUES (1), (2);
CREATE INDEX app_probed_a ON app_probed ((x + app_fold('a')));
BEGIN;
SELECT perfkit.create_index_concurrently('CREATE INDEX app_probed_a ON app_probed ((x + app_fold(''a'')))');
SELECT perfkit.create_index_concurrently('CREATE INDEX app_probed_b ON app_probed ((x + app_fold(''b'')))');
COMMIT;
}, extra_params => [ '-U', 'app' ]);
wait_builds();
is(status_of('app_probed_a'), 'skipped', 'the request matching an existing index: skipped');
is(status_of('app_probed_b'), 'succeeded', 'the next build of the same builder: succeeded');
is( $node->safe_psql('postgres',
		q{SELECT temp_table FROM app_probe_log WHERE step = 'a'}),
	'cannot create temporary table within security-restricted operation',
	"the comparison ran the requester's function once, in a security-restricted operation");
is( $node->safe_psql('postgres',
		q{SELECT count(*) FROM app_probe_log WHERE leaked LIKE 'leaked by a%'}),
	'0', 'a setting changed by that function did not reach the next build');
is( $node->safe_psql('postgres',
		q{SELECT count(*) > 0 AND bool_and(temp_table <> 'created') FROM app_probe_log WHERE step = 'b'}),
	't', 'the build ran it restricted as well');
is( $node->safe_psql('postgres',
		q{SELECT string_agg(DISTINCT sess_user || '/' || cur_user, ',') FROM app_probe_log}),
	'app/app', 'session user and current user were the requester throughout');

# --- 14. The clean-up after a failed build is bounded by the lock timeout too: with a transaction
# holding a lock on the table, the INVALID index cannot be dropped; the error says so, and the next
# request of the index drops it first.
$node->safe_psql('postgres', q{
ALTER SYSTEM SET perfkit.index_build_lock_timeout = '300ms';
ALTER SYSTEM SET perfkit.index_build_max_attempts = 1;
SELECT pg_reload_conf();
});
my $locker = $node->background_psql('postgres');
$locker->query_safe('BEGIN ISOLATION LEVEL REPEATABLE READ');
$locker->query_safe('SELECT count(*) FROM items');
$node->safe_psql('postgres',
	q{SELECT perfkit.create_index_concurrently('CREATE INDEX items_cl_idx ON items (a, v)')});
ok($node->poll_query_until('postgres',
		q{SELECT status FROM perfkit.index_builds WHERE index_name = 'items_cl_idx'}, 'failed'),
	'build failed on the lock timeout while the lock is still held (the clean-up did not hang)');
is( $node->safe_psql('postgres',
		q{SELECT error FROM perfkit.index_builds WHERE index_name = 'items_cl_idx'}),
	'canceling statement due to lock timeout; the INVALID index "items_cl_idx" could not be dropped '
	  . '(canceling statement due to lock timeout), a new request of the index drops it first',
	'the error tells that the INVALID index was left');
is(index_valid('items_cl_idx'), 'f', 'the INVALID index is still there');
$locker->query_safe('COMMIT');
$node->safe_psql('postgres', q{
ALTER SYSTEM RESET perfkit.index_build_lock_timeout;
ALTER SYSTEM RESET perfkit.index_build_max_attempts;
SELECT pg_reload_conf();
SELECT perfkit.create_index_concurrently('CREATE INDEX items_cl_idx ON items (a, v)');
});
wait_builds();
is(status_of('items_cl_idx'), 'succeeded', 'the next request dropped the leftover and built the index');
is(index_valid('items_cl_idx'), 't', 'valid');
is(invalid_indexes('items'), '0', 'no INVALID index on the table');

# --- 15. DROP INDEX CONCURRENTLY marks the index INVALID before it waits for the table's users; a
# drop cancelled while it waits is completed instead of leaving an INVALID index behind.
$node->safe_psql('postgres', 'CREATE INDEX items_drop_me ON items (b, id)');
$locker->query_safe('BEGIN');
$locker->query_safe('SELECT count(*) FROM items');
$id = $node->safe_psql('postgres', q{SELECT perfkit.drop_index_concurrently('items_drop_me')});
ok( $node->poll_query_until('postgres',
		q{SELECT NOT indisvalid AND (SELECT wait_event = 'virtualxid' FROM pg_stat_activity
		                              WHERE backend_type = 'perfkit index builder')
		    FROM pg_index WHERE indexrelid = 'items_drop_me'::regclass}),
	'the drop made the index INVALID and waits for the open transaction');
$log_offset = -s $node->logfile;
is($node->safe_psql('postgres', "SELECT perfkit.cancel_index_build($id)"), 't', 'cancel accepted');
$node->wait_for_log(qr/completes the interrupted drop of the INVALID index "items_drop_me"/, $log_offset);
ok( $node->poll_query_until('postgres',
		q{SELECT wait_event FROM pg_stat_activity WHERE backend_type = 'perfkit index builder'},
		'virtualxid'),
	'the completing drop waits for the open transaction too');
$locker->query_safe('COMMIT');
$locker->quit;
ok($node->poll_query_until('postgres', "SELECT status FROM perfkit.index_builds WHERE id = $id", 'succeeded'),
	'the drop was completed');
is( $node->safe_psql('postgres', "SELECT error FROM perfkit.index_builds WHERE id = $id"),
	'cancelled by perfkit.cancel_index_build(); the index had already been made INVALID, so the drop was completed',
	'the error tells why');
is(index_valid('items_drop_me'), '', 'the index is gone');
is(invalid_indexes('items'), '0', 'no INVALID index on the table');

# --- 16. Without shared_preload_libraries the functions fail like the rest of perfkit.
$node->adjust_conf('postgresql.conf', 'shared_preload_libraries', "''");
$node->restart;
foreach my $sql (
	q{SELECT perfkit.create_index_concurrently('CREATE INDEX items_x ON items (a)')},
	q{SELECT perfkit.create_index_concurrently('items', ARRAY['a'])},
	q{SELECT perfkit.drop_index_concurrently('items_a_idx')},
	q{SELECT perfkit.cancel_index_build(1)},
	q{CALL perfkit.wait_for_index_builds()})
{
	($ret, $stdout, $stderr) = $node->psql('postgres', $sql);
	like($stderr,
		qr/ERROR:  perfkit must be loaded via "shared_preload_libraries"\nHINT:  .*shared_preload_libraries/,
		"not preloaded: $sql");
}

$node->stop;
done_testing();
