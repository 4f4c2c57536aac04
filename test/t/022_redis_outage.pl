# Redis stalled (SIGSTOP), continued, stopped and restarted under a pgbench workload of hot
# statements and writes, with a queue small enough to fill: no statement fails or waits for Redis
# (latency stays that of a server without Redis trouble), errors are counted, once the pusher
# knows Redis is stalled hot results are no longer captured while invalidations still are (those
# that do not fit are counted as dropped), the pusher reconnects by itself and pushes resume,
# results written meanwhile are never left stale, and the server shuts down promptly while Redis
# is stalled.  Every wait polls with a deadline.
use strict;
use warnings;

use Digest::SHA;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

use FindBin;
use lib "$FindBin::RealBin/../perl";
use PerfkitRedis;    # redis-server child, redis_cli, poll_until, key_of, $redis_port, $role


redis_start();
my $node = PostgreSQL::Test::Cluster->new('redis_outage');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'perfkit'
perfkit.redis_url = 'redis://127.0.0.1:$redis_port/0'
perfkit.redis_hot_calls = 2
perfkit.redis_queue_size = '64kB'
perfkit.redis_timeout = '300ms'
});
$node->start;
$role = $node->safe_psql('postgres', 'SELECT current_user');

sub status
{
	return $node->safe_psql('postgres', "SELECT $_[0] FROM perfkit.redis_status");
}

$node->safe_psql('postgres', q{
CREATE EXTENSION perfkit;
CREATE TABLE kv (id int PRIMARY KEY, v text NOT NULL);
INSERT INTO kv SELECT g, 'value ' || g FROM generate_series(1, 2000) g;
});
ok(poll_until(sub { status('connected') eq 't' }), 'the pusher connects to redis');

my $q = 'SELECT id, v FROM kv WHERE id = $1';
my $dir = PostgreSQL::Test::Utils::tempdir();
PostgreSQL::Test::Utils::append_to_file("$dir/hot.sql",
	"\\set id random(1, 2000)\nSELECT id, v FROM kv WHERE id = :id;\nSELECT id, v FROM kv WHERE id = 1;\n");

# Run the hot workload for some seconds; returns pgbench's output.
sub hot_reads
{
	my ($seconds) = @_;
	my $out = '';
	local %ENV = %ENV;
	$ENV{PGHOST} = $node->host;
	$ENV{PGPORT} = $node->port;
	IPC::Run::run([ 'pgbench', '-n', '-M', 'prepared', '-c', '4', '-j', '2', '-T', $seconds,
			'-f', "$dir/hot.sql", 'postgres' ],
		'>', \$out, '2>&1', IPC::Run::timeout(120));
	return $out;
}

# The value pushed for id = 1, reading on while it is not the expected one: the workload draws
# id = 1 at random, so a slow machine may not have pushed it yet.
sub key1_becomes
{
	my ($want) = @_;
	return poll_until(sub { pushed_v(key_of($q, '1')) eq $want || (hot_reads(1) && 0) });
}

# Run the hot workload for some seconds; returns the average latency (ms) after checking no failure.
sub workload
{
	my ($what, $seconds) = @_;
	my $out = hot_reads($seconds);
	like($out, qr/failed transactions: 0 /, "$what: no statement failed");
	my ($lat) = $out =~ /latency average = ([\d.]+) ms/;
	ok(defined $lat, "$what: pgbench ran") or diag($out);
	return $lat // 1e9;
}

sub pushed_v
{
	my $raw = redis_cli('GET', $_[0]);
	return '' if $raw eq '';
	return decode_json($raw)->{rows}[0][1];
}

# --- Redis up: the baseline ---
my $base = workload('redis up', 2);
ok(poll_until(sub { status('pushed') > 0 }), 'results are pushed');
ok(poll_until(sub { pushed_v(key_of($q, '1')) eq 'value 1' }), 'the hot key is readable');

# --- Redis stalled (SIGSTOP): the pusher times out, statements do not wait ---
my $errors = status('errors');
kill 'STOP', $redis_pid;
$node->safe_psql('postgres', q{UPDATE kv SET v = 'written during the stall' WHERE id = 1});
my $stalled = workload('redis stalled', 3);
diag("average latency: redis up $base ms, stalled $stalled ms");
ok($stalled < 10 * $base + 5, "latency does not depend on the stalled redis ($stalled ms vs $base ms)");
ok(poll_until(sub { status('connected') eq 'f' }), 'the pusher notices the stall');
ok(poll_until(sub { status('errors') > $errors }), 'errors are counted');
like(status('last_error'), qr/timed out/, 'last_error says what happened');
# known to be stalled: hot executions capture nothing, so nothing is queued or dropped
my ($queued, $full) = (status('queue_bytes'), status('dropped_queue_full'));
workload('redis known to be stalled', 1);
is(status('queue_bytes') . ' ' . status('dropped_queue_full'), "$queued $full",
	'while the pusher knows redis is stalled, hot results are neither queued nor dropped');
# invalidations are still queued: 2000 commits do not fit, the drops are counted (and make the
# pusher delete every key once Redis is back)
$node->safe_psql('postgres', q{
DO $$ BEGIN
  FOR i IN 1 .. 2000 LOOP UPDATE kv SET v = v WHERE id = 2 + i % 1999; COMMIT; END LOOP;
END $$});
cmp_ok(status('dropped_queue_full'), '>', $full, 'invalidations that did not fit are counted as dropped');

# --- Redis continues: reconnect, the write made during the stall is not hidden by a stale value ---
kill 'CONT', $redis_pid;
ok(poll_until(sub { status('connected') eq 't' }), 'the pusher reconnects after the stall');
ok(poll_until(sub { status('queue_bytes') eq '0' }), 'the queue drains');
my $v1 = pushed_v(key_of($q, '1'));
ok($v1 eq '' || $v1 eq 'written during the stall', "no stale value for the row written during the stall ('$v1')");
my $pushed = status('pushed');
workload('redis back', 2);
ok(poll_until(sub { status('pushed') > $pushed }), 'pushes resume');
ok(key1_becomes('written during the stall'), 'the hot key has the new value');

# --- Redis stopped, then restarted on the same port ---
$errors = status('errors');
redis_stop();
$node->safe_psql('postgres', q{UPDATE kv SET v = 'written while redis was down' WHERE id = 1});
my $down = workload('redis down', 2);
diag("average latency: redis down $down ms");
ok($down < 10 * $base + 5, "latency does not depend on the missing redis ($down ms vs $base ms)");
ok(poll_until(sub { status('connected') eq 'f' }), 'not connected while redis is down');
ok(poll_until(sub { status('errors') > $errors }), 'failed connections are counted');
like(status('last_error'), qr/cannot connect to Redis|lost the Redis connection/, 'last_error names the failure');

redis_start();
ok(poll_until(sub { status('connected') eq 't' }), 'the pusher reconnects to the restarted redis');
$pushed = status('pushed');
workload('redis restarted', 2);
ok(poll_until(sub { status('pushed') > $pushed }), 'pushes resume after the restart');
ok(key1_becomes('written while redis was down'),
	'the hot key has the value written while redis was down');

# --- the server stops promptly even while Redis is stalled ---
kill 'STOP', $redis_pid;
workload('redis stalled again', 1);
my $t0 = time();
$node->stop('fast');
my $took = time() - $t0;
ok($took < 10, sprintf('fast shutdown with a stalled redis took %.1f s', $took));
kill 'CONT', $redis_pid;

redis_stop();
done_testing();
