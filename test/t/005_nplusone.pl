# N+1 detection with real clients: a SQLAlchemy lazy-loading loop (psycopg2, values interpolated
# into the SQL text) is flagged with its parent query and a fix, its eager-loading versions are not,
# pgbench -S (independent primary-key lookups) is not, an autocommit loop slower than
# perfkit.nplusone_max_gap is not, and a new pattern writes one server-log line.
use strict;
use warnings;

use File::Basename qw(dirname);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $orm = dirname(__FILE__) . '/../python/orm_loop.py';

my $node = PostgreSQL::Test::Cluster->new('nplusone');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'perfkit'
perfkit.track = all
perfkit.nplusone_max_gap = 200ms
});
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION perfkit;
CREATE TABLE authors (id int PRIMARY KEY, name text);
CREATE TABLE books (id int PRIMARY KEY, title text, author_id int REFERENCES authors);
INSERT INTO authors SELECT g, 'author ' || g FROM generate_series(1, 40) g;
INSERT INTO books SELECT g, 'book ' || g, (g * 7) % 40 + 1 FROM generate_series(1, 12) g;
});

# Run the ORM script against the node: orm(MODE, APPNAME, PAUSE, AUTOCOMMIT).
sub orm
{
	my ($mode, $app, $pause, $autocommit) = @_;
	local $ENV{AUTOCOMMIT} = $autocommit ? '1' : '0';
	my ($out, $err) = run_command(
		[ '/usr/bin/python3', $orm, $node->host, $node->port, $mode, $app, $pause // 0 ]);
	like($out, qr/^$mode: 12 books/, "orm $mode ($app) ran") or diag($err);
	return;
}

# Patterns seen for one application_name, as "confirmed|last_repeats|parent ~ child".
sub patterns
{
	my ($app) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT confirmed || '|' || last_repeats || '|' || parent_query || ' ~ ' || query
		  FROM perfkit.n_plus_one WHERE application_name = '$app' ORDER BY queryid});
}

my $log_offset = -s $node->logfile;
orm('lazy', 'orm_lazy');
my $lazy = patterns('orm_lazy');
like($lazy, qr/^true\|12\|SELECT books\.id AS books_id, .*\nFROM books ORDER BY books\.id ~ SELECT authors\.id AS authors_id, authors\.name AS authors_name \nFROM authors \nWHERE authors\.id = \$1$/s,
	'lazy loading: one confirmed loop of 12 lookups after the list query');
like( $node->safe_psql('postgres', q{SELECT suggestion FROM perfkit.n_plus_one WHERE application_name = 'orm_lazy'}),
	qr/WHERE authors\.id = ANY\(\$1\)/, 'the suggestion loads all authors with = ANY');
like( $node->safe_psql('postgres', q{SELECT sample_params FROM perfkit.n_plus_one WHERE application_name = 'orm_lazy'}),
	qr/^\$1 = '\d+'$/, 'a sample of the interpolated values');
ok($node->log_contains(qr/LOG:  perfkit: N\+1 loop detected: 5 executions of query -?\d+ after query -?\d+/, $log_offset),
	'one log line for the new pattern');

orm('selectin', 'orm_selectin');
orm('joined', 'orm_joined');
is(patterns('orm_selectin'), '', 'eager loading with IN (...) is not flagged');
is(patterns('orm_joined'), '', 'eager loading with a JOIN is not flagged');

# The same lazy loop in autocommit with pauses longer than nplusone_max_gap: not one loop.
orm('lazy', 'orm_slow_autocommit', 0.3, 1);
is(patterns('orm_slow_autocommit'), '', 'autocommit steps further apart than max_gap are not a loop');
# ... but inside one transaction the pauses do not matter.
orm('lazy', 'orm_slow_transaction', 0.3, 0);
like(patterns('orm_slow_transaction'), qr/^true\|12\|/, 'inside a transaction block the loop is found');

# pgbench -S: random primary-key lookups, one per transaction, no parent list.
$node->command_ok([ 'pgbench', '-i', '-s', '1', '-q', '-h', $node->host, '-p', $node->port, 'postgres' ],
	'pgbench -i');
for my $protocol ('prepared', 'simple')
{
	$node->command_ok(
		[ 'pgbench', '-S', '-n', '-T', '3', '-c', '2', '-j', '2', "--protocol=$protocol",
		  '-h', $node->host, '-p', $node->port, 'postgres' ],
		"pgbench -S -M $protocol");
}
is( $node->safe_psql('postgres', q{SELECT count(*) FROM perfkit.n_plus_one WHERE application_name = 'pgbench'}),
	'0', 'pgbench -S is not flagged');

$node->stop;
done_testing();
