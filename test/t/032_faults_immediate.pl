# pg_ctl stop -m immediate while index builds run and while the Redis pusher pushes under a
# pgbench load.  After each restart: every build request committed before the stop completes (the
# interrupted one in a further attempt), no INVALID index remains, the pusher reconnects and pushes
# again (and Redis holds no value older than a write committed before the stop), perfkit logs
# nothing about its statistics file (an immediate stop saves none, by design, so there is none to
# load and none damaged), and a pgbench run after the restart has no failed statement.
#
# Round 1 holds the first build in CREATE INDEX CONCURRENTLY's "waiting for old snapshots" phase
# (an open REPEATABLE READ transaction), so the stop certainly interrupts a build.  Even rounds stop
# the server at whatever point the unheld builds and the load have reached after 0.3 s, odd rounds
# as soon as their second build is running.
use strict;
use warnings;

use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use PerfkitRedis;    # redis-server child, redis_cli, poll_until, key_of, $redis_port, $role

my %figures = (stops => 0, builds => 0, pushes_resumed => 0);

redis_start();
my $node = PostgreSQL::Test::Cluster->new('faults_immediate');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'perfkit'
perfkit.redis_url = 'redis://127.0.0.1:$redis_port/0'
perfkit.redis_hot_calls = 2
log_statement = none
});
$node->start;
$role = $node->safe_psql('postgres', 'SELECT current_user');
$node->safe_psql('postgres', q{
CREATE EXTENSION perfkit;
CREATE TABLE events (id bigint PRIMARY KEY, kind int, payload text);
INSERT INTO events SELECT g, g % 50, md5(g::text) FROM generate_series(1, 100000) g;
CREATE TABLE kv (id int PRIMARY KEY, v text NOT NULL);
INSERT INTO kv SELECT g, 'value ' || g FROM generate_series(1, 1000) g;
});

sub status
{
	return $node->safe_psql('postgres', "SELECT $_[0] FROM perfkit.redis_status");
}

sub pushed_v
{
	my $raw = redis_cli('GET', $_[0]);
	return '' if $raw eq '';
	return decode_json($raw)->{rows}[0][1];
}
my $q = 'SELECT id, v FROM kv WHERE id = $1';

my $dir = PostgreSQL::Test::Utils::tempdir();
PostgreSQL::Test::Utils::append_to_file("$dir/hot.sql",
	"\\set id random(1, 1000)\nSELECT id, v FROM kv WHERE id = :id;\nSELECT id, v FROM kv WHERE id = 1;\n"
	  . "UPDATE events SET kind = kind WHERE id = :id;\n");

# pgbench with the hot workload for $secs seconds, started in the background.
sub start_load
{
	my ($secs, $out) = @_;
	local %ENV = %ENV;
	$ENV{PGHOST} = $node->host;
	$ENV{PGPORT} = $node->port;
	return IPC::Run::start([ 'pgbench', '-n', '-M', 'prepared', '-c', '2', '-j', '2', '-T', $secs,
			'-f', "$dir/hot.sql", 'postgres' ],
		'>', $out, '2>&1', IPC::Run::timeout(120));
}

# Immediate stop and start; returns the log offset of the start.
sub immediate_restart
{
	my ($what, @sessions) = @_;
	$figures{stops}++;
	$node->stop('immediate');
	eval { $_->quit; } for @sessions;
	my $offset = -s $node->logfile;
	$node->start;
	is($node->safe_psql('postgres', 'SELECT 1'), '1', "$what: the server starts");
	return $offset;
}

# After the restart: builds, Redis, statistics file, user statements.
sub check_after
{
	my ($what, $offset, $want, @names) = @_;
	for my $name (@names)
	{
		ok( $node->poll_query_until('postgres',
				"SELECT status FROM perfkit.index_builds WHERE index_name = '$name'", 'succeeded'),
			"$what: $name completed")
		  and $figures{builds}++;
	}
	is( $node->safe_psql('postgres',
			q{SELECT count(*) FROM pg_index WHERE indrelid = 'events'::regclass AND NOT indisvalid}),
		'0', "$what: no INVALID index");
	ok(poll_until(sub { status('connected') eq 't' }), "$what: the pusher reconnects");
	my $out = '';
	my $load = start_load(2, \$out);
	$load->finish;
	like($out, qr/failed transactions: 0 /, "$what: user statements work, none failed") or diag($out);
	ok(poll_until(sub { status('pushed') > 0 }), "$what: pushes resume") and $figures{pushes_resumed}++;
	ok(poll_until(sub { pushed_v(key_of($q, '1')) eq $want }), "$what: the hot key has '$want'");
	ok(!$node->log_contains(qr/perfkit statistics file/, $offset),
		"$what: nothing logged about the statistics file");
	ok(!$node->log_contains(qr/TRAP:|PANIC:/, $offset), "$what: no assertion failure or PANIC");
	return;
}

