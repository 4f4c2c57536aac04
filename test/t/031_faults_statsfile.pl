# Faults around the statistics file pg_stat/perfkit.stat (see src/statsfile.c), beyond the garbage
# and truncated files of 001_save_reload.pl:
#   - damaged files at start: empty, a valid header with a wrong checksum, another format version,
#     another server version, a correct checksum over inconsistent entries (an entry count too
#     high or negative, data after the last entry), a file too large, an unreadable file: each is
#     ignored with a LOG line naming the reason, the server starts, and the file is removed (so
#     that the next save can replace it); an intact file loads;
#   - an immediate shutdown and a crash: nothing is saved (documented: the table may be
#     inconsistent), so the next start has no file to load and logs nothing about one; after a
#     crash-restart a clean shutdown saves again;
#   - a full disk at shutdown (the temporary file is a symlink to /dev/full, so every write fails
#     with ENOSPC), a read-only pg_stat directory (EACCES) and a failing rename (an unreadable
#     file in the way): a LOG line, never FATAL or PANIC; the server shuts down cleanly, leaves no
#     temporary file, and starts again.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('faults_statsfile');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'perfkit'
# statements of other sessions are read right after they end (TAP 054 tests the interval)
perfkit.stats_flush_interval = 0
restart_after_crash = on
log_statement = none
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION perfkit');

my $statfile = $node->data_dir . '/pg_stat/perfkit.stat';
my $tmpfile = "$statfile.tmp";
my %figures = (files => 0, ignored => 0, save_failures => 0);

my $calls_sql = q{SELECT calls FROM perfkit.statements WHERE query LIKE 'SELECT $1 + $2%'};
sub calls { return $node->safe_psql('postgres', $calls_sql); }

# "SELECT 1 + 1" five times, and with $many, 150 statements of distinct shapes (a file of many
# kilobytes, so writes fail in fwrite() and not only when the file is closed).
sub run_workload
{
	my ($many) = @_;
	$node->safe_psql('postgres', 'SELECT 1 + 1') for 1 .. 5;
	$node->safe_psql('postgres', join('', map { 'SELECT ' . join(' + ', (1) x $_) . ";\n" } 2 .. 151))
	  if $many;
	return;
}

# CRC-32C as PostgreSQL computes it (pg_crc32c: reflected Castagnoli polynomial, inverted).
my @crc_table = map {
	my $c = $_;
	$c = ($c & 1) ? (($c >> 1) ^ 0x82F63B78) : ($c >> 1) for 1 .. 8;
	$c
} 0 .. 255;
sub crc32c
{
	my $crc = 0xFFFFFFFF;
	$crc = $crc_table[($crc ^ $_) & 0xFF] ^ ($crc >> 8) for unpack('C*', $_[0]);
	return $crc ^ 0xFFFFFFFF;
}

sub slurp_bin
{
	open(my $fh, '<:raw', $_[0]) or die "could not read $_[0]: $!";
	local $/;
	my $data = <$fh>;
	close($fh);
	return $data;
}

sub write_bin
{
	my ($path, $data) = @_;
	open(my $fh, '>:raw', $path) or die "could not write $path: $!";
	print $fh $data;
	close($fh);
	return;
}

# The body (everything before the trailer) with a correct trailer.
sub with_crc { return $_[0] . pack('V', crc32c($_[0])); }

# --- an intact file, written at a clean shutdown
run_workload(0);
$node->stop;
ok(-f $statfile, 'statistics file written at clean shutdown');
my $orig = slurp_bin($statfile);
my $body = substr($orig, 0, -4);
is(unpack('V', substr($orig, -4)), crc32c($body), "the test computes perfkit's checksum");
# header: magic, format, server major, histogram buckets, counters size, entry count (6 x 4 bytes),
# then stats_reset and evictions (8 bytes each)
my ($magic, $format, $major, $buckets, $csize, $nentries) = unpack('V5 l', $body);
is($magic, 0x504B5354, 'the file starts with the magic number');
cmp_ok($nentries, '>', 0, "the file has entries ($nentries)");

