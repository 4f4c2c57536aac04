# The same numbers in any preload order.  One varied workload (transaction control, SET/SHOW/RESET,
# VACUUM, ANALYZE, cursors, CREATE TABLE AS, materialized views, DROP, DO with dynamic SQL,
# prepared statements, EXPLAIN ANALYZE, a procedure and a function, and pgbench over the extended
# protocol with prepared BEGIN/END) runs with perfkit loaded in five ways: after
# pg_stat_statements (the reference), before it (its hooks then run outside perfkit's and clear
# the query id of utility statements), alone, with auto_explain analyzing every statement, and
# first of three.  perfkit must record the same entries (text, top level, calls, rows) every
# time, and equal pg_stat_statements wherever that is loaded, except for one known difference:
# pg_stat_statements clears the query id inside a utility statement's cached plan, so it counts a
# BEGIN or END prepared through the extended protocol at its first execution only (once per
# pgbench client here); perfkit counts every execution.  (From 16 on, END and COMMIT share a query
# id, shown as COMMIT.)
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use PerfkitStats;    # wait_for_flushes

my $node = PostgreSQL::Test::Cluster->new('preload_orders');
$node->init;
$node->append_conf('postgresql.conf', qq{
perfkit.track = all
pg_stat_statements.track = all
auto_explain.log_min_duration = 0
auto_explain.log_analyze = on
auto_explain.log_nested_statements = on
});

my $workload = q{
BEGIN;
SELECT count(*) FROM po_items WHERE grp = 3;
UPDATE po_items SET v = v + 1 WHERE id = 5;
COMMIT;
START TRANSACTION;
SELECT v FROM po_items WHERE id = 7;
END;
SET work_mem = '8MB';
SHOW work_mem;
RESET work_mem;
VACUUM po_items;
ANALYZE po_items;
BEGIN;
DECLARE po_cur CURSOR FOR SELECT id FROM po_items ORDER BY id;
FETCH 5 FROM po_cur;
CLOSE po_cur;
COMMIT;
CREATE TABLE po_copy AS SELECT * FROM po_items WHERE id < 50;
CREATE MATERIALIZED VIEW po_mv AS SELECT grp, count(*) AS n FROM po_items GROUP BY grp;
REFRESH MATERIALIZED VIEW po_mv;
DROP MATERIALIZED VIEW po_mv;
DROP TABLE po_copy;
DO $$
BEGIN
  FOR i IN 1..3 LOOP
    EXECUTE format('SELECT count(*) FROM po_items WHERE id = %s', i);
    PERFORM v FROM po_items WHERE id = i;
    EXECUTE 'SET LOCAL work_mem = ''4MB''';
  END LOOP;
END $$;
PREPARE po_q(int) AS SELECT v FROM po_items WHERE id = $1;
EXECUTE po_q(1);
EXECUTE po_q(2);
DEALLOCATE po_q;
EXPLAIN ANALYZE SELECT count(*) FROM po_items WHERE grp = 4;
CALL po_proc(6);
SELECT po_func(8);
};

# perfkit's (or pg_stat_statements') entries of the workload, one line each, sorted.
sub entries
{
	my ($view) = @_;
	return $node->safe_psql('postgres', qq{
SELECT string_agg(format('%s|%s|%s|%s', toplevel, calls, rows, query), E'\\n' ORDER BY query, toplevel)
  FROM $view
 WHERE query NOT LIKE '%perfkit.%' AND query NOT LIKE '%pg_stat_statements%'
});
}

my @configs = (
	[ 'pg_stat_statements,perfkit', 'after pg_stat_statements' ],
	[ 'perfkit,pg_stat_statements', 'before pg_stat_statements' ],
	[ 'perfkit', 'alone' ],
	[ 'auto_explain,perfkit', 'with auto_explain' ],
	[ 'perfkit,auto_explain,pg_stat_statements', 'first of three' ],
);
my $reference;
my $first = 1;
foreach my $config (@configs)
{
	my ($libraries, $name) = @$config;
	my $pgss = $libraries =~ /pg_stat_statements/;
	$node->append_conf('postgresql.conf', "shared_preload_libraries = '$libraries'\n");
	if ($first) { $node->start; } else { $node->restart; }
	if ($first)
	{
		$node->safe_psql('postgres', q{
CREATE EXTENSION perfkit;
CREATE EXTENSION pg_stat_statements;
CREATE TABLE po_items (id int PRIMARY KEY, grp int NOT NULL, v int NOT NULL DEFAULT 0);
INSERT INTO po_items SELECT g, g % 10, 0 FROM generate_series(1, 1000) g;
CREATE PROCEDURE po_proc(k int) LANGUAGE plpgsql AS
  $$ BEGIN UPDATE po_items SET v = v + 1 WHERE id = k; END $$;
CREATE FUNCTION po_func(k int) RETURNS int LANGUAGE plpgsql AS
  $$ BEGIN RETURN (SELECT v FROM po_items WHERE id = k); END $$;
});
		$first = 0;
	}
	$node->safe_psql('postgres', $pgss ? 'SELECT perfkit.reset(), pg_stat_statements_reset()'
		: 'SELECT perfkit.reset()');
	$node->safe_psql('postgres', $workload);
	$node->pgbench(
		'--no-vacuum --client=2 --transactions=10 --protocol=prepared',
		0, [qr{processed: 20/20}], [qr{^$}], "$name: pgbench with prepared BEGIN and END",
		{
			"053_prepared_transaction_$name" => q{
\set k random(1, 1000)
BEGIN;
SELECT v FROM po_items WHERE id = :k;
UPDATE po_items SET v = v + 1 WHERE id = :k;
END;
}
		});

	wait_for_flushes($node);
	my $got = entries('perfkit.statements');
	like($got, qr/^t\|1\|0\|VACUUM po_items$/m, "$name: utility statements are recorded");
	like($got, qr/^t\|22\|0\|BEGIN$/m, "$name: the prepared BEGIN is recorded at every execution");
	like($got, qr/^f\|3\|3\|SELECT count\(\*\) FROM po_items WHERE id = \$1$/m,
		"$name: dynamic SQL inside DO is nested");
	if (!defined $reference)
	{
		$reference = $got;
	}
	else
	{
		is($got, $reference, "$name: the same entries as after pg_stat_statements");
	}
	if ($pgss)
	{
		my ($mine, $theirs) = map { join "\n", grep { !/^t\|\d+\|0\|(BEGIN|END|COMMIT)$/ } split /\n/, $_ }
		  ($got, entries('pg_stat_statements'));
		is($mine, $theirs, "$name: the same entries as pg_stat_statements (but prepared BEGIN and END)");
		like(entries('pg_stat_statements'), qr/^t\|4\|0\|BEGIN$/m,
			"$name: pg_stat_statements counts the prepared BEGIN once per client");
	}
}

$node->stop;
done_testing();
