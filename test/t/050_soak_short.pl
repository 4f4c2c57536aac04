# The soak test (test/soak.sh) in its short form: 20 seconds, 4 clients, on the installation under
# test.  The script checks no client error, perfkit.statements calls equal to pg_stat_statements',
# shared memory unchanged, flat process memory, every index build finished valid and Redis pushes
# without errors, and exits non-zero when a check fails; this test asserts its exit status and that
# each check was reported as passed.  (`DURATION=300 CLIENTS=8 bash test/soak.sh` is the long form.)
use strict;
use warnings;

use File::Basename qw(dirname);
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $script = dirname(__FILE__) . '/../soak.sh';
ok(-f $script, 'test/soak.sh exists');

# the installation under test: the one make test prepared, else the pg_config in PATH
my $bindir = $ENV{PK_BINDIR};
if (!$bindir)
{
	$bindir = `pg_config --bindir`;
	chomp $bindir;
}

my ($out, $err) = ('', '');
my $ok = IPC::Run::run(
	[ 'bash', $script ],
	'>', \$out, '2>', \$err,
	init => sub {
		$ENV{DURATION} = 20;
		$ENV{CLIENTS} = 4;
		$ENV{PK_BINDIR} = $bindir;
		$ENV{SOAK_REDIS_PORT} = PostgreSQL::Test::Cluster::get_free_port();
		delete $ENV{PK_KEEP};
	},
	IPC::Run::timeout(600));
note($out);
diag($err) if $err ne '';
ok($ok, 'soak.sh (DURATION=20 CLIENTS=4) exited 0') or diag($out);
like($out, qr/^soak: passed$/m, 'soak.sh reports passed');
unlike($out, qr/^  FAIL  /m, 'no check failed');
for my $check (
	'pgbench: no client error',
	'no ERROR/FATAL/PANIC in the server log',
	'perfkit.statements calls == pg_stat_statements calls (0 mismatches',
	'shared memory did not grow',
	'backend and pusher memory stayed flat',
	'index builds: ',
	'Redis: pushed ',
	'slow queries captured')
{
	like($out, qr/^  ok    \Q$check\E/m, "check passed: $check");
}
like($out, qr/^  pg_stat_statements parity: [1-9]\d* shared keys, 0 with different calls/m,
	'parity was checked over some keys');

done_testing();
