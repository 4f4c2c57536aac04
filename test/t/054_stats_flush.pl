# Backend-local statistics (issue 18): each backend keeps its figures to itself and adds them to
# the shared table at most once per perfkit.stats_flush_interval.  Nothing may be lost on the way:
# a session reads its own just-finished statements, an idle backend's figures arrive without it
# running anything more, a backend that exits (normally or by pg_terminate_backend) flushes
# first, an entry evicted while figures are pending is made again, and many pgbench clients
# give exact counts.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use PerfkitStats;    # wait_for_flushes

my $node = PostgreSQL::Test::Cluster->new('stats_flush');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'perfkit'
perfkit.max_statements = 100
max_connections = 30
});
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION perfkit;
CREATE TABLE t (id int PRIMARY KEY, n bigint NOT NULL DEFAULT 0);
INSERT INTO t SELECT g, 0 FROM generate_series(1, 100) g;
});

# Calls of the entries whose text starts with a prefix, summed ('' when none).
sub calls_of
{
	my ($prefix) = @_;
	return $node->safe_psql('postgres',
		"SELECT sum(calls) FROM perfkit.statements WHERE query LIKE '$prefix%'");
}

$node->safe_psql('postgres', 'SELECT perfkit.reset()');

# 1. A session sees its own statements at once, though the interval has not passed.
is( $node->safe_psql('postgres', q{
	SET perfkit.stats_flush_interval = '1min';
	SELECT n FROM t WHERE id = 1;
	SELECT n FROM t WHERE id = 2;
	SELECT n FROM t WHERE id = 3;
	SELECT calls FROM perfkit.statements WHERE query LIKE 'SELECT n FROM t WHERE id = %'}),
	"0\n0\n0\n3", 'a reader sees its own backend\'s just-finished statements');

# 2. An idle backend's figures reach other sessions without another statement of its own.
my $idle = $node->background_psql('postgres');
$idle->query_safe(q{UPDATE t SET n = n + 1 WHERE id = 10});
$idle->query_safe(q{UPDATE t SET n = n + 1 WHERE id = 11});
ok( $node->poll_query_until('postgres',
		q{SELECT calls FROM perfkit.statements WHERE query LIKE 'UPDATE t SET n = n + $_ WHERE id = $_'},
		'2'),
	'an idle backend flushes by itself within the interval');

# ... and one idle inside a transaction block flushes when the block ends.
$idle->query_safe('BEGIN');
$idle->query_safe(q{DELETE FROM t WHERE id = 1000});
$idle->query_safe('COMMIT');
ok( $node->poll_query_until('postgres',
		q{SELECT calls FROM perfkit.statements WHERE query LIKE 'DELETE FROM t WHERE id = $_'}, '1'),
	'a transaction block\'s statements arrive after it ends');

# 3. A normal exit flushes what the backend kept.
$node->safe_psql('postgres', q{
	SET perfkit.stats_flush_interval = '1min';
	SELECT n + 1 FROM t WHERE id = 1;
	SELECT n + 1 FROM t WHERE id = 2;
	SELECT n + 1 FROM t WHERE id = 3;
	SELECT n + 1 FROM t WHERE id = 4;
});
$idle->quit;
ok(wait_for_flushes($node), 'the sessions ended');
is(calls_of('SELECT n + $1 FROM t'), '4', 'a backend that exits normally loses nothing');

# 4. So does a terminated one.
my $victim = $node->background_psql('postgres');
$victim->query_safe(q{SET perfkit.stats_flush_interval = '1min'});
$victim->query_safe(q{SELECT n * 2 FROM t WHERE id = 5}) for 1 .. 7;
my $victim_pid = $victim->query_safe('SELECT pg_backend_pid()');
$victim_pid =~ s/\s+//g;
is(calls_of('SELECT n * $1 FROM t'), '', 'the figures are still pending in the victim');
$node->safe_psql('postgres', "SELECT pg_terminate_backend($victim_pid)");
ok(wait_for_flushes($node), 'the terminated backend is gone');
is(calls_of('SELECT n * $1 FROM t'), '7', 'pg_terminate_backend loses nothing either');
eval { $victim->quit };

# 5. An entry evicted while a backend keeps figures for it is made again at the flush.
my $keeper = $node->background_psql('postgres');
$keeper->query_safe(q{SET perfkit.stats_flush_interval = '1min'});
$keeper->query_safe(q{SELECT n - 1 FROM t WHERE id = 6}) for 1 .. 5;
# 300 shapes: SELECT 1 + 1, SELECT 1 + 1 + 1, ... (each with a query id of its own)
my $churn = join("\n", q{SET perfkit.stats_flush_interval = 0;},
	map { 'SELECT 1' . (' + 1' x $_) . ';' } 1 .. 300);
$node->safe_psql('postgres', $churn);
cmp_ok($node->safe_psql('postgres', 'SELECT evictions FROM perfkit.info'), '>', 0,
	'the table evicted entries');
# (16's BackgroundPsql ends its output with a newline)
my $kept = $keeper->query_safe(q{SELECT calls || ' ' || query FROM perfkit.statements WHERE query LIKE 'SELECT n - %'});
$kept =~ s/\s+$//;
is( $kept,
	"5 SELECT n - \$1 FROM t WHERE id = \$2",
	'the evicted entry came back with its normalized text and every pending call');
$keeper->quit;
ok(wait_for_flushes($node), 'the keeper ended');

# 6. Many pgbench clients at the default interval: exact counts once they have gone.
$node->safe_psql('postgres', 'SELECT perfkit.reset()');
my ($clients, $transactions) = (16, 150);
$node->pgbench(
	"--no-vacuum --client=$clients --jobs=2 --transactions=$transactions",
	0,
	[qr{processed: @{[ $clients * $transactions ]}/@{[ $clients * $transactions ]}}],
	[qr{^$}],
	'pgbench clients with pending figures',
	{
		'054_clients' => q{
\set k random(1, 100)
BEGIN;
UPDATE t SET n = n + 1 WHERE id = :k;
SELECT n FROM t WHERE id = :k;
END;
}
	});
ok(wait_for_flushes($node), 'the clients are gone');
my $total = $clients * $transactions;
is( $node->safe_psql('postgres', q{
	SELECT string_agg(calls::text, ' ' ORDER BY query) FROM perfkit.statements
	 WHERE query IN ('BEGIN', 'END', 'UPDATE t SET n = n + $1 WHERE id = $2', 'SELECT n FROM t WHERE id = $1')}),
	"$total $total $total $total", 'every execution of every client counted exactly once');
is($node->safe_psql('postgres', 'SELECT dropped FROM perfkit.info'), '0', 'nothing dropped');

$node->stop;
done_testing();
