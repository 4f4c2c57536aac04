# Index builds survive restarts and crashes: a build interrupted by an immediate shutdown, a fast
# shutdown or a kill -9 of its worker (which makes the postmaster restart every process) is resumed
# after the restart: its INVALID leftover is dropped concurrently and the index built again, valid.
#
# The build is held in its "waiting for old snapshots" phase by an open REPEATABLE READ transaction,
# so it is certainly in the middle of CREATE INDEX CONCURRENTLY (its INVALID index already exists)
# when the server goes down, whatever the machine's speed.
#
# At start the launcher visits every database, and its builder runs as a superuser: a table that
# merely looks like perfkit's requests table, created by a role in a database without perfkit, is
# ignored (with a warning) and left untouched.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('index_builds_restart');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'perfkit'
restart_after_crash = on
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION perfkit;
CREATE TABLE events (id bigint PRIMARY KEY, kind int, payload text);
INSERT INTO events SELECT g, g % 50, md5(g::text) FROM generate_series(1, 200000) g;
});

# Request a build while a snapshot holder is open, and wait until the build is held by it.
sub start_held_build
{
	my ($name, $columns) = @_;
	my $holder = $node->background_psql('postgres', on_error_stop => 0);
	$holder->query_safe('BEGIN ISOLATION LEVEL REPEATABLE READ');
	$holder->query_safe('SELECT 1');
	$node->safe_psql('postgres',
		"SELECT perfkit.create_index_concurrently('CREATE INDEX $name ON events ($columns)')");
	ok( $node->poll_query_until('postgres',
			"SELECT phase FROM perfkit.index_builds WHERE index_name = '$name'",
			'waiting for old snapshots'),
		"$name: build in progress");
	is( $node->safe_psql('postgres',
			"SELECT indisvalid FROM pg_index WHERE indexrelid = '$name'::regclass"),
		'f', "$name: its index exists, still INVALID");
	return $holder;
}

# After the restart: the build completes, valid, and no INVALID index remains.
sub check_resumed
{
	my ($name) = @_;
	ok( $node->poll_query_until('postgres',
			"SELECT status FROM perfkit.index_builds WHERE index_name = '$name'", 'succeeded'),
		"$name: completed after the restart");
	is( $node->safe_psql('postgres',
			"SELECT attempts FROM perfkit.index_builds WHERE index_name = '$name'"),
		'2', "$name: in a second attempt");
	is( $node->safe_psql('postgres',
			"SELECT indisvalid FROM pg_index WHERE indexrelid = '$name'::regclass"),
		't', "$name: index valid");
	is( $node->safe_psql('postgres',
			q{SELECT count(*) FROM pg_index WHERE indrelid = 'events'::regclass AND NOT indisvalid}),
		'0', "$name: no INVALID index left");
	return;
}

# Discard a session whose server went away.
sub drop_session
{
	my ($session) = @_;
	eval { $session->quit; };
	return;
}

# --- immediate shutdown (a crash, as far as the data directory can tell)
my $log_offset = -s $node->logfile;
my $holder = start_held_build('events_kind_idx', 'kind');
$node->stop('immediate');
drop_session($holder);
$node->start;
check_resumed('events_kind_idx');
ok($node->log_contains(qr/perfkit: resuming 1 interrupted index build/, $log_offset),
	'the builder logged the resumption');
ok($node->log_contains(qr/drops the INVALID index "events_kind_idx"/, $log_offset),
	'and the drop of the leftover');

# --- fast shutdown: the builder is terminated in the middle of the build
$holder = start_held_build('events_payload_idx', 'payload');
$node->stop('fast');
drop_session($holder);
$node->start;
check_resumed('events_payload_idx');

# --- kill -9 of the builder: the postmaster restarts all processes; the request survives
$holder = start_held_build('events_kind_id_idx', 'kind, id');
my $pid = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'perfkit index builder'});
like($pid, qr/^\d+$/, 'found the builder process');
$log_offset = -s $node->logfile;
kill 'KILL', $pid;
$node->wait_for_log(qr/all server processes terminated; reinitializing/, $log_offset);
ok($node->log_contains(qr/was terminated by signal 9/, $log_offset), 'the postmaster saw the crash');
$node->wait_for_log(qr/database system is ready to accept connections/, $log_offset);
drop_session($holder);
check_resumed('events_kind_id_idx');

# --- a lookalike requests table in a database without perfkit: nothing is built from it
$node->safe_psql('postgres', q{
CREATE ROLE mallory LOGIN;
CREATE DATABASE mallorydb OWNER mallory;
});
$node->safe_psql('mallorydb', q{
CREATE TABLE secret (x int);
INSERT INTO secret VALUES (1);
});
$node->safe_psql('mallorydb', q{
CREATE SCHEMA perfkit;
CREATE TABLE perfkit.index_build_requests (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind          text NOT NULL,
    relid         oid NOT NULL,
    indexrelid    oid,
    index_name    name NOT NULL,
    definition    text NOT NULL,
    search_path   text NOT NULL,
    status        text NOT NULL DEFAULT 'pending',
    requested_by  oid NOT NULL,
    requested_at  timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz,
    attempts      integer NOT NULL DEFAULT 0,
    retry_at      timestamptz,
    worker_pid    integer,
    error         text);
INSERT INTO perfkit.index_build_requests
       (kind, relid, index_name, definition, search_path, requested_by, status)
VALUES ('create', 'secret'::regclass, 'secret_pending', 'CREATE INDEX secret_pending ON secret (x)',
        'public', 10, 'pending'),
       ('create', 'secret'::regclass, 'secret_running', 'CREATE INDEX secret_running ON secret (x)',
        'public', 10, 'running');
}, extra_params => [ '-U', 'mallory' ]);
my $rows_before = $node->safe_psql('mallorydb',
	'SELECT * FROM perfkit.index_build_requests ORDER BY id');
$log_offset = -s $node->logfile;
$node->restart;
$node->wait_for_log(
	qr/WARNING:  perfkit: ignoring table perfkit\.index_build_requests in database "mallorydb"/,
	$log_offset);
ok( $node->poll_query_until('postgres',
		q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'perfkit index builder'}, '0'),
	'the builders exited');
is($node->safe_psql('mallorydb', 'SELECT * FROM perfkit.index_build_requests ORDER BY id'),
	$rows_before, 'the lookalike table was not touched (not even its "running" row)');
is( $node->safe_psql('mallorydb',
		q{SELECT count(*) FROM pg_index WHERE indrelid = 'secret'::regclass}),
	'0', "no index was built on the superuser's table");
ok(!$node->log_contains(qr/secret_(pending|running)/, $log_offset), 'nothing about those rows in the log');

$node->stop;
done_testing();
