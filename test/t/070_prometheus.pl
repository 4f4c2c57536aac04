# perfkit in Prometheus: Debian's postgres_exporter runs the shipped queries file
# (contrib/prometheus/perfkit-queries.yaml) against a perfkit cluster as an unprivileged role, and a
# Prometheus server scrapes it every second with the shipped rules (contrib/prometheus/perfkit-rules.yml).
# Both listen on free loopback ports, with their own config and storage under the test's temp
# directory, and are stopped at the end (also on failure).  After a known workload (a statement
# run 25 times, slow executions, an N+1 loop, a succeeded and a failed index build), Prometheus'
# HTTP query API must give the statement's calls and p95 as perfkit.statements has them, the N+1,
# slow-query and index-build figures as the views have them, no scrape or query error, every rule
# evaluated without error and the N+1 and failed-build alerts firing; `promtool check rules`
# passes on the rules file, and `promtool test rules` on its unit tests (perfkit-rules.test.yml:
# the p95 regression against a day earlier, the N+1, failed-build and Redis alerts).  Then the
# exporter runs again with the optional histogram file appended, whose _count, +Inf bucket and
# _sum must match the statement's calls and time.
use strict;
use warnings;

use Cwd ();
use File::Basename qw(dirname);
use HTTP::Tiny;
use IPC::Run ();
use JSON::PP;
use POSIX ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $contrib = dirname(__FILE__) . '/../../contrib/prometheus';
my $queries = "$contrib/perfkit-queries.yaml";
my $rules = "$contrib/perfkit-rules.yml";
my %bin = (
	exporter => '/usr/bin/prometheus-postgres-exporter',
	prometheus => '/usr/bin/prometheus',
	promtool => '/usr/bin/promtool');
for my $f ($queries, $rules, values %bin)
{
	-e $f or BAIL_OUT("$f is missing (make test installs prometheus and prometheus-postgres-exporter)");
}

# ---------------------------------------------------------------------------------------------
# Child processes: started with fork/exec, stopped by stop_children (END, also after a failure)
# ---------------------------------------------------------------------------------------------
my $parent = $$;
my %children;    # name => pid

# Start NAME: run @cmd with %env added, stdout and stderr to $log.
sub start_child
{
	my ($name, $log, $env, @cmd) = @_;
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		open(STDOUT, '>>', $log) or POSIX::_exit(126);
		open(STDERR, '>&', \*STDOUT) or POSIX::_exit(126);
		$ENV{$_} = $env->{$_} for keys %$env;
		exec(@cmd) or POSIX::_exit(127);
	}
	$children{$name} = $pid;
	return $pid;
}

# Stop the children named (all when none is): SIGTERM, then SIGKILL after 10 s.
sub stop_children
{
	my @names = @_ ? @_ : keys %children;
	return unless $$ == $parent;
	for my $name (grep { exists $children{$_} } @names)
	{
		my $pid = delete $children{$name};
		next unless kill(0, $pid);
		kill 'TERM', $pid;
		my $deadline = time() + 10;
		while (time() < $deadline && waitpid($pid, POSIX::WNOHANG()) == 0) { usleep(50_000); }
		if (kill(0, $pid) && waitpid($pid, POSIX::WNOHANG()) == 0)
		{
			kill 'KILL', $pid;
			waitpid($pid, 0);
		}
	}
}
END { stop_children(); }
$SIG{INT} = $SIG{TERM} = sub { stop_children(); exit 1; };

