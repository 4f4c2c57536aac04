# Faults of perfkit's background workers: kill -9 of the index-build launcher, of a per-database
# index builder in the middle of a build, and of the Redis pusher; a plain terminate (SIGTERM, as
# pg_terminate_backend sends) of the launcher, of a builder mid-build and of the pusher.
#
# kill -9 of any background worker makes the postmaster restart the whole cluster (restart_after_crash
# = on).  After each fault the test asserts recovery: the cluster accepts connections again, every
# build request committed before the fault completes (attempts counted, no INVALID index left, also
# the requests queued behind the interrupted build), a pgbench run of user statements afterwards has
# no failed statement, the launcher is running again, and the pusher reconnects to Redis and pushes
# again (and Redis holds no value older than a write committed before the fault).  A terminated
# launcher or pusher is started again by the postmaster (after its bgw_restart_time) and carries
# on; a terminated builder causes no crash-restart, and the launcher starts a builder again after
# perfkit.index_build_retry_delay, which resumes the interrupted build.
#
# Builds are held in CREATE INDEX CONCURRENTLY's "waiting for old snapshots" phase by an open
# REPEATABLE READ transaction, so the fault certainly hits a build in progress (its INVALID index
# exists) whatever the machine's speed.  Every wait polls with a deadline.
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

my %figures = (faults => 0, survived => 0, builds_after_fault => 0, pushes_resumed => 0);

redis_start();
my $node = PostgreSQL::Test::Cluster->new('faults_workers');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'perfkit'
restart_after_crash = on
perfkit.redis_url = 'redis://127.0.0.1:$redis_port/0'
perfkit.redis_hot_calls = 2
perfkit.index_build_max_workers = 2
perfkit.index_build_retry_delay = '1s'
log_statement = none
});
$node->start;
$role = $node->safe_psql('postgres', 'SELECT current_user');

$node->safe_psql('postgres', 'CREATE DATABASE other');
for my $db ('postgres', 'other')
{
	$node->safe_psql($db, q{
CREATE EXTENSION perfkit;
CREATE TABLE events (id bigint PRIMARY KEY, kind int, payload text);
INSERT INTO events SELECT g, g % 50, md5(g::text) FROM generate_series(1, 50000) g;
CREATE TABLE kv (id int PRIMARY KEY, v text NOT NULL);
INSERT INTO kv SELECT g, 'value ' || g FROM generate_series(1, 1000) g;
});
}

# Process id of the postmaster's child whose title contains $title ('' when there is none).
sub child_pid
{
	my ($title) = @_;
	open(my $fh, '<', $node->data_dir . '/postmaster.pid') or return '';
	my $pm = <$fh>;
	close($fh);
	chomp $pm;
	for my $dir (glob('/proc/[0-9]*'))
	{
		my ($stat, $cmd);
		next unless open(my $s, '<', "$dir/stat");
		$stat = <$s>;
		close($s);
		next unless defined $stat && $stat =~ /^(\d+) \(.*\) \S (\d+) /s && $2 == $pm;
		my $pid = $1;
		next unless open(my $c, '<', "$dir/cmdline");
		$cmd = do { local $/; <$c> } // '';
		close($c);
		return $pid if $cmd =~ /\Q$title\E/;
	}
	return '';
}

sub status
{
	return $node->safe_psql('postgres', "SELECT $_[0] FROM perfkit.redis_status");
}

