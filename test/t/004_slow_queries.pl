# Slow queries from a real client over the extended protocol (pgbench -M extended) carry their bind
# parameters, and perfkit.slow_log writes one LOG line per slow execution in auto_explain's format
# ("duration: N ms  plan:" then "Query Text:" and the plan), which log analyzers parse.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('slow');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'perfkit'
# statements of other sessions are read right after they end (TAP 054 tests the interval)
perfkit.stats_flush_interval = 0
perfkit.slow_threshold = 50
perfkit.slow_log = on
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION perfkit');
$node->safe_psql('postgres', 'CREATE TABLE accounts AS SELECT g AS id, g * 10 AS balance FROM generate_series(1, 100) g');

my $log_offset = -s $node->logfile;

# pgbench sends :id and :label (defined on its command line) as bind parameters with -M extended.
$node->pgbench(
	'--no-vacuum --client=1 --transactions=2 --protocol=extended --define=label=slowpoke',
	0,
	[qr{processed: 2/2}],
	[qr{^$}],
	'slow statements over the extended protocol',
	{
		'004_slow' => q{
\set id 42
SELECT balance, :label AS label FROM accounts, pg_sleep(0.06) WHERE id = :id;
SELECT balance FROM accounts WHERE id = :id;
}
	});

my $rows = $node->safe_psql('postgres',
	q{SELECT query || ' | ' || coalesce(params, '<none>') || ' | ' || application_name
	    FROM perfkit.slow_queries ORDER BY ts});
my @lines = split /\n/, $rows;
is(scalar @lines, 2, 'both slow executions captured, the fast lookups not');
like($lines[0],
	qr{^SELECT balance, \$1 AS label FROM accounts, pg_sleep\(0\.06\) WHERE id = \$2 \| \$1 = 'slowpoke', \$2 = '42' \| 004_slow_queries\.pl$},
	'text with placeholders, parameter values and application_name (PGAPPNAME, set by the TAP framework)');

is( $node->safe_psql('postgres',
		q{SELECT calls || '/' || slow_calls FROM perfkit.statements WHERE query LIKE 'SELECT balance, $1 AS label%'}),
	'2/2', 'slow_calls counts the slow executions');
is( $node->safe_psql('postgres',
		q{SELECT calls || '/' || slow_calls FROM perfkit.statements WHERE query = 'SELECT balance FROM accounts WHERE id = $1'}),
	'2/0', 'fast executions are not slow calls');

# The LOG line, as auto_explain writes it.
my $log = slurp_file($node->logfile, $log_offset);
like($log,
	qr{LOG:  duration: \d+\.\d{3} ms  plan:\n\s*Query Text: SELECT balance, \$1 AS label FROM accounts, pg_sleep\(0\.06\) WHERE id = \$2\n\s*Query Parameters: \$1 = 'slowpoke', \$2 = '42'\n\s*Nested Loop},
	'server log has duration, statement, parameters and plan');
unlike($log, qr{Query Text: SELECT balance FROM accounts WHERE id = \$1\n}, 'no log line for fast statements');
my @count = ($log =~ /duration: \d+\.\d+ ms  plan:/g);
is(scalar @count, 2, 'one log line per slow execution');

# slow_log off: captured, not logged.
$log_offset = -s $node->logfile;
$node->safe_psql('postgres', 'SET perfkit.slow_log = off; SELECT pg_sleep(0.06)');
is($node->safe_psql('postgres', q{SELECT count(*) FROM perfkit.slow_queries WHERE query LIKE '%pg_sleep(0.06)'}),
	'1', 'captured with slow_log off');
unlike(slurp_file($node->logfile, $log_offset), qr{duration: .* plan:}, 'nothing logged with slow_log off');

$node->stop;
done_testing();