# Call f until it returns true or the deadline passes.
sub poll_until
{
	my ($f, $secs) = @_;
	my $deadline = time() + ($secs // $PostgreSQL::Test::Utils::timeout_default);
	while (time() < $deadline)
	{
		return 1 if $f->();
		usleep(200_000);
	}
	return 0;
}

my $http = HTTP::Tiny->new(timeout => 10);

# ---------------------------------------------------------------------------------------------
# promtool check rules
# ---------------------------------------------------------------------------------------------
{
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run([ $bin{promtool}, 'check', 'rules', $rules ], '>', \$out, '2>', \$err);
	ok($ok, 'promtool check rules passes on contrib/prometheus/perfkit-rules.yml') or diag("$out$err");
	like($out . $err, qr/SUCCESS: \d+ rules found/, 'promtool found the rules');

	# the alerts' unit tests (the p95 regression needs a day of history, Redis a disconnection)
	($out, $err) = ('', '');
	$ok = IPC::Run::run([ $bin{promtool}, 'test', 'rules', 'perfkit-rules.test.yml' ],
		'>', \$out, '2>', \$err, init => sub { chdir($contrib) or die "chdir $contrib: $!" });
	ok($ok && "$out$err" =~ /SUCCESS/, 'promtool test rules passes on contrib/prometheus/perfkit-rules.test.yml')
	  or diag("$out$err");
}

# ---------------------------------------------------------------------------------------------
# The cluster, the exporter's role and the workload
# ---------------------------------------------------------------------------------------------
my $node = PostgreSQL::Test::Cluster->new('prometheus');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'perfkit'
# statements of other sessions are read right after they end (TAP 054 tests the interval)
perfkit.stats_flush_interval = 0
perfkit.slow_threshold = 50ms
perfkit.index_build_retry_delay = '200ms'
});
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION perfkit;
-- what the README tells: a login role and nothing else
CREATE ROLE perfkit_exporter LOGIN;
CREATE TABLE items (id int PRIMARY KEY, grp int NOT NULL);
INSERT INTO items SELECT g, g % 10 FROM generate_series(1, 1000) g;
CREATE TABLE authors (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE books (id int PRIMARY KEY, author_id int NOT NULL, title text NOT NULL);
INSERT INTO authors SELECT g, 'author ' || g FROM generate_series(1, 20) g;
INSERT INTO books SELECT g, 1 + g % 20, 'book ' || g FROM generate_series(1, 200) g;
ANALYZE;
});

my $tmp = PostgreSQL::Test::Utils::tempdir();
my $eport = PostgreSQL::Test::Cluster::get_free_port();
my $pport = PostgreSQL::Test::Cluster::get_free_port();
isnt($eport, 9187, 'the exporter does not use the packaged service\'s port');
isnt($pport, 9090, 'prometheus does not use the packaged service\'s port');

# postgres_exporter with the shipped file only (its default metrics would want pg_monitor; Debian 12's
# exporter 0.11 reads pg_stat_bgwriter columns that PostgreSQL 17 moved, so its bgwriter collector
# is off too)
my $exporter_log = "$tmp/exporter.log";
start_child(
	'exporter', $exporter_log,
	{ DATA_SOURCE_NAME => sprintf('host=%s port=%d user=perfkit_exporter dbname=postgres sslmode=disable',
			$node->host, $node->port) },
	$bin{exporter}, "--web.listen-address=127.0.0.1:$eport", "--extend.query-path=$queries",
	'--disable-default-metrics', '--disable-settings-metrics', '--no-collector.bgwriter', '--log.level=info');
ok( poll_until(sub { my $r = $http->get("http://127.0.0.1:$eport/metrics"); $r->{success} && $r->{content} =~ /^pg_up 1$/m }, 60),
	"the exporter answers on 127.0.0.1:$eport and reaches the cluster")
  or diag(slurp_file($exporter_log));

# prometheus scraping it every second, with the shipped rules
my $rules_abs = Cwd::abs_path($rules);
open(my $cfg, '>', "$tmp/prometheus.yml") or die;
print $cfg <<"EOF";
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $rules_abs
scrape_configs:
  - job_name: perfkit
    static_configs:
      - targets: ['127.0.0.1:$eport']
EOF
close($cfg);
my $prom_log = "$tmp/prometheus.log";
start_child(
	'prometheus', $prom_log, {},
	$bin{prometheus}, "--config.file=$tmp/prometheus.yml", "--storage.tsdb.path=$tmp/prometheus-data",
	"--web.listen-address=127.0.0.1:$pport", '--storage.tsdb.retention.time=1h');
ok(poll_until(sub { $http->get("http://127.0.0.1:$pport/-/ready")->{success} }, 60),
	"prometheus is ready on 127.0.0.1:$pport")
  or diag(slurp_file($prom_log));

