# perfkit.redis_status tells the truth while Redis comes and goes, and pushes resume at once.  With
# the default perfkit.redis_ping_interval (1 s) and perfkit.redis_timeout (1 s), against a real
# redis-server on a loopback port:
#  (a) Redis stopped (SIGTERM, then in a second round SIGKILL) while the pusher is idle, nothing
#      queued: connected turns false within 2 s, the error is counted, last_error and last_error_at
#      say what and when; while it stays down, hot executions neither fail nor queue anything, and
#      the pusher tries to connect at most a few times a second;
#  (b) Redis restarted on the same port: the pusher reconnects within 2 s (last_connected_at moves)
#      and the hot key reappears within 2 s of the next hot execution, with the row written while
#      Redis was down (the marks that suppress re-pushes did not outlive the outage);
#  (c) Redis stalled (SIGSTOP): connected turns false once the PING times out, and true again after
#      SIGCONT; a result captured just before the stall whose table was written during it is never
#      pushed (the generation guard), and Redis never serves the old row afterwards.
# No client sees an error in any of it.  Every wait polls with a deadline; the deadlines named in
# the test names are the assertions.
use strict;
use warnings;

use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

use FindBin;
use lib "$FindBin::RealBin/../perl";
use PerfkitRedis;    # redis-server child, redis_cli, poll_until, key_of, $redis_port, $role

redis_start();
my $node = PostgreSQL::Test::Cluster->new('redis_status');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'perfkit'
perfkit.redis_url = 'redis://127.0.0.1:$redis_port/0'
perfkit.redis_hot_calls = 3
perfkit.redis_min_push_interval = 0
});
$node->start;
$role = $node->safe_psql('postgres', 'SELECT current_user');

sub status
{
	return $node->safe_psql('postgres', "SELECT $_[0] FROM perfkit.redis_status");
}

# Seconds until a condition holds (polling every 20 ms), undef after the deadline.
sub seconds_until
{
	my ($cond, $secs) = @_;
	my $t0 = time();
	while (time() - $t0 < $secs)
	{
		return time() - $t0 if $cond->();
		usleep(20_000);
	}
	return undef;
}

# The v of the row pushed under a key, '' when there is none.
sub pushed_v
{
	my $raw = redis_cli('GET', $_[0]);
	return '' if $raw eq '';
	return decode_json($raw)->{rows}[0][0];
}

# Run a statement n times in one session (simple protocol).
sub run
{
	my ($sql, $n) = @_;
	$node->safe_psql('postgres', join('', map { "$sql;\n" } 1 .. $n));
}

$node->safe_psql('postgres', q{
CREATE EXTENSION perfkit;
CREATE TABLE kv (id int PRIMARY KEY, v text NOT NULL);
INSERT INTO kv SELECT g, 'value ' || g FROM generate_series(1, 100) g;
});
ok(poll_until(sub { status('connected') eq 't' }), 'the pusher connects to redis');
is(status('last_error_at IS NULL AND last_error IS NULL AND last_connected_at IS NOT NULL'), 't',
	'connected: last_connected_at set, no error yet');

my $q = 'SELECT v FROM kv WHERE id = 1';
my $key = key_of($q);
run($q, 4);
ok(poll_until(sub { pushed_v($key) eq 'value 1' }), 'the hot key is pushed');

