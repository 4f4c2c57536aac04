# The stale-write race: a result computed under a snapshot that does not see a newer commit must
# never stay in Redis after that commit's invalidation.
#   1. a REPEATABLE READ reader whose snapshot predates a write: refused at the start (the table's
#      newest writer is not visible), counted as dropped_stale;
#   2. a reader running while a write commits (it read the write generations before the commit):
#      its push reaches the worker after the invalidation and is dropped as stale;
#   3. writers and readers racing with pgbench (readers going on for a second after the last
#      write): once everything has been handled, Redis holds nothing or the latest value.
# Every wait polls with a deadline; ordering in 1 and 2 is established by the server's own state
# (an open snapshot, a reader seen sleeping inside its execution), not by sleeping.
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
my $node = PostgreSQL::Test::Cluster->new('redis_race');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'perfkit'
perfkit.redis_url = 'redis://127.0.0.1:$redis_port/0'
perfkit.redis_hot_calls = 3
perfkit.redis_min_push_interval = 0
max_connections = 30
});
$node->start;
$role = $node->safe_psql('postgres', 'SELECT current_user');

sub status
{
	return $node->safe_psql('postgres', "SELECT $_[0] FROM perfkit.redis_status");
}

sub drain
{
	ok(poll_until(sub { status('queue_bytes') eq '0' }), "queue drained ($_[0])");
}

sub run_hot
{
	my ($sql) = @_;
	$node->safe_psql('postgres', join('', map { "$sql;\n" } 1 .. 4));
}

# The value of v in the result pushed under a key, '' when there is none.
sub pushed_v
{
	my $raw = redis_cli('GET', $_[0]);
	return '' if $raw eq '';
	return decode_json($raw)->{rows}[0][0];
}

$node->safe_psql('postgres', q{
CREATE EXTENSION perfkit;
CREATE TABLE counter (id int PRIMARY KEY, v bigint NOT NULL);
INSERT INTO counter VALUES (1, 1);
CREATE TABLE other (id int);
INSERT INTO other VALUES (1);
-- trusted as immutable (perfkit cannot look inside): sleeps during execution, not planning
CREATE FUNCTION slow_identity(x int) RETURNS int LANGUAGE plpgsql IMMUTABLE
  AS $$ BEGIN PERFORM pg_sleep(2); RETURN x; END $$;
});
ok(poll_until(sub { status('connected') eq 't' }), 'the pusher connects to redis');

# --- 1. a snapshot older than the write: refused before execution ---
my $rq = 'SELECT v FROM counter WHERE id = 1';
my $rkey = key_of($rq);
run_hot($rq);
ok(poll_until(sub { pushed_v($rkey) eq '1' }), 'v = 1 pushed');

my $reader = $node->background_psql('postgres');
$reader->query_safe('BEGIN ISOLATION LEVEL REPEATABLE READ');
$reader->query_safe('SELECT count(*) FROM other');    # the snapshot is taken here
$node->safe_psql('postgres', 'UPDATE counter SET v = 2 WHERE id = 1');
ok(poll_until(sub { redis_cli('EXISTS', $rkey) eq '0' }), 'the write deleted the pushed result');
my $stale_before = status('dropped_stale');
# (16+'s BackgroundPsql ends a result with a newline, 15's does not)
sub reader_value { my $v = $reader->query_safe($_[0]); $v =~ s/\s+\z//; return $v; }
is(reader_value("$rq;"), '1', 'the old snapshot still reads v = 1');
is(reader_value("$rq;"), '1', '... again (hot)');
$reader->query_safe('SELECT pushed FROM perfkit.redis_status');    # publishes its counts
drain('after the old-snapshot reader');
is(redis_cli('EXISTS', $rkey), '0', 'the result of the old snapshot was never pushed');
ok(status('dropped_stale') > $stale_before, 'counted as dropped_stale');
$reader->query_safe('COMMIT');
$reader->quit;
run_hot($rq);
ok(poll_until(sub { pushed_v($rkey) eq '2' }), 'a new snapshot pushes v = 2');

# --- 2. a write commits while a hot reader executes: its push arrives after the invalidation ---
my $sq = 'SELECT v, slow_identity(id) AS x FROM counter WHERE id = 1';
my $skey = key_of($sq);
my ($out, $err) = ('', '');
{
	local $ENV{PGOPTIONS} = '-c perfkit.redis_hot_calls=1';
	my $h = IPC::Run::start([ 'psql', '-XAtq', '-d', $node->connstr('postgres'), '-c', $sq ],
		'>', \$out, '2>', \$err);
	ok( poll_until(sub {
				$node->safe_psql('postgres',
					q{SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND query LIKE '%slow_identity%'}
				) eq '1' }),
		'the reader is inside its execution');
	$stale_before = status('dropped_stale');
	$node->safe_psql('postgres', 'UPDATE counter SET v = 3 WHERE id = 1');
	is($node->safe_psql('postgres',
			q{SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND query LIKE '%slow_identity%'}),
		'1', 'the write committed while the reader was still executing');
	$h->finish;
}
chomp $out;
is($out, '2|1', 'the reader returned the value of its snapshot (v = 2)');
drain('after the slow reader');
is(redis_cli('EXISTS', $skey), '0', 'the slow reader\'s stale result is not in redis');
ok(poll_until(sub { status('dropped_stale') > $stale_before }), 'dropped as stale by the pusher');

# --- 3. pgbench writers and readers racing ---
for my $round (1 .. 3)
{
	my $seconds = 3;
	my $reader_q = 'SELECT v, (SELECT count(*) FROM generate_series(1, 20000)) AS pad FROM counter WHERE id = 1';
	my $key = key_of($reader_q);
	my $dir = PostgreSQL::Test::Utils::tempdir();
	PostgreSQL::Test::Utils::append_to_file("$dir/read.sql", "$reader_q;\n");
	PostgreSQL::Test::Utils::append_to_file("$dir/write.sql", "UPDATE counter SET v = v + 1 WHERE id = 1;\n");
	my ($rout, $wout) = ('', '');
	local %ENV = %ENV;
	$ENV{PGHOST} = $node->host;
	$ENV{PGPORT} = $node->port;
	my $readers = IPC::Run::start(
		[ 'pgbench', '-n', '-M', 'prepared', '-c', '6', '-j', '3', '-T', $seconds, '-f', "$dir/read.sql", 'postgres' ],
		'>', \$rout, '2>&1');
	my $writers = IPC::Run::start(
		[ 'pgbench', '-n', '-c', '2', '-j', '2', '-T', $seconds - 1, '-f', "$dir/write.sql", 'postgres' ],
		'>', \$wout, '2>&1');
	$readers->finish;
	$writers->finish;
	like($rout, qr/failed transactions: 0 /, "round $round: no reader failed");
	like($wout, qr/failed transactions: 0 /, "round $round: no writer failed");
	drain("round $round");
	my $final = $node->safe_psql('postgres', 'SELECT v FROM counter WHERE id = 1');
	my $got = pushed_v($key);
	ok($got eq '' || $got eq $final,
		"round $round: redis holds nothing or the latest value (v = $final, redis: "
		  . ($got eq '' ? 'nothing' : $got) . ")");
	run_hot($reader_q);
	ok(poll_until(sub { pushed_v($key) eq $final }), "round $round: the next reader pushes the latest value");
}
diag('pushed ' . status('pushed') . ', invalidated ' . status('invalidated')
	  . ', dropped_stale ' . status('dropped_stale'));

$node->stop;
redis_stop();
done_testing();