# Request builds of the given indexes on events in $db, the first one held mid-build by an open
# REPEATABLE READ transaction (returned), the others queued behind it.
sub held_builds
{
	my ($db, @defs) = @_;
	my $holder = $node->background_psql($db, on_error_stop => 0);
	$holder->query_safe('BEGIN ISOLATION LEVEL REPEATABLE READ');
	$holder->query_safe('SELECT 1');
	for my $d (@defs)
	{
		my ($name, $cols) = @$d;
		$node->safe_psql($db,
			"BEGIN; SELECT perfkit.create_index_concurrently('CREATE INDEX $name ON events ($cols)'); COMMIT");
	}
	my $first = $defs[0][0];
	ok( $node->poll_query_until($db,
			"SELECT phase FROM perfkit.index_builds WHERE index_name = '$first'",
			'waiting for old snapshots'),
		"$db.$first: build in progress");
	is( $node->safe_psql($db,
			"SELECT string_agg(status, ',' ORDER BY id) FROM perfkit.index_builds WHERE status IN ('running', 'pending')"),
		join(',', 'running', ('pending') x (@defs - 1)),
		"$db: one build running, the others queued");
	return $holder;
}

# After a fault: every listed build succeeded, its index valid, no INVALID index on events.
sub check_builds
{
	my ($what, $db, @names) = @_;
	for my $name (@names)
	{
		ok( $node->poll_query_until($db,
				"SELECT status FROM perfkit.index_builds WHERE index_name = '$name'", 'succeeded'),
			"$what: $db.$name completed")
		  and $figures{builds_after_fault}++;
		is( $node->safe_psql($db,
				"SELECT indisvalid FROM pg_index WHERE indexrelid = '$name'::regclass"),
			't', "$what: $db.$name valid");
	}
	is( $node->safe_psql($db,
			q{SELECT count(*) FROM pg_index WHERE indrelid = 'events'::regclass AND NOT indisvalid}),
		'0', "$what: no INVALID index left in $db");
	return;
}

# Failed tests so far (a fault counts as survived when none of its checks failed).
sub failures { return scalar grep { !$_ } Test::More->builder->summary; }

# Discard a session whose server went away.
sub drop_session
{
	eval { $_[0]->quit; };
	return;
}

my $dir = PostgreSQL::Test::Utils::tempdir();
PostgreSQL::Test::Utils::append_to_file("$dir/hot.sql",
	"\\set id random(1, 1000)\nSELECT id, v FROM kv WHERE id = :id;\nSELECT id, v FROM kv WHERE id = 1;\n"
	  . "UPDATE events SET kind = kind WHERE id = :id;\n");

# A short pgbench run of user statements: no statement may fail.
sub workload
{
	my ($what) = @_;
	my $out = '';
	local %ENV = %ENV;
	$ENV{PGHOST} = $node->host;
	$ENV{PGPORT} = $node->port;
	IPC::Run::run([ 'pgbench', '-n', '-M', 'prepared', '-c', '2', '-j', '2', '-T', '2',
			'-f', "$dir/hot.sql", 'postgres' ],
		'>', \$out, '2>&1', IPC::Run::timeout(120));
	like($out, qr/failed transactions: 0 /, "$what: user statements work, none failed")
	  or diag($out);
	return;
}

my $q = 'SELECT id, v FROM kv WHERE id = $1';

sub pushed_v
{
	my $raw = redis_cli('GET', $_[0]);
	return '' if $raw eq '';
	return decode_json($raw)->{rows}[0][1];
}

# Redis side after a fault: connected again, pushes resume, the hot key holds $want (the value of
# a write committed before the fault, never an older one).
sub check_pusher
{
	my ($what, $want) = @_;
	ok(poll_until(sub { status('connected') eq 't' }), "$what: the pusher is connected to redis");
	my $pushed = status('pushed');
	workload($what);
	ok(poll_until(sub { status('pushed') > $pushed }), "$what: pushes resume")
	  and $figures{pushes_resumed}++;
	ok(poll_until(sub { pushed_v(key_of($q, '1')) eq $want }), "$what: the hot key has '$want'");
	return;
}