# Start with $content as the statistics file: the server must start, ignore it with a LOG line
# matching $reason, and remove it.
sub damaged
{
	my ($what, $content, $reason, %opt) = @_;
	write_bin($statfile, $content) if defined $content;
	$opt{prepare}->() if $opt{prepare};
	$figures{files}++;
	my $offset = -s $node->logfile;
	$node->start;
	is($node->safe_psql('postgres', 'SELECT 1'), '1', "$what: the server starts");
	is(calls(), '', "$what: nothing loaded");
	ok($node->log_contains(qr/LOG:  $reason/, $offset), "$what: logged why")
	  and $figures{ignored}++;
	ok(!$node->log_contains(qr/FATAL|PANIC/, $offset), "$what: no FATAL or PANIC");
	ok(!-e $statfile, "$what: the file was removed");
	$node->stop;
	return;
}

my $ignoring = 'ignoring perfkit statistics file "pg_stat/perfkit\.stat": ';
damaged('empty file', '', "${ignoring}file is too short");
my $flipped = $body;
substr($flipped, length($flipped) - 1, 1) = chr(ord(substr($flipped, -1)) ^ 0x01);
damaged('valid header, wrong checksum', $flipped . substr($orig, -4), "${ignoring}checksum mismatch");
damaged('another format version', with_crc(substr($body, 0, 4) . pack('V', $format + 1) . substr($body, 8)),
	"${ignoring}written by another version of perfkit or of the server");
# another major, as after pg_upgrade with the old cluster's file copied over
damaged('another server major', with_crc(substr($body, 0, 8) . pack('V', $major - 100) . substr($body, 12)),
	"${ignoring}written by PostgreSQL " . ($major / 100 - 1) . ', this server is ' . ($major / 100));
damaged('another counters size', with_crc(substr($body, 0, 16) . pack('V', $csize + 8) . substr($body, 20)),
	"${ignoring}written by another version of perfkit or of the server");
damaged('entry count too high, checksum right',
	with_crc(substr($body, 0, 20) . pack('l', $nentries + 1) . substr($body, 24)),
	"${ignoring}entry extends past the end of the file");
damaged('negative entry count, checksum right',
	with_crc(substr($body, 0, 20) . pack('l', -1) . substr($body, 24)),
	"${ignoring}invalid entry count");
damaged('data after the last entry, checksum right', with_crc($body . 'extra'),
	"${ignoring}unexpected data after the last entry");
damaged('a file over 1 GB', undef, "${ignoring}cannot determine its size or it is too large",
	prepare => sub { write_bin($statfile, $orig); truncate($statfile, 2 * 1024 * 1024 * 1024) or die "truncate: $!"; });
damaged('an unreadable file', $orig,
	'could not read perfkit statistics file "pg_stat/perfkit\\.stat": Permission denied',
	prepare => sub { chmod(0000, $statfile) or die "chmod: $!"; });
$node->start;
run_workload(0);
$node->stop;
is(calls_after_start(), '5', 'after the damaged files, the next clean shutdown saves and the start loads');
$node->stop;

# Start, read the calls of "SELECT 1 + 1", keep running.
sub calls_after_start
{
	$node->start;
	return calls();
}

# --- the intact file written by perfkit loads (the crafted ones above failed for their reason only)
write_bin($statfile, $orig);
is(calls_after_start(), '5', 'the intact file loads');

# --- immediate shutdown: nothing saved, nothing complained about at the next start
run_workload(0);
is(calls(), '10', 'counted 5 more');
$node->stop('immediate');
ok(!-e $statfile, 'immediate shutdown: no statistics file written (documented)');
ok(!-e $tmpfile, 'immediate shutdown: no temporary file left');
my $offset = -s $node->logfile;
is(calls_after_start(), '', 'immediate shutdown: the statistics are not kept');
ok(!$node->log_contains(qr/perfkit statistics file/, $offset),
	'immediate shutdown: nothing logged about the statistics file at the next start');

