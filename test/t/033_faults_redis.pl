# Redis faults in the middle of one pgbench run (022_redis_outage.pl injects them between runs,
# except the stall): while 4 clients read hot statements and write another table, Redis is killed
# with SIGKILL (in-flight pipelines lost), restarted, stalled with SIGSTOP, continued, and killed
# and restarted once more.  Asserted: pgbench sees no failed statement; the pusher notices each
# outage (errors counted), reconnects by itself after each restart, and pushes resume; a row
# written while Redis was dead is what Redis serves afterwards (no stale value survives the
# outage); the server shuts down cleanly afterwards.  Every wait polls with a deadline.
use strict;
use warnings;

use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

use FindBin;
use lib "$FindBin::RealBin/../perl";
use PerfkitRedis;    # redis-server child, redis_cli, poll_until, key_of, $redis_port, $role

redis_start();
my $node = PostgreSQL::Test::Cluster->new('faults_redis');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'perfkit'
perfkit.redis_url = 'redis://127.0.0.1:$redis_port/0'
perfkit.redis_hot_calls = 2
perfkit.redis_timeout = '300ms'
log_statement = none
});
$node->start;
$role = $node->safe_psql('postgres', 'SELECT current_user');

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

$node->safe_psql('postgres', q{
CREATE EXTENSION perfkit;
CREATE TABLE kv (id int PRIMARY KEY, v text NOT NULL);
INSERT INTO kv SELECT g, 'value ' || g FROM generate_series(1, 2000) g;
CREATE TABLE counters (id int PRIMARY KEY, n bigint NOT NULL);
INSERT INTO counters SELECT g, 0 FROM generate_series(1, 100) g;
});
ok(poll_until(sub { status('connected') eq 't' }), 'the pusher connects to redis');

my $q = 'SELECT id, v FROM kv WHERE id = $1';
my $dir = PostgreSQL::Test::Utils::tempdir();
PostgreSQL::Test::Utils::append_to_file("$dir/mixed.sql",
	"\\set id random(1, 2000)\n\\set c random(1, 100)\n"
	  . "SELECT id, v FROM kv WHERE id = :id;\nSELECT id, v FROM kv WHERE id = 1;\n"
	  . "SELECT sum(n) FROM counters;\nUPDATE counters SET n = n + 1 WHERE id = :c;\n");

sub pgbench
{
	my ($secs, $out) = @_;
	local %ENV = %ENV;
	$ENV{PGHOST} = $node->host;
	$ENV{PGPORT} = $node->port;
	return IPC::Run::start([ 'pgbench', '-n', '-M', 'prepared', '-c', '4', '-j', '2', '-T', $secs,
			'-f', "$dir/mixed.sql", 'postgres' ],
		'>', $out, '2>&1', IPC::Run::timeout(120));
}

# PK_FAULT_ROUNDS (default 1) repeats the three faults for a longer run of this file under prove.
my $rounds = $ENV{PK_FAULT_ROUNDS} // 1;
my %figures = (faults => 0, reconnects => 0);
my $log_start = -s $node->logfile;
my $out = '';
my $bench = pgbench(3 * $rounds + 3, \$out);
ok(poll_until(sub { status('pushed') > 0 }, 10), 'pushing under load');

my ($errors, $pushed);
for my $round (1 .. $rounds)
{
	my $r = "round $round";
	# --- kill -9 of Redis during the run, a row written while it is dead, then a restart
	$errors = status('errors');
	$figures{faults}++;
	kill 'KILL', $redis_pid;
	waitpid($redis_pid, 0);
	$redis_pid = undef;
	ok(poll_until(sub { status('connected') eq 'f' }, 20), "$r: redis killed: the pusher notices");
	ok(poll_until(sub { status('errors') > $errors }, 20), "$r: redis killed: errors counted");
	$node->safe_psql('postgres', "UPDATE kv SET v = 'written while redis was killed $round' WHERE id = 1");
	usleep(500_000);
	redis_start();
	ok(poll_until(sub { status('connected') eq 't' }, 20), "$r: redis restarted: the pusher reconnects");
	$pushed = status('pushed');
	ok(poll_until(sub { status('pushed') > $pushed }, 20), "$r: redis restarted: pushes resume during the run")
	  and $figures{reconnects}++;

	# --- stalled (SIGSTOP) during the run, then continued
	$errors = status('errors');
	$figures{faults}++;
	kill 'STOP', $redis_pid;
	ok(poll_until(sub { status('errors') > $errors }, 20), "$r: redis stalled: the pusher times out");
	kill 'CONT', $redis_pid;
	ok(poll_until(sub { status('connected') eq 't' }, 20), "$r: redis continued: the pusher reconnects");
	$pushed = status('pushed');
	ok(poll_until(sub { status('pushed') > $pushed }, 20), "$r: redis continued: pushes resume during the run")
	  and $figures{reconnects}++;

	# --- killed and restarted at once
	$figures{faults}++;
	$errors = status('errors');
	kill 'KILL', $redis_pid;
	waitpid($redis_pid, 0);
	$redis_pid = undef;
	redis_start();
	$pushed = status('pushed');
	ok(poll_until(sub { status('pushed') > $pushed && status('connected') eq 't' }, 20),
		"$r: redis killed and restarted at once: pushes resume")
	  and $figures{reconnects}++;
	cmp_ok(status('errors'), '>', $errors,
		"$r: redis killed and restarted at once: the broken connection was counted");
}

$bench->finish;
like($out, qr/failed transactions: 0 /, 'pgbench during the faults: no statement failed') or diag($out);
my ($tps) = $out =~ /tps = ([\d.]+)/;
my ($lat) = $out =~ /latency average = ([\d.]+) ms/;
ok(defined $tps, 'pgbench ran') or diag($out);
cmp_ok(status('errors'), '>', 0, 'the outages were counted as errors');

# --- afterwards: the hot key serves the row written while Redis was dead
my $out2 = '';
pgbench(2, \$out2)->finish;
like($out2, qr/failed transactions: 0 /, 'pgbench after the faults: no statement failed');
ok(poll_until(sub { pushed_v(key_of($q, '1')) eq "written while redis was killed $rounds" }),
	'the hot key has the value written while redis was dead');
is( $node->safe_psql('postgres', 'SELECT sum(n) > 0 FROM counters'), 't', 'the writes were made');
my $connects = () = PostgreSQL::Test::Utils::slurp_file($node->logfile, $log_start)
  =~ /perfkit redis pusher connected to/g;
cmp_ok($connects, '>=', 3 * $rounds, "the pusher reconnected after every fault ($connects connections logged)");

$node->stop('fast');
ok($node->log_contains(qr/database system is shut down/), 'the server shuts down cleanly');
ok(!$node->log_contains(qr/TRAP:|PANIC:|was terminated by signal/), 'no crash or assertion failure');
diag(sprintf('redis faults %d during one pgbench run (%s tps, %s ms average latency, 0 failed); pushes resumed %d times',
		$figures{faults}, $tps // '?', $lat // '?', $figures{reconnects}));
redis_stop();
done_testing();
