# Without perfkit in shared_preload_libraries, CREATE EXTENSION works but every perfkit view or
# function fails with a clear error and a HINT, and the server keeps running.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('not_preloaded');
$node->init;
$node->start;

my ($ret, $stdout, $stderr) = $node->psql('postgres', 'CREATE EXTENSION perfkit');
is($ret, 0, 'CREATE EXTENSION perfkit succeeds without shared_preload_libraries')
  or diag("stderr: $stderr");

foreach my $sql (
	'SELECT * FROM perfkit.statements',
	'SELECT perfkit.reset()',
	'SELECT * FROM perfkit.info')
{
	($ret, $stdout, $stderr) = $node->psql('postgres', $sql);
	isnt($ret, 0, "$sql: fails");
	like(
		$stderr,
		qr/ERROR:  perfkit must be loaded via "shared_preload_libraries"/,
		"$sql: error says perfkit must be preloaded");
	like(
		$stderr,
		qr/HINT:  .*shared_preload_libraries/,
		"$sql: hint mentions shared_preload_libraries");
}

is($node->safe_psql('postgres', 'SELECT 1'), '1', 'server still running');

$node->stop;
done_testing();
