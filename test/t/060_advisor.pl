# Index advisor with a real client: pgbench over the extended protocol sends bind parameters, which
# the advisor keeps and plans with; statements are replayed as their role, under that role's
# search_path; other roles' statements are used only with pg_read_all_stats; only the table's owner
# gets builds from perfkit.create_recommended_indexes(); a dropped table does not break the view.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('advisor');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'perfkit'
perfkit.advisor_sample_rate = 1
max_parallel_workers_per_gather = 0
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION perfkit;
CREATE ROLE app LOGIN;
CREATE ROLE watcher LOGIN;
CREATE ROLE auditor LOGIN IN ROLE pg_read_all_stats;
CREATE SCHEMA shop AUTHORIZATION app;
ALTER ROLE app SET search_path = shop, public;
GRANT USAGE ON SCHEMA shop TO auditor;
});
# The table lives in app's schema; app's statements name it without a schema.
$node->safe_psql('postgres', q{
SET ROLE app;
CREATE TABLE shop.items (id int PRIMARY KEY, order_id int NOT NULL, sku text NOT NULL);
INSERT INTO shop.items SELECT i, i % 3000, 'SKU-' || i FROM generate_series(1, 30000) i;
CREATE TABLE shop.scratch (a int, b int);
INSERT INTO shop.scratch SELECT i, i FROM generate_series(1, 20000) i;
ANALYZE shop.items, shop.scratch;
});

$node->pgbench(
	'--no-vacuum --client=2 --transactions=25 --protocol=extended --username=app',
	0,
	[qr{processed: 50/50}],
	[qr{^$}],
	'pgbench looks items up by an unindexed column with bind parameters',
	{
		'060_items' => q{
\set oid random(1, 2999)
SELECT sku FROM items WHERE order_id = :oid;
}
	});
$node->safe_psql('postgres', 'SELECT count(*) FROM scratch WHERE b = 77', extra_params => ['-U', 'app']);
$node->safe_psql('postgres', 'DROP TABLE shop.scratch');

my $rec = q{SELECT definition || ' | ' || calls || ' | ' || (improvement_pct >= 50)
              || ' | ' || (queryids = ARRAY[(SELECT queryid FROM perfkit.statements
                                             WHERE query LIKE 'SELECT sku FROM items%')])
              FROM perfkit.index_recommendations};
is($node->safe_psql('postgres', $rec, extra_params => ['-U', 'app']),
	'CREATE INDEX CONCURRENTLY ON shop.items USING btree (order_id) | 50 | true | true',
	'the owner sees the index its pgbench statement needs, with its 50 calls and its queryid');
is($node->safe_psql('postgres', $rec),
	'CREATE INDEX CONCURRENTLY ON shop.items USING btree (order_id) | 50 | true | true',
	'a superuser with another search_path gets the same: the statement was planned under app\'s');
is($node->safe_psql('postgres', 'SELECT count(*) FROM perfkit.index_recommendations',
		extra_params => ['-U', 'watcher']),
	'0', 'a role without pg_read_all_stats does not get recommendations from other roles\' statements');

# pg_read_all_stats sees it, but cannot have it built: it does not own the table.
my ($ret, $out, $err) = $node->psql('postgres',
	'SELECT count(*) FROM perfkit.create_recommended_indexes()',
	extra_params => ['-U', 'auditor']);
is($out, '0', 'no build requested for a role that does not own the table');
like($err, qr/NOTICE:  skipping the recommended index on shop\.items/, 'it is told why');
is($node->safe_psql('postgres', 'SELECT count(*) FROM perfkit.index_build_requests'), '0',
	'nothing was requested');

# The owner requests it from inside a transaction, as a migration would.
$node->safe_psql('postgres', q{
BEGIN;
SELECT * FROM perfkit.create_recommended_indexes(min_improvement => 80);
COMMIT;
}, extra_params => ['-U', 'app']);
$node->safe_psql('postgres', q{CALL perfkit.wait_for_index_builds('2 minutes')});
is($node->safe_psql('postgres', q{
SELECT pg_get_indexdef(indexrelid) || ' valid=' || indisvalid FROM pg_index
 WHERE indrelid = 'shop.items'::regclass AND NOT indisprimary}),
	'CREATE INDEX items_order_id_idx ON shop.items USING btree (order_id) valid=true',
	'the recommended index was built concurrently and is valid');
is($node->safe_psql('postgres', 'SELECT count(*) FROM perfkit.index_recommendations'), '0',
	'the statement is served now: nothing left to recommend');

# A statement to analyze by hand, with its own role's privileges.
is($node->safe_psql('postgres',
		q{SELECT definition FROM perfkit.recommend_indexes('SELECT * FROM shop.items WHERE sku = ''SKU-5''')},
		extra_params => ['-U', 'app']),
	'CREATE INDEX CONCURRENTLY ON shop.items USING btree (sku)', 'recommend_indexes for one statement');

$node->stop;
done_testing();
