# Statistics survive a clean restart: they are saved to $PGDATA/pg_stat/perfkit.stat at shutdown and
# loaded at startup.  A corrupt (garbage or truncated) file is ignored with a LOG message instead of
# preventing startup, and perfkit.save = off keeps nothing across restarts.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $node = PostgreSQL::Test::Cluster->new('main');
$node->init;
# every execution reaches the shared table at once: this test reads other sessions' statements
# right after they end (the flush interval itself is TAP 054's)
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'perfkit'\nperfkit.stats_flush_interval = 0\n");
$node->start;

my $statfile = $node->data_dir . '/pg_stat/perfkit.stat';

# Calls recorded for the normalized "SELECT 1 + 1" ('' when there is no such entry).
my $calls_sql =
  q{SELECT calls FROM perfkit.statements WHERE query LIKE 'SELECT $1 + $2%'};
sub calls { return $node->safe_psql('postgres', $calls_sql); }

# Run "SELECT 1 + 1" five times, each in its own session.
sub run_workload
{
	$node->safe_psql('postgres', 'SELECT 1 + 1') for 1 .. 5;
	return;
}

# Wait up to 15 s for the server log to match $re after byte $offset.
sub log_matches
{
	my ($re, $offset) = @_;
	for (1 .. 150)
	{
		return 1 if $node->log_contains($re, $offset);
		usleep(100_000);
	}
	return 0;
}

my $ignored = qr/LOG:  ignoring perfkit statistics file "[^"]*perfkit\.stat": \S/;

$node->safe_psql('postgres', 'CREATE EXTENSION perfkit');
is($node->safe_psql('postgres', 'SELECT stats_reset IS NOT NULL FROM perfkit.info'),
	't', 'perfkit.info: stats_reset is set');

# --- clean restart keeps the statistics
run_workload();
is(calls(), '5', 'SELECT 1 + 1 counted 5 times');
$node->restart;
is(calls(), '5', 'same calls after a clean restart');

# --- a file of garbage is ignored
$node->stop;
ok(-f $statfile, 'statistics file written at clean shutdown');
open(my $fh, '>', $statfile) or die "could not write $statfile: $!";
print $fh 'x' x 100;
close($fh);
my $offset = -s $node->logfile;
$node->start;
is($node->safe_psql('postgres', 'SELECT 1'), '1', 'server starts with a garbage statistics file');
is(calls(), '', 'statement gone after loading a garbage file');
ok(log_matches($ignored, $offset), 'garbage file reported as ignored in the server log');

# --- a truncated file is ignored
run_workload();
is(calls(), '5', 'SELECT 1 + 1 counted 5 times again');
$node->stop;
my $size = -s $statfile;
ok(defined $size && $size > 1, 'statistics file written again at clean shutdown');
truncate($statfile, int(($size // 0) / 2)) or die "could not truncate $statfile: $!";
$offset = -s $node->logfile;
$node->start;
is($node->safe_psql('postgres', 'SELECT 1'), '1', 'server starts with a truncated statistics file');
is(calls(), '', 'statement gone after loading a truncated file');
ok(log_matches($ignored, $offset), 'truncated file reported as ignored in the server log');

# --- perfkit.save = off: nothing survives a restart
$node->append_conf('postgresql.conf', "perfkit.save = off\n");
$node->restart;
run_workload();
is(calls(), '5', 'SELECT 1 + 1 counted 5 times with perfkit.save = off');
$node->restart;
is(calls(), '', 'statistics not kept across a restart with perfkit.save = off');
is($node->safe_psql('postgres', 'SELECT stats_reset IS NOT NULL FROM perfkit.info'),
	't', 'perfkit.info: stats_reset is set after a restart without saved statistics');

$node->stop;
done_testing();
