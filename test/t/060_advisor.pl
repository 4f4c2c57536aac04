# Index advisor with a real client: pgbench over the extended protocol sends bind parameters, which
# the advisor keeps and plans with; statements are replayed as their role, under that role's
# search_path, and only for viewers with that role's privileges; replay cannot change the viewer's
# settings, ignore a cancel, or fail on huge parameters; only the table's owner gets builds from
# perfkit.create_recommended_indexes(); a dropped table does not break the view.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use PerfkitStats;    # wait_for_flushes

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
# The load is not the workload: its 30,000 inserted rows would count as writes that a new index on
# items has to keep up with, outweighing the few reads below.
$node->safe_psql('postgres', 'SELECT perfkit.reset()');

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
ok(wait_for_flushes($node), 'the pgbench sessions are gone, their figures flushed');
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
	'0', 'another role does not get recommendations from app\'s statements');
# Statements are replayed as their role: pg_read_all_stats alone is not enough (its holder could
# shadow a table with a temporary view and have its own code run as that role).
my ($ret, $out, $err) = $node->psql('postgres', q{
CREATE FUNCTION pg_temp.snoop() RETURNS boolean IMMUTABLE LANGUAGE plpgsql
  AS $$ BEGIN RAISE WARNING 'snoop runs as %', current_user; RETURN true; END $$;
CREATE TEMP VIEW items AS SELECT i.* FROM shop.items i WHERE pg_temp.snoop();
SET search_path = pg_temp, shop;
SELECT count(*) FROM perfkit.index_recommendations;
}, extra_params => ['-U', 'auditor']);
is($out, '0', 'a pg_read_all_stats role gets nothing from other roles\' statements');
unlike($err, qr/snoop runs as/, 'and no code of its own runs as another role');

# A role that reads the table sees the index its own statement needs, but cannot have it built.
$node->safe_psql('postgres', 'GRANT USAGE ON SCHEMA shop TO watcher; GRANT SELECT ON shop.items TO watcher');
$node->safe_psql('postgres', q{SELECT count(*) FROM shop.items WHERE order_id = 12},
	extra_params => ['-U', 'watcher']);
($ret, $out, $err) = $node->psql('postgres',
	'SELECT count(*) FROM perfkit.create_recommended_indexes()',
	extra_params => ['-U', 'watcher']);
is($out, '0', 'no build requested for a role that does not own the table');
like($err, qr/NOTICE:  skipping the recommended index on shop\.items/, 'it is told why');
is($node->safe_psql('postgres', 'SELECT count(*) FROM perfkit.index_build_requests'), '0',
	'nothing was requested');

# Code that runs while a statement is planned again (an IMMUTABLE function evaluated by the
# planner) cannot change the viewer's settings.
$node->safe_psql('postgres', q{
CREATE FUNCTION shop.tamper() RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$
BEGIN
  PERFORM set_config('search_path', 'shop, pg_catalog', false);
  PERFORM set_config('work_mem', '77kB', false);
  RETURN 5;
END $$;
SELECT count(*) FROM items WHERE order_id = shop.tamper();
}, extra_params => ['-U', 'app']);
is($node->safe_psql('postgres', q{
SELECT count(*) > 0 FROM perfkit.index_recommendations;
SELECT current_setting('search_path') || ' / ' || current_setting('work_mem');
}), "t\n\"\$user\", public / 4MB", 'the viewer\'s search_path and work_mem are untouched');

# A cancel (here statement_timeout) stops the computation instead of being swallowed.
$node->safe_psql('postgres', q{
CREATE FUNCTION shop.slow() RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT 1 FROM pg_sleep(0.4)';
SELECT count(*) FROM items WHERE order_id = shop.slow();
SELECT count(*) FROM items WHERE order_id = shop.slow() + 1;
}, extra_params => ['-U', 'app']);
($ret, $out, $err) = $node->psql('postgres', q{
SET statement_timeout = '300ms';
SELECT count(*) FROM perfkit.index_recommendations;
});
like($err, qr/canceling statement due to statement timeout/, 'statement_timeout cancels the view');

# A huge bind parameter of a sampled statement is neither converted nor kept; the slow-query
# capture shows its size.
$node->safe_psql('postgres', q{
CREATE TABLE shop.blobs (id int PRIMARY KEY, b bytea);
INSERT INTO shop.blobs VALUES (1, NULL);
SET perfkit.slow_threshold = 0;
PREPARE u(bytea, int) AS UPDATE shop.blobs SET b = $1 WHERE id = $2;
EXECUTE u(convert_to(repeat('x', 20000000), 'UTF8'), 1);
});
like($node->safe_psql('postgres',
		q{SELECT params FROM perfkit.slow_queries WHERE query LIKE 'PREPARE u%'}),
	qr/^\$1 = \[20000000 bytes\], \$2 = '1'$/, 'a 20 MB parameter shows as its size');
$node->safe_psql('postgres', 'DROP FUNCTION shop.tamper(), shop.slow()');
$node->safe_psql('postgres', 'SELECT perfkit.reset_index_advisor()');
$node->safe_psql('postgres', q{SELECT count(*) FROM items WHERE order_id = 77},
	extra_params => ['-U', 'app']);

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
