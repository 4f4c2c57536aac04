# Fuzzing the definition argument of perfkit.create_index_concurrently(text): 2,000 mutated
# CREATE INDEX statements (fixed seed) from test/fuzz/fuzz_index_definition.py, run as an ordinary
# role that owns the table.  Each is accepted as one request on the table or refused with an
# SQLSTATE outside class XX; the connection and the server survive (same backend, same postmaster,
# no crash or failed assertion in the log); no catalog object appears; a sample of the accepted
# ones, built by the background builder, adds nothing but indexes of that table.
#
# Longer runs by hand: the script takes --iterations and --seed (see its header).
use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $python = '/usr/bin/python3';
my $script = abs_path(dirname(__FILE__) . '/../fuzz/fuzz_index_definition.py');
my $iterations = 2000;
my $seed = 20240611;

my $node = PostgreSQL::Test::Cluster->new('fuzz_index_definition');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'perfkit'
perfkit.index_build_retry_delay = '100ms'
perfkit.index_build_lock_timeout = '10s'
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION perfkit;
CREATE ROLE fuzzer LOGIN;
GRANT CREATE ON SCHEMA public TO fuzzer;
});
my $postmaster_pid = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'});

my ($stdout, $stderr);
my $started = time;
my $ok = IPC::Run::run(
	[
		$python, $script,
		'--host' => $node->host,
		'--port' => $node->port,
		'--dbname' => 'postgres',
		'--user' => 'fuzzer',
		'--iterations' => $iterations,
		'--seed' => $seed,
		'--setup',
		'--datadir' => $node->data_dir,
		'--logfile' => $node->logfile,
	],
	'>', \$stdout, '2>', \$stderr);
note("fuzz run took " . (time - $started) . " s");
note($stdout) if $stdout;
diag($stderr) if $stderr;
ok($ok, "fuzz_index_definition.py: $iterations definitions, seed $seed, every check passed");
like($stdout, qr/^fuzz_index_definition: seed $seed, $iterations definitions/m, 'the script ran them all');
like($stdout, qr/: (\d+) accepted, (\d+) rejected/, 'some definitions were accepted, some rejected');
if ($stdout =~ /: (\d+) accepted, (\d+) rejected/)
{
	cmp_ok($1, '>', 0, 'mutations kept some definitions valid');
	cmp_ok($2, '>', 0, 'mutations made some definitions invalid');
}
like($stdout, qr/sample built by the background builder: [1-9]\d* requested/,
	'accepted definitions were built for real');

# Independently of the script: the server never restarted and logged no crash.
is( $node->safe_psql('postgres',
		q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'}),
	$postmaster_pid, 'the checkpointer is the same process (no crash-restart)');
my $log = slurp_file($node->logfile);
unlike($log, qr/terminated by signal|was terminated|^TRAP:|PANIC:/m, 'no crash or failed assertion in the server log');
is($node->safe_psql('postgres', q{SELECT to_regclass('public.fz_t') IS NOT NULL}), 't', 'the table survived');
is( $node->safe_psql('postgres',
		q{SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		   WHERE n.nspname = 'public' AND c.relname <> 'fz_t' AND c.relkind <> 't'}),
	'0', 'nothing but fz_t in public (the sample indexes were dropped)');

$node->stop;
done_testing();
