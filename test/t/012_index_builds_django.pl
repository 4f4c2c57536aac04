# A real migration framework: Django (Debian's python3-django, psycopg2) runs its migrations inside
# transactions, where CREATE INDEX CONCURRENTLY is impossible.  A RunSQL migration calling
# perfkit.create_index_concurrently() works there; the index is built after the migration commits.
# A migration that fails after requesting an index rolls the request back with everything else.
#
# The Django project is test/django (settings read PGHOST, PGPORT and PGDATABASE).
use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $python = '/usr/bin/python3';
my $project = abs_path(dirname(__FILE__) . '/../django');

my $node = PostgreSQL::Test::Cluster->new('index_builds_django');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'perfkit'\n");
$node->start;

$node->safe_psql('postgres', 'CREATE DATABASE shop');
$node->safe_psql('shop', 'CREATE EXTENSION perfkit');

# Run manage.py with the given arguments against database "shop"; returns (ok, stdout, stderr).
sub manage
{
	my ($env, @args) = @_;
	local %ENV = (
		%ENV,
		PGHOST => $node->host,
		PGPORT => $node->port,
		PGDATABASE => 'shop',
		PYTHONDONTWRITEBYTECODE => '1',
		%$env);
	my ($stdout, $stderr);
	my $ok = IPC::Run::run([ $python, "$project/manage.py", @args ],
		'>', \$stdout, '2>', \$stderr);
	return ($ok, $stdout, $stderr);
}

my ($ok, $stdout, $stderr) = manage({}, 'migrate', '--noinput');
ok($ok, 'manage.py migrate succeeded') or diag("stdout:\n$stdout\nstderr:\n$stderr");
like($stdout, qr/Applying shop\.0002_sku_index\.\.\. OK/, 'the RunSQL migration was applied');

# Django ran the migration in a transaction (TAP nodes log every statement): in one session, BEGIN,
# the request, the django_migrations row of 0002, then COMMIT.
my (%in_txn, %seen);
my $together = 0;
foreach my $line (split /\n/, slurp_file($node->logfile))
{
	next unless $line =~ /\[(\d+)\].*statement: (.*)$/;
	my ($pid, $stmt) = ($1, $2);
	if ($stmt eq 'BEGIN')
	{
		$in_txn{$pid} = 1;
		$seen{$pid} = 0;
	}
	elsif ($stmt eq 'COMMIT' || $stmt eq 'ROLLBACK')
	{
		$together = 1 if $stmt eq 'COMMIT' && ($seen{$pid} // 0) == 2;
		$in_txn{$pid} = 0;
	}
	elsif ($stmt =~ /^SELECT perfkit\.create_index_concurrently\('CREATE INDEX shop_item_sku_idx/)
	{
		$seen{$pid} = 1 if $in_txn{$pid};
	}
	elsif ($stmt =~ /^INSERT INTO "django_migrations".*'0002_sku_index'/)
	{
		$seen{$pid} = 2 if ($seen{$pid} // 0) == 1;
	}
}
ok($together, "the request was made inside the migration's transaction");
like( $node->safe_psql('shop',
		q{SELECT definition FROM perfkit.index_builds WHERE index_name = 'shop_item_sku_idx'}),
	qr/^CREATE INDEX shop_item_sku_idx ON shop_item \(sku\)$/, 'request recorded');

is($node->safe_psql('shop', q{CALL perfkit.wait_for_index_builds('3 minutes')}), 't',
	'builds finished');
is( $node->safe_psql('shop',
		q{SELECT status FROM perfkit.index_builds WHERE index_name = 'shop_item_sku_idx'}),
	'succeeded', 'the index was built after the migration committed');
is( $node->safe_psql('shop',
		q{SELECT indisvalid FROM pg_index WHERE indexrelid = 'shop_item_sku_idx'::regclass}),
	't', 'shop_item_sku_idx exists and is valid');
like( $node->safe_psql('shop', q{SELECT pg_get_indexdef('shop_item_sku_idx'::regclass)}),
	qr/USING btree \(sku\)/, 'on the right column');

# A failing migration rolls back its index request together with everything else.
($ok, $stdout, $stderr) = manage({ PK_DJANGO_BROKEN => '1' }, 'migrate', '--noinput');
ok(!$ok, 'a failing migration fails');
like($stderr, qr/this migration fails on purpose/, 'with its own error');
is($node->safe_psql('shop', q{CALL perfkit.wait_for_index_builds('3 minutes')}), 't',
	'nothing left to wait for');
is( $node->safe_psql('shop',
		q{SELECT count(*) FROM perfkit.index_builds WHERE index_name = 'shop_item_qty_idx'}),
	'0', 'its request was rolled back');
is($node->safe_psql('shop', q{SELECT to_regclass('shop_item_qty_idx') IS NULL}), 't',
	'and the index was never built');

# Unapplying the migration drops the index concurrently, again from inside a transaction.
($ok, $stdout, $stderr) = manage({}, 'migrate', 'shop', '0001', '--noinput');
ok($ok, 'manage.py migrate shop 0001 succeeded') or diag("stdout:\n$stdout\nstderr:\n$stderr");
is($node->safe_psql('shop', q{CALL perfkit.wait_for_index_builds('3 minutes')}), 't',
	'drop finished');
is($node->safe_psql('shop', q{SELECT to_regclass('shop_item_sku_idx') IS NULL}), 't',
	'the index was dropped');

$node->stop;
done_testing();
