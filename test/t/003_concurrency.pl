# Real concurrency: pgbench clients hammer the same statements at once.  Every execution must be
# counted exactly once (no lost updates under the shared lock + entry spinlock scheme), the
# figures must equal pg_stat_statements' (loaded together with auto_explain), and the histogram
# must account for every call.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use PerfkitStats;    # wait_for_flushes

my $node = PostgreSQL::Test::Cluster->new('concurrency');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'pg_stat_statements,auto_explain,perfkit'
auto_explain.log_min_duration = -1
perfkit.track = all
pg_stat_statements.track = all
max_connections = 20
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION perfkit;
CREATE EXTENSION pg_stat_statements;
CREATE TABLE counters (id int PRIMARY KEY, n bigint NOT NULL DEFAULT 0);
INSERT INTO counters SELECT g, 0 FROM generate_series(1, 10) g;
CREATE FUNCTION bump(k int) RETURNS void LANGUAGE plpgsql AS
  $$ BEGIN UPDATE counters SET n = n + 1 WHERE id = k; END $$;
});
$node->safe_psql('postgres', 'SELECT perfkit.reset(), pg_stat_statements_reset()');

my $clients = 6;
my $transactions = 400;
$node->pgbench(
	"--no-vacuum --client=$clients --jobs=3 --transactions=$transactions --protocol=prepared",
	0,
	[qr{processed: @{[ $clients * $transactions ]}/@{[ $clients * $transactions ]}}],
	[qr{^$}],
	'pgbench clients hitting the same entries',
	{
		'001_same_entries' => q{
\set k random(1, 10)
SELECT n FROM counters WHERE id = :k;
UPDATE counters SET n = n + 1 WHERE id = :k;
SELECT bump(:k);
}
	});

ok(wait_for_flushes($node), 'the clients are gone, their figures flushed');
my $total = $clients * $transactions;
is( $node->safe_psql('postgres',
		q{SELECT calls FROM perfkit.statements WHERE query LIKE 'UPDATE counters SET n = n + $_ WHERE id = $_' AND toplevel}),
	$total, 'every top-level UPDATE counted exactly once');
is( $node->safe_psql('postgres',
		q{SELECT calls || '/' || rows FROM perfkit.statements WHERE query LIKE 'UPDATE counters SET n = n + $_ WHERE id = k' AND NOT toplevel}),
	"$total/$total", 'every nested UPDATE counted, with its rows');
is( $node->safe_psql('postgres', q{SELECT sum(n) FROM counters}),
	2 * $total, 'the workload itself ran completely');

is( $node->safe_psql('postgres', q{
	SELECT count(*) FROM perfkit.statements p
	  FULL JOIN pg_stat_statements s USING (userid, dbid, queryid, toplevel)
	 WHERE (p.calls IS DISTINCT FROM s.calls OR p.rows IS DISTINCT FROM s.rows)
	   AND coalesce(p.query, s.query) NOT LIKE '%perfkit.statements%'
	   AND coalesce(p.query, s.query) NOT LIKE '%pg_stat_statements%'}),
	'0', 'calls and rows equal pg_stat_statements for every shared queryid');

is( $node->safe_psql('postgres',
		q{SELECT bool_and(p50_exec_time <= p95_exec_time AND p95_exec_time <= p99_exec_time
		                  AND p99_exec_time <= max_exec_time AND min_exec_time <= p50_exec_time)
		    FROM perfkit.statements}),
	't', 'percentiles ordered for every entry');
is($node->safe_psql('postgres', 'SELECT dropped FROM perfkit.info'), '0', 'nothing dropped');

$node->stop;
done_testing();