# The crash-restart that follows a kill -9: wait for it, then for the cluster to accept connections.
sub kill9
{
	my ($what, $pid) = @_;
	like($pid, qr/^\d+$/, "$what: found the process");
	my $offset = -s $node->logfile;
	$figures{faults}++;
	kill 'KILL', $pid;
	ok($node->wait_for_log(qr/all server processes terminated; reinitializing/, $offset),
		"$what: the postmaster restarts the cluster");
	ok($node->log_contains(qr/\Q$pid\E\) was terminated by signal 9/, $offset),
		"$what: the postmaster saw the kill");
	$node->wait_for_log(qr/database system is ready to accept connections/, $offset);
	is($node->safe_psql('postgres', 'SELECT 1'), '1', "$what: the cluster accepts connections again");
	return;
}

sub launcher_pid
{
	return $node->safe_psql('postgres',
		q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'perfkit index build launcher'});
}

# --- baseline: builds and pushes work
workload('baseline');
ok(poll_until(sub { status('pushed') > 0 }), 'baseline: results are pushed');

# --- 1. kill -9 of the launcher while a build runs in each database, more queued behind them
{
	my $what = 'kill -9 launcher';
	my $failed = failures();
	my $h1 = held_builds('postgres', [ 'l_kind_idx', 'kind' ], [ 'l_payload_idx', 'payload' ]);
	my $h2 = held_builds('other', [ 'l_kind_idx', 'kind' ], [ 'l_kind_id_idx', 'kind, id' ]);
	$node->safe_psql('postgres', q{UPDATE kv SET v = 'before launcher kill' WHERE id = 1});
	kill9($what, launcher_pid());
	drop_session($_) for $h1, $h2;
	check_builds($what, 'postgres', 'l_kind_idx', 'l_payload_idx');
	check_builds($what, 'other', 'l_kind_idx', 'l_kind_id_idx');
	is( $node->safe_psql('postgres',
			q{SELECT attempts FROM perfkit.index_builds WHERE index_name = 'l_kind_idx'}),
		'2', "$what: the interrupted build was resumed in a second attempt");
	ok(poll_until(sub { launcher_pid() =~ /^\d+$/ }), "$what: a launcher runs again");
	check_pusher($what, 'before launcher kill');
	$figures{survived}++ if failures() == $failed;
}

# --- 2. kill -9 of a builder mid-build; the other database's builds are unaffected by the fault
{
	my $what = 'kill -9 builder';
	my $failed = failures();
	my $h1 = held_builds('other', [ 'b_payload_idx', 'payload' ], [ 'b_id_kind_idx', 'id, kind' ]);
	$node->safe_psql('postgres', q{UPDATE kv SET v = 'before builder kill' WHERE id = 1});
	my $pid = $node->safe_psql('postgres',
		q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'perfkit index builder' AND datname = 'other'});
	# a build requested in another database just before the crash
	$node->safe_psql('postgres',
		q{SELECT perfkit.create_index_concurrently('CREATE INDEX b_kind_idx ON events (kind)')});
	kill9($what, $pid);
	drop_session($h1);
	check_builds($what, 'other', 'b_payload_idx', 'b_id_kind_idx');
	check_builds($what, 'postgres', 'b_kind_idx');
	check_pusher($what, 'before builder kill');
	$figures{survived}++ if failures() == $failed;
}

# --- 3. kill -9 of the Redis pusher while pgbench runs; builds requested before it still complete
{
	my $what = 'kill -9 pusher';
	my $failed = failures();
	my $h1 = held_builds('postgres', [ 'p_kind_payload_idx', 'kind, payload' ]);
	$node->safe_psql('postgres', q{UPDATE kv SET v = 'before pusher kill' WHERE id = 1});
	my $out = '';
	local %ENV = %ENV;
	$ENV{PGHOST} = $node->host;
	$ENV{PGPORT} = $node->port;
	my $bench = IPC::Run::start([ 'pgbench', '-n', '-M', 'prepared', '-c', '2', '-j', '2', '-T', '3',
			'-f', "$dir/hot.sql", 'postgres' ],
		'>', \$out, '2>&1', IPC::Run::timeout(120));
	ok(poll_until(sub { status('pushed') > 0 && status('queue_bytes') >= 0 }, 10), "$what: pushing under load");
	sleep 1;
	kill9($what, child_pid('perfkit redis pusher'));
	eval { $bench->finish; };    # its sessions were terminated by the crash-restart
	drop_session($h1);
	check_builds($what, 'postgres', 'p_kind_payload_idx');
	check_pusher($what, 'before pusher kill');
	$figures{survived}++ if failures() == $failed;
}