# --- a crash (kill -9 of a backend): nothing saved; after the crash-restart a clean shutdown saves
run_workload(0);
my $victim = $node->background_psql('postgres', on_error_stop => 0);
my $pid = $victim->query_safe('SELECT pg_backend_pid()');
$offset = -s $node->logfile;
kill 'KILL', $pid;
$node->wait_for_log(qr/all server processes terminated; reinitializing/, $offset);
$node->wait_for_log(qr/database system is ready to accept connections/, $offset);
eval { $victim->quit; };
is(calls(), '', 'crash: the statistics are not kept');
ok(!-e $statfile, 'crash: no statistics file written');
run_workload(0);
$node->stop;
ok(-f $statfile, 'clean shutdown after a crash-restart: the statistics file is written');
is(calls_after_start(), '5', 'and loaded at the next start');

# Stop with a save that fails: LOG, clean shutdown, no temporary file, clean start without stats.
sub failed_save
{
	my ($what, $error, $prepare, $undo, $keeps) = @_;
	$offset = -s $node->logfile;
	$prepare->();
	my $stopped = eval { $node->stop('fast'); 1; };
	ok($stopped, "$what: pg_ctl stop succeeds") or diag($@);
	$undo->() if $undo;
	ok($node->log_contains(qr/LOG:  $error/, $offset), "$what: logged") and $figures{save_failures}++;
	ok($node->log_contains(qr/database system is shut down/, $offset), "$what: the shutdown completed");
	# ("FATAL:  terminating connection due to administrator command" is how a fast shutdown ends
	# sessions)
	ok(!$node->log_contains(
			qr/FATAL:  (?!terminating connection due to administrator command)|PANIC|was terminated by signal/,
			$offset),
		"$what: no FATAL, PANIC or crash");
	ok(!-e $tmpfile && !-l $tmpfile, "$what: no temporary file left");
	ok(!-e $statfile, "$what: no statistics file") unless $keeps;
	$offset = -s $node->logfile;
	is(calls_after_start(), '', "$what: the server starts again, without the statistics");
	ok(!$node->log_contains(qr/perfkit statistics file/, $offset), "$what: nothing logged at start")
	  unless $keeps;
	return;
}
my $write_failed = 'could not write perfkit statistics file "pg_stat/perfkit\\.stat\\.tmp": ';

# --- a full disk at shutdown (writes fail with ENOSPC), with a small and with a large table
SKIP:
{
	skip('no /dev/full to simulate a full disk', 1) unless -c '/dev/full';
	run_workload(0);
	failed_save('disk full, small file', "${write_failed}No space left on device",
		sub { symlink('/dev/full', $tmpfile) or die "symlink: $!"; });
	run_workload(1);
	cmp_ok($node->safe_psql('postgres', 'SELECT count(*) FROM perfkit.statements'), '>=', 150,
		'many statements recorded');
	failed_save('disk full, large file', "${write_failed}No space left on device",
		sub { symlink('/dev/full', $tmpfile) or die "symlink: $!"; });
}

# --- a read-only pg_stat directory at shutdown (EACCES)
run_workload(1);
my $pg_stat = $node->data_dir . '/pg_stat';
failed_save('read-only pg_stat', "${write_failed}Permission denied",
	sub { chmod(0500, $pg_stat) or die "chmod: $!"; },
	sub { chmod(0700, $pg_stat) or die "chmod: $!"; });

# --- the rename fails: an unreadable file (created behind the server's back) is in the way
run_workload(0);
failed_save('rename fails', 'could not open file "pg_stat/perfkit\\.stat": Permission denied',
	sub { write_bin($statfile, 'x'); chmod(0000, $statfile) or die "chmod: $!"; }, undef, 1);
ok(!-e $statfile, 'rename fails: the unreadable file was removed at the start');

# --- and the next clean shutdown saves again
run_workload(0);
$node->stop;
is(calls_after_start(), '5', 'after the failed saves, a clean shutdown saves again');
$node->stop;

diag(sprintf('damaged files started with %d, ignored with a reason %d; failed saves survived %d',
		@figures{qw(files ignored save_failures)}));
done_testing();
