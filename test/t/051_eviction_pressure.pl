# Eviction under pressure: perfkit.max_statements at its minimum (100) while several clients at once
# run thousands of distinct statement shapes (different column lists) interleaved with a few hot
# statements.  No client may see an error, entries are evicted (perfkit.info.evictions > 0) and
# their number never exceeds the maximum (sampled while the clients run, not only at the end), and
# the hot statements survive the churn with every execution counted: their calls equal the number
# the clients sent (counted on the client side; pg_stat_statements is not loaded, its own minimum
# max of 100 would evict too).
use strict;
use warnings;

use POSIX ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $max = 100;
my $clients = 4;
my $shapes_per_client = 3000;   # 12,000 distinct shapes in all
my $hot_every = 8;              # a hot statement after every 8th shape

my $node = PostgreSQL::Test::Cluster->new('eviction_pressure');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'perfkit'
# statements of other sessions are read right after they end (TAP 054 tests the interval)
perfkit.stats_flush_interval = 0
perfkit.max_statements = $max
perfkit.track = top
perfkit.nplusone = on
max_connections = 20
});
$node->start;

is($node->safe_psql('postgres', 'SHOW perfkit.max_statements'), $max, 'perfkit.max_statements is the minimum');

# 16 columns: a non-empty subset of them is a distinct target list, hence a distinct query id.
my @cols = map { "c$_" } 1 .. 16;
$node->safe_psql('postgres', 'CREATE EXTENSION perfkit; CREATE TABLE wide ('
	  . join(', ', 'id int PRIMARY KEY', map { "$_ int" } @cols) . ');'
	  . 'INSERT INTO wide SELECT g' . (', g' x @cols) . ' FROM generate_series(1, 10) g;'
	  . 'CREATE TABLE hot (id int PRIMARY KEY, v text); INSERT INTO hot VALUES (1, \'a\'), (2, \'b\');');

# The hot statements and how many times the clients send each (client-side count).
my @hot = ('SELECT v FROM hot WHERE id = 1', 'SELECT count(*) FROM hot', 'SELECT id FROM hot ORDER BY id');
my %sent = map { $_ => 0 } @hot;

# One script per client: the hot statements a few times first (so that they are used before the
# table fills up), then its own distinct shapes with a hot statement every $hot_every.
my $dir = PostgreSQL::Test::Utils::tempdir();
my $shape_no = 0;
for my $c (1 .. $clients)
{
	my @lines;
	for my $h (@hot)
	{
		for (1 .. 3) { push @lines, "$h;"; $sent{$h}++; }
	}
	for my $i (1 .. $shapes_per_client)
	{
		$shape_no++;
		my @list = grep { $shape_no & (1 << ($_ - 1)) } 1 .. 16;
		push @lines, 'SELECT ' . join(', ', map { "t.c$_" } @list) . ' FROM wide t WHERE t.id = 1;';
		if ($i % $hot_every == 0)
		{
			my $h = $hot[ ($i / $hot_every + $c) % @hot ];
			push @lines, "$h;";
			$sent{$h}++;
		}
	}
	open(my $fh, '>', "$dir/client$c.sql") or die "open: $!";
	print $fh join("\n", @lines), "\n";
	close $fh;
}
cmp_ok($shape_no, '<', 65536, 'every shape is a distinct non-empty subset of the 16 columns');

$node->safe_psql('postgres', 'SELECT perfkit.reset()');

# Start the clients at once (output to files, so nothing needs pumping); sample perfkit.info while
# they run.
my %running;
for my $c (1 .. $clients)
{
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		open(STDOUT, '>', "$dir/out$c") or POSIX::_exit(127);
		open(STDERR, '>', "$dir/err$c") or POSIX::_exit(127);
		exec('psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'),
			'-o', '/dev/null', '-f', "$dir/client$c.sql")
		  or POSIX::_exit(127);
	}
	$running{$pid} = $c;
}
my ($max_seen, $samples, $failed) = (0, 0, 0);
while (%running)
{
	my $n = $node->safe_psql('postgres', 'SELECT statements FROM perfkit.info');
	$max_seen = $n if $n > $max_seen;
	$samples++;
	usleep(50_000);
	for my $pid (keys %running)
	{
		next unless waitpid($pid, POSIX::WNOHANG()) == $pid;
		my $c = delete $running{$pid};
		my $err = slurp_file("$dir/err$c");
		if ($? != 0 || $err ne '')
		{
			$failed++;
			diag("client $c: exit status $?: $err");
		}
	}
}
is($failed, 0, "no client saw an error ($clients clients, $shape_no distinct shapes)");
note("sampled perfkit.info $samples times while the clients ran; at most $max_seen entries");
cmp_ok($samples, '>', 0, 'perfkit.info was sampled while the clients ran');
cmp_ok($max_seen, '<=', $max, "the entry count stayed <= $max while the clients ran");

my ($statements, $evictions, $dropped) =
  split /\|/, $node->safe_psql('postgres', 'SELECT statements, evictions, dropped FROM perfkit.info');
cmp_ok($statements, '<=', $max, "entry count <= $max at the end ($statements)");
cmp_ok($evictions, '>', 0, "entries were evicted ($evictions)");
is($dropped, 0, 'no execution was dropped');

for my $h (@hot)
{
	my $q = $h =~ s/'/''/gr;
	is( $node->safe_psql('postgres',
			"SELECT sum(calls) FROM perfkit.statements WHERE query = regexp_replace('$q', '= 1\$', '= \$1')"),
		$sent{$h}, "hot statement survived with every call counted ($sent{$h}): $h");
}

is($node->safe_psql('postgres', 'SELECT 1'), '1', 'server still running');
$node->stop;
done_testing();