# --- 4. the launcher terminated (SIGTERM): restarted after its bgw_restart_time, builds carry on
{
	my $what = 'terminate launcher';
	my $failed = failures();
	my $pid = launcher_pid();
	$figures{faults}++;
	my $offset = -s $node->logfile;
	is($node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)"), 't', "$what: terminated");
	ok(poll_until(sub { launcher_pid() ne $pid }), "$what: the old launcher is gone");
	ok($node->wait_for_log(qr/"perfkit index build launcher" \(PID $pid\) exited with exit code 1/, $offset),
		"$what: it exited with status 1 (to be restarted)");
	ok(!$node->log_contains(qr/FATAL/, $offset), "$what: quietly, without a FATAL");
	$node->safe_psql('postgres',
		q{SELECT perfkit.create_index_concurrently('CREATE INDEX t_payload_kind_idx ON events (payload, kind)')});
	ok(poll_until(sub { launcher_pid() =~ /^\d+$/ }, 60), "$what: a new launcher runs");
	check_builds($what, 'postgres', 't_payload_kind_idx');
	$figures{survived}++ if failures() == $failed;
}

# --- 5. the pusher terminated (SIGTERM, e.g. by an administrator's kill): restarted after its bgw_restart_time, pushes resume
{
	my $what = 'terminate pusher';
	my $failed = failures();
	my $pid = child_pid('perfkit redis pusher');
	like($pid, qr/^\d+$/, "$what: found the pusher");
	$figures{faults}++;
	$node->safe_psql('postgres', q{UPDATE kv SET v = 'before pusher terminate' WHERE id = 1});
	# not a backend (no database connection): pg_terminate_backend refuses it, kill it is
	is(kill('TERM', $pid), 1, "$what: SIGTERM sent");
	ok(poll_until(sub { my $p = child_pid('perfkit redis pusher'); $p ne '' && $p ne $pid }, 60),
		"$what: a new pusher runs");
	check_pusher($what, 'before pusher terminate');
	$figures{survived}++ if failures() == $failed;
}

# --- 6. a builder terminated (pg_terminate_backend) mid-build: no crash-restart; the launcher
# starts a builder again after perfkit.index_build_retry_delay, which resumes the build
{
	my $what = 'terminate builder';
	my $failed = failures();
	my $h1 = held_builds('postgres', [ 'tb_kind_idx', 'kind' ], [ 'tb_payload_idx', 'payload' ]);
	my $pid = $node->safe_psql('postgres',
		q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'perfkit index builder' AND datname = 'postgres'});
	like($pid, qr/^\d+$/, "$what: found the builder");
	$figures{faults}++;
	my $offset = -s $node->logfile;
	is($node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)"), 't', "$what: terminated");
	drop_session($h1);
	check_builds($what, 'postgres', 'tb_kind_idx', 'tb_payload_idx');
	is( $node->safe_psql('postgres',
			q{SELECT attempts FROM perfkit.index_builds WHERE index_name = 'tb_kind_idx'}),
		'2', "$what: the interrupted build was resumed in a second attempt");
	ok(!$node->log_contains(qr/all server processes terminated/, $offset), "$what: no crash-restart");
	$figures{survived}++ if failures() == $failed;
}

ok(!$node->log_contains(qr/TRAP:|PANIC:/), 'no assertion failure or PANIC in the server log');
diag(sprintf('faults injected %d, survived %d; builds completed after a fault %d; pushes resumed %d times',
		@figures{qw(faults survived builds_after_fault pushes_resumed)}));
$node->stop;
redis_stop();
done_testing();