my %took;
my $round = 0;
for my $signal ('TERM', 'KILL')
{
	$round++;
	my $r = "SIG$signal";

	# --- (a) Redis goes away while the pusher is idle ---
	ok(poll_until(sub { status('queue_bytes') eq '0' }), "$r: nothing queued before the stop");
	my $errors = status('errors');
	my $before = $node->safe_psql('postgres', 'SELECT now()');
	kill $signal, $redis_pid;
	waitpid($redis_pid, 0);
	$redis_pid = undef;
	my $t = seconds_until(sub { status('connected') eq 'f' }, 2);
	ok(defined $t, "$r: connected turns false within 2 s" . (defined $t ? sprintf(' (%.2f s)', $t) : ''));
	$took{"$r detected"} = $t;
	cmp_ok(status('errors'), '>', $errors, "$r: the error is counted");
	like(status('last_error'), qr/^(lost the Redis connection|Redis PING failed|cannot connect to Redis): /,
		"$r: last_error says what happened");
	is(status("last_error_at >= '$before'"), 't', "$r: last_error_at is the time of the failure");

	# hot executions while Redis is down: no error, nothing captured or queued; a fresh statement too
	my $fresh = "SELECT v FROM kv WHERE id = " . (10 + $round);
	my ($full, $stale) = (status('dropped_queue_full'), status('dropped_stale'));
	run($q, 5);
	run($fresh, 5);
	is(status('queue_bytes'), '0', "$r: hot executions while redis is down queue nothing");
	is(status('dropped_queue_full') . ' ' . status('dropped_stale'), "$full $stale",
		"$r: ... and are not captured at all (nothing dropped)");

	# a Redis that stays down costs a few connection attempts a second
	$errors = status('errors');
	my $t0 = time();
	sleep(2);
	my $attempts = status('errors') - $errors;
	my $rate = $attempts / (time() - $t0);
	cmp_ok($rate, '<=', 3, sprintf("$r: at most a few connection attempts a second while down (%.1f/s)", $rate));
	cmp_ok($attempts, '>=', 1, "$r: ... but it keeps trying");
	is(status('connected'), 'f', "$r: still not connected");

	# a row written while Redis is down
	$node->safe_psql('postgres', "UPDATE kv SET v = 'written while redis was down $round' WHERE id = 1");

	# --- (b) Redis back on the same port ---
	my $connected_before = status('last_connected_at');
	redis_start();
	$t = seconds_until(sub { status('connected') eq 't' }, 2);
	ok(defined $t, "$r: the pusher reconnects within 2 s of redis accepting connections"
		  . (defined $t ? sprintf(' (%.2f s)', $t) : ''));
	$took{"$r reconnect"} = $t;
	is(status("last_connected_at > '$connected_before'"), 't', "$r: last_connected_at moved");
	is(redis_cli('EXISTS', $key), '0', "$r: the restarted redis has no value for the hot key");
	run($q, 1);
	$t = seconds_until(sub { pushed_v($key) eq "written while redis was down $round" }, 2);
	ok(defined $t, "$r: the hot key reappears within 2 s of the next hot execution, with the new row"
		  . (defined $t ? sprintf(' (%.2f s)', $t) : ''));
	$took{"$r key back"} = $t;
	run($fresh, 1);
	ok(poll_until(sub { pushed_v(key_of($fresh)) ne '' }, 2),
		"$r: a statement that became hot while redis was down is pushed at its first execution after");
}

# --- (c) Redis stalled ---
# a result computed just before the stall, still queued when its table is written during it
$node->safe_psql('postgres', q{UPDATE kv SET v = 'before the stall' WHERE id = 1});
ok(poll_until(sub { redis_cli('EXISTS', $key) eq '0' && status('queue_bytes') eq '0' }),
	'stall: the hot key was invalidated, nothing queued');
my ($errors, $stale) = (status('errors'), status('dropped_stale'));
kill 'STOP', $redis_pid;
run($q, 1);
# the push cannot complete: its room is given back only when Redis answered
cmp_ok(status('queue_bytes'), '>', 0, 'stall: the result captured before the pusher noticed is queued');
my $t = seconds_until(sub { status('connected') eq 'f' }, 4);
ok(defined $t, 'stall: connected turns false once the command times out'
	  . (defined $t ? sprintf(' (%.2f s)', $t) : ''));
$took{'SIGSTOP detected'} = $t;
cmp_ok(status('errors'), '>', $errors, 'stall: the error is counted');
like(status('last_error'), qr/timed out/, 'stall: last_error says it timed out');
$node->safe_psql('postgres', q{UPDATE kv SET v = 'written during the stall' WHERE id = 1});
run($q, 3);
is(status('connected'), 'f', 'stall: not connected while stalled (no false recovery)');

kill 'CONT', $redis_pid;
$t = seconds_until(sub { status('connected') eq 't' }, 2);
ok(defined $t, 'stall: connected again within 2 s of SIGCONT' . (defined $t ? sprintf(' (%.2f s)', $t) : ''));
$took{'SIGCONT reconnect'} = $t;
ok(poll_until(sub { status('queue_bytes') eq '0' }), 'stall: the queue drains');
cmp_ok(status('dropped_stale'), '>', $stale,
	'stall: the result captured before the stall was dropped as stale (its table changed)');
my $v = pushed_v($key);
ok($v eq '' || $v eq 'written during the stall', "stall: no stale value in redis ('$v')");
run($q, 1);
ok(poll_until(sub { pushed_v($key) eq 'written during the stall' }, 2),
	'stall: the next hot execution pushes the row written during the stall within 2 s');

is($node->safe_psql('postgres', q{SELECT v FROM kv WHERE id = 1}), 'written during the stall',
	'the table has the last write');
my $log = slurp_file($node->logfile);
unlike($log, qr/\b(ERROR|FATAL|PANIC):|TRAP:|terminated by signal/, 'no error, crash or assertion failure in the server log');
diag(join(', ', map { sprintf('%s %s', $_, defined $took{$_} ? sprintf('%.2f s', $took{$_}) : 'timeout') } sort keys %took));

$node->stop;
redis_stop();
done_testing();