# Instant query: list of [labels, value] (empty on error).
sub prom_query
{
	my ($q) = @_;
	my $r = $http->get("http://127.0.0.1:$pport/api/v1/query?" . $http->www_form_urlencode({ query => $q }));
	return () unless $r->{success};
	my $j = decode_json($r->{content});
	return () unless $j->{status} eq 'success';
	return map { [ $_->{metric}, $_->{value}[1] ] } @{ $j->{data}{result} };
}

# The value of a query that returns one series (undef otherwise).
sub prom_value
{
	my @r = prom_query(@_);
	return @r == 1 ? $r[0][1] : undef;
}

# Wait until the query's single value satisfies cmp against want; returns the last value.
sub prom_wait
{
	my ($q, $want, $cmp) = @_;
	$cmp //= sub { defined $_[0] && $_[0] == $_[1] };
	my $got;
	poll_until(sub { $got = prom_value($q); $cmp->($got, $want) }, 90);
	return $got;
}

ok(poll_until(sub { (prom_value('up{job="perfkit"}') // 0) == 1 }, 60), 'prometheus scrapes the exporter')
  or diag(slurp_file($prom_log));

# The workload.
# 1. one statement run 25 times (with a sleep, so that it is the top statement by time)
$node->safe_psql('postgres',
	join("\n", map { "SELECT count(*) FROM pg_sleep(0.02), items WHERE items.grp = $_;" } 1 .. 25));
# 2. three slow executions
$node->safe_psql('postgres', join("\n", map { "SELECT pg_sleep(0.06), $_ AS n;" } 1 .. 3));
# 3. an N+1 loop: a list of authors, then their books one author at a time
$node->safe_psql('postgres',
	join("\n", 'BEGIN;', 'SELECT id FROM authors ORDER BY id LIMIT 8;',
		(map { "SELECT title FROM books WHERE author_id = $_;" } 1 .. 8), 'COMMIT;'));
# 4. index builds: one that succeeds, one that fails (grp is not unique)
$node->safe_psql('postgres', q{
SELECT perfkit.create_index_concurrently('CREATE INDEX items_grp_idx ON items (grp)');
SELECT perfkit.create_index_concurrently('CREATE UNIQUE INDEX items_grp_key ON items (grp)');
});
is($node->safe_psql('postgres', q{CALL perfkit.wait_for_index_builds('3 minutes')}), 't', 'the builds finished');
is( $node->safe_psql('postgres', q{SELECT string_agg(index_name || ' ' || status, ', ' ORDER BY id) FROM perfkit.index_builds}),
	'items_grp_idx succeeded, items_grp_key failed', 'one build succeeded, one failed');

# What perfkit says
my ($queryid, $calls, $p95) = split /\|/, $node->safe_psql('postgres', q{
	SELECT queryid, calls, p95_exec_time FROM perfkit.statements
	 WHERE query = 'SELECT count(*) FROM pg_sleep($1), items WHERE items.grp = $2' AND toplevel});
is($calls, 25, 'perfkit.statements: the statement ran 25 times');
my ($np_patterns, $np_repeats, $slow_captured) = split /\|/,
  $node->safe_psql('postgres', 'SELECT nplusone_patterns, nplusone_repeats, slow_captured FROM perfkit.metrics');
is($np_patterns, 1, 'perfkit.metrics: one N+1 pattern');
is($node->safe_psql('postgres', 'SELECT count(*) FROM perfkit.n_plus_one WHERE confirmed'), $np_patterns,
	'perfkit.metrics counts the patterns perfkit.n_plus_one shows');
cmp_ok($slow_captured, '>=', 3, "perfkit.metrics: slow executions captured ($slow_captured)");

# ---------------------------------------------------------------------------------------------
# What Prometheus says
# ---------------------------------------------------------------------------------------------
my $rolname = $node->safe_psql('postgres', 'SELECT current_user');
my $sel = '{job="perfkit",queryid="' . $queryid . '",datname="postgres",rolname="' . $rolname . '",toplevel="true"}';
is(prom_wait("perfkit_statement_calls_total$sel", $calls), $calls,
	'perfkit_statement_calls_total equals perfkit.statements.calls');
my $p95_prom = prom_wait(qq{perfkit_statement_latency_seconds{job="perfkit",queryid="$queryid",quantile="0.95"}},
	$p95 / 1000, sub { defined $_[0] && abs($_[0] - $_[1]) < 1e-9 });
ok(defined $p95_prom && abs($p95_prom - $p95 / 1000) < 1e-9,
	"perfkit_statement_latency_seconds{quantile=\"0.95\"} is perfkit.statements.p95_exec_time in seconds ($p95 ms)");
my $secs = prom_value("perfkit_statement_exec_seconds_total$sel");
ok(defined $secs && $secs >= 25 * 0.02, "perfkit_statement_exec_seconds_total covers 25 x 20 ms ($secs)");
is(prom_value("perfkit_statement_rows_total$sel"), 25, 'perfkit_statement_rows_total: one row per call');
# the workload's own queries and the exporter's add entries between scrapes: wait for a scrape that
# saw the table as it is now
my ($exported, $top_now);
poll_until(
	sub {
		$exported = prom_value('count(perfkit_statement_calls_total{job="perfkit"})');
		$top_now = $node->safe_psql('postgres', 'SELECT least(count(*), 20) FROM perfkit.statements');
		defined $exported && $exported == $top_now;
	},
	90);
is($exported, $top_now, 'the top 20 statements are exported');
is(scalar(grep { exists $_->[0]{query} } prom_query('{job="perfkit",__name__=~"perfkit_statement.*"}')), 0,
	'no query text is exported');

is(prom_wait('perfkit_nplusone_patterns{job="perfkit"}', $np_patterns), $np_patterns,
	'perfkit_nplusone_patterns equals the N+1 patterns');
is(prom_wait('perfkit_nplusone_repeats_total{job="perfkit"}', $np_repeats), $np_repeats,
	"perfkit_nplusone_repeats_total equals their executions ($np_repeats)");
ok(defined prom_value('perfkit_nplusone_last_detected_timestamp_seconds{job="perfkit"} > 0'),
	'perfkit_nplusone_last_detected_timestamp_seconds is set');
is(prom_wait('perfkit_slow_queries_captured_total{job="perfkit"}', $slow_captured), $slow_captured,
	'perfkit_slow_queries_captured_total equals perfkit.metrics.slow_captured');

is(prom_wait('perfkit_index_build_requests{job="perfkit",datname="postgres",status="succeeded"}', 1), 1,
	'perfkit_index_build_requests{status="succeeded"} is 1');
is(prom_wait('perfkit_index_build_requests{job="perfkit",datname="postgres",status="failed"}', 1), 1,
	'perfkit_index_build_requests{status="failed"} is 1');
is(prom_value('perfkit_index_build_requests{job="perfkit",status="pending"}'), 0, 'no build is pending');
ok(defined prom_value('perfkit_index_build_last_finished_timestamp_seconds{job="perfkit",status="failed"} > 0'),
	'the failed build\'s finish time is exported');
ok(defined prom_value('perfkit_index_recommendations_pending{job="perfkit",datname="postgres"}'),
	'perfkit_index_recommendations_pending is exported');
is(prom_value('perfkit_redis_enabled{job="perfkit"}'), 0, 'perfkit_redis_enabled is 0 (no perfkit.redis_url)');
is(prom_value('perfkit_statements_max{job="perfkit"}'), 5000, 'perfkit_statements_max is perfkit.max_statements');

# No error anywhere
is(prom_value('pg_exporter_last_scrape_error{job="perfkit"}'), 0, 'the exporter\'s last scrape had no error');
is(prom_value('max(pg_exporter_user_queries_load_error{job="perfkit"})'), 0, 'the queries file loaded');
my @bad_log = grep { /level=(error|warn)/ } split /\n/, slurp_file($exporter_log);
is(scalar(@bad_log), 0, 'the exporter logged no error or warning') or diag(join("\n", @bad_log));

# The rules: all evaluated without error; the N+1 and failed-build alerts fire, Redis' does not.
my %health;
poll_until(
	sub {
		my $r = $http->get("http://127.0.0.1:$pport/api/v1/rules");
		return 0 unless $r->{success};
		%health = ();
		for my $g (@{ decode_json($r->{content})->{data}{groups} })
		{
			$health{ $_->{name} } = $_->{health} . ($_->{lastError} ? ": $_->{lastError}" : '') for @{ $g->{rules} };
		}
		return keys %health && !grep { $_ ne 'ok' } values %health;
	},
	60);
cmp_ok(scalar(keys %health), '>=', 9, 'prometheus loaded the shipped rules (' . scalar(keys %health) . ')');
is(join(', ', map { "$_ $health{$_}" } grep { $health{$_} ne 'ok' } sort keys %health), '',
	'every rule evaluates without error');
my %firing;
poll_until(
	sub {
		my $r = $http->get("http://127.0.0.1:$pport/api/v1/alerts");
		return 0 unless $r->{success};
		%firing = map { $_->{labels}{alertname} => $_->{state} } @{ decode_json($r->{content})->{data}{alerts} };
		return ($firing{PerfkitNewNPlusOnePattern} // '') eq 'firing'
		  && ($firing{PerfkitIndexBuildFailed} // '') eq 'firing';
	},
	60);
is($firing{PerfkitNewNPlusOnePattern}, 'firing', 'alert PerfkitNewNPlusOnePattern fires');
is($firing{PerfkitIndexBuildFailed}, 'firing', 'alert PerfkitIndexBuildFailed fires');
ok(!exists $firing{PerfkitRedisDisconnected}, 'alert PerfkitRedisDisconnected does not (Redis push is off)');

# ---------------------------------------------------------------------------------------------
# The optional histogram (perfkit-queries-histogram.yaml appended to the queries file)
# ---------------------------------------------------------------------------------------------
stop_children('exporter');
my $both = "$tmp/perfkit-queries-with-histogram.yaml";
open(my $out, '>', $both) or die;
print $out slurp_file($queries), slurp_file("$contrib/perfkit-queries-histogram.yaml");
close($out);
my $exporter2_log = "$tmp/exporter-histogram.log";
start_child(
	'exporter', $exporter2_log,
	{ DATA_SOURCE_NAME => sprintf('host=%s port=%d user=perfkit_exporter dbname=postgres sslmode=disable',
			$node->host, $node->port) },
	$bin{exporter}, "--web.listen-address=127.0.0.1:$eport", "--extend.query-path=$both",
	'--disable-default-metrics', '--disable-settings-metrics', '--no-collector.bgwriter', '--log.level=info');
my $hsel = '{job="perfkit",queryid="' . $queryid . '",toplevel="true"';
is(prom_wait("perfkit_statement_duration_seconds_count$hsel}", $calls), $calls,
	'with the histogram: perfkit_statement_duration_seconds_count equals the calls');
is(prom_value("perfkit_statement_duration_seconds_bucket$hsel,le=\"+Inf\"}"), $calls, 'its +Inf bucket too');
is(prom_value("perfkit_statement_duration_seconds_bucket$hsel,le=\"0.01\"}"), 0,
	'no execution of pg_sleep(0.02) in the bucket up to 10 ms');
is(prom_value("count(perfkit_statement_duration_seconds_bucket$hsel})"), 17, '16 buckets and +Inf');
my $hsum = prom_value("perfkit_statement_duration_seconds_sum$hsel}");
ok(defined $hsum && abs($hsum - $secs) < 1e-9, 'its _sum is perfkit_statement_exec_seconds_total');
@bad_log = grep { /level=(error|warn)/ } split /\n/, slurp_file($exporter2_log);
is(scalar(@bad_log), 0, 'the exporter logged no error or warning with the histogram') or diag(join("\n", @bad_log));
is(prom_wait('pg_exporter_last_scrape_error{job="perfkit"}', 0), 0, 'and its scrapes have no error');
ok( poll_until(sub { defined prom_value(qq{perfkit:statement_p95_seconds$hsel} . '}') }, 30),
	'the p95 recording rule gives the statement a value with the histogram');

# Figures for the record
diag(sprintf('exporter scrape: %.1f ms (postgres_exporter: %.1f ms), %d perfkit series',
		1000 * (prom_value('scrape_duration_seconds{job="perfkit"}') // -1),
		1000 * (prom_value('pg_exporter_last_scrape_duration_seconds{job="perfkit"}') // -1),
		prom_value('count({job="perfkit",__name__=~"perfkit_.*"})') // -1));

stop_children();
is(scalar(keys %children), 0, 'the exporter and prometheus are stopped');
$node->stop;
done_testing();
