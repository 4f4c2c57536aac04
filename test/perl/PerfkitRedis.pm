# PerfkitRedis — helpers shared by perfkit's Redis TAP tests: a redis-server child on a free
# loopback port (stopped at the end of the test, also on failure), redis-cli, polling with a
# deadline, and the key perfkit pushes a statement's result under (computed independently of perfkit).
package PerfkitRedis;

use strict;
use warnings;

use Digest::SHA;
use Exporter 'import';
use IPC::Run;
use POSIX ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Time::HiRes qw(time usleep);

our @EXPORT = qw($redis_port $redis_dir $redis_pid $role redis_cli poll_until redis_start redis_stop key_of);

# Set by redis_start (the test framework can only hand out ports once the test runs).
our $redis_port;
our $redis_dir;
our $redis_pid;

sub redis_cli
{
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'redis-cli', '-p', $redis_port, '--raw', @_ ],
		'>', \$out, '2>', \$err, IPC::Run::timeout(20));
	chomp $out;
	return $out;
}

sub poll_until
{
	my ($cond, $secs) = @_;
	my $deadline = time() + ($secs // $PostgreSQL::Test::Utils::timeout_default);
	while (time() < $deadline)
	{
		return 1 if $cond->();
		usleep(100_000);
	}
	return 0;
}

sub redis_start
{
	$redis_port //= PostgreSQL::Test::Cluster::get_free_port();
	$redis_dir //= PostgreSQL::Test::Utils::tempdir();
	$redis_pid = fork();
	die "fork: $!" unless defined $redis_pid;
	if ($redis_pid == 0)
	{
		exec('redis-server', '--port', $redis_port, '--bind', '127.0.0.1', '--save', '',
			'--appendonly', 'no', '--dir', $redis_dir, '--logfile', "$redis_dir/redis.log")
		  or POSIX::_exit(1);
	}
	poll_until(sub { (eval { redis_cli('PING') } // '') eq 'PONG' }) or die "redis-server did not start";
}

sub redis_stop
{
	return unless $redis_pid;
	kill 'CONT', $redis_pid;
	kill 'TERM', $redis_pid;
	waitpid($redis_pid, 0);
	$redis_pid = undef;
}
END { redis_stop(); }

# The key as an application computes it: SHA-1 of the statement text, then per parameter a NUL
# byte and its text form with backslashes doubled (\N for NULL).
our $role;
sub key_of
{
	my ($text, @params) = @_;
	my $sha = Digest::SHA->new(1);
	$sha->add($text);
	$sha->add("\0", defined $_ ? s/\\/\\\\/gr : '\N') for @params;
	return "perfkit:postgres:$role:" . $sha->hexdigest;
}

1;