# --- round 1: a build held mid-way, two queued behind it, pushes under load
{
	my $what = 'immediate stop, held build';
	my $holder = $node->background_psql('postgres', on_error_stop => 0);
	$holder->query_safe('BEGIN ISOLATION LEVEL REPEATABLE READ');
	$holder->query_safe('SELECT 1');
	$node->safe_psql('postgres', q{
BEGIN;
SELECT perfkit.create_index_concurrently('CREATE INDEX r1_kind_idx ON events (kind)');
SELECT perfkit.create_index_concurrently('CREATE INDEX r1_payload_idx ON events (payload)');
SELECT perfkit.create_index_concurrently('events', ARRAY['kind', 'id'], name => 'r1_kind_id_idx');
COMMIT;
UPDATE kv SET v = 'before round 1' WHERE id = 1;
});
	ok( $node->poll_query_until('postgres',
			q{SELECT phase FROM perfkit.index_builds WHERE index_name = 'r1_kind_idx'},
			'waiting for old snapshots'),
		"$what: build in progress");
	my $out = '';
	my $load = start_load(5, \$out);
	ok(poll_until(sub { status('pushed') > 0 }, 10), "$what: pushing under load");
	sleep 1;
	my $offset = immediate_restart($what, $holder);
	eval { $load->finish; };
	is( $node->safe_psql('postgres',
			q{SELECT string_agg(status, ',' ORDER BY id) FROM perfkit.index_builds WHERE index_name LIKE 'r1%'})
		  =~ /^(running|pending|succeeded)(,(pending|running|succeeded)){2}$/ ? 1 : 0,
		1, "$what: the requests survived");
	check_after($what, $offset, 'before round 1', 'r1_kind_idx', 'r1_payload_idx', 'r1_kind_id_idx');
	is( $node->safe_psql('postgres',
			q{SELECT attempts FROM perfkit.index_builds WHERE index_name = 'r1_kind_idx'}),
		'2', "$what: the interrupted build was resumed in a second attempt");
}

# --- rounds 2 and 3: unheld builds and the load, stopped after a moment
# PK_FAULT_ROUNDS (default 3) sets the number of rounds for a longer run of this file under prove.
for my $round (2 .. ($ENV{PK_FAULT_ROUNDS} // 3))
{
	my $what = "immediate stop, round $round";
	my @names = map { "r${round}_$_" } qw(a b c);
	$node->safe_psql('postgres', qq{
BEGIN;
SELECT perfkit.create_index_concurrently('CREATE INDEX $names[0] ON events (payload, kind)');
SELECT perfkit.create_index_concurrently('CREATE INDEX $names[1] ON events (kind, payload)');
SELECT perfkit.create_index_concurrently('CREATE INDEX $names[2] ON events (id, payload)');
COMMIT;
UPDATE kv SET v = 'before round $round' WHERE id = 1;
});
	my $out = '';
	my $load = start_load(5, \$out);
	ok(poll_until(sub { status('pushed') > 0 }, 10), "$what: pushing under load");
	if ($round % 2 == 0)
	{
		select(undef, undef, undef, 0.3);
	}
	else
	{
		# stop while the second build runs
		$node->poll_query_until('postgres',
			"SELECT status = 'running' FROM perfkit.index_builds WHERE index_name = '$names[1]'");
	}
	my $offset = immediate_restart($what);
	eval { $load->finish; };
	check_after($what, $offset, "before round $round", @names);
}
$figures{interrupted} = $node->safe_psql('postgres',
	q{SELECT count(*) FROM perfkit.index_builds WHERE attempts > 1});
cmp_ok($figures{interrupted}, '>=', 1, 'builds were interrupted and resumed');

diag(sprintf('immediate stops %d; builds completed after them %d (%d interrupted and resumed); pushes resumed %d times',
		@figures{qw(stops builds interrupted pushes_resumed)}));
$node->stop;
redis_stop();
done_testing();
