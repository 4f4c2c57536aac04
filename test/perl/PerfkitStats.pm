# PerfkitStats — waiting for other sessions' statement figures in perfkit's TAP tests.  Each
# backend adds its figures to the shared table at most once per perfkit.stats_flush_interval and
# at exit; a client such as pgbench returns before its backends have finished exiting.
package PerfkitStats;

use strict;
use warnings;

use Exporter 'import';

our @EXPORT = qw(wait_for_flushes);

# Wait until no client backend but the polling one is connected: a backend's exit flush has run
# by the time it leaves pg_stat_activity.  Returns true when that happened before the timeout.
sub wait_for_flushes
{
	my ($node) = @_;
	return $node->poll_query_until('postgres',
		q{SELECT count(*) = 0 FROM pg_stat_activity
		   WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()});
}

1;
