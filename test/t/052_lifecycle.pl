# The extension's life cycle: not preloaded, upgraded from the released 0.1.0, dropped while index
# builds are pending.
#  (a) Without shared_preload_libraries every view and function of the extension either works or fails
#      with the clear "must be loaded via shared_preload_libraries" error and its hint (no other error,
#      no crash); ALTER EXTENSION UPDATE and DROP EXTENSION work there too.  (002_not_preloaded.pl
#      checks the statistics views; this covers the rest.)
#  (b) CREATE EXTENSION perfkit VERSION '0.1.0', used (statements recorded, index builds requested),
#      then ALTER EXTENSION perfkit UPDATE: the version is the control file's default_version, the
#      rows of index_build_requests survive unchanged and builds still work, and the extension's member
#      objects with their definitions and privileges are exactly those of a fresh CREATE EXTENSION.
#      The same from the released 0.2.0: perfkit.redis_status works with the 0.2.0 objects and the
#      new library (its 11 columns), and after the update has the new columns last; a user's view
#      over it survives the update; the members again equal a fresh install's.
#  (c) DROP EXTENSION while builds are pending, the builder stuck on a lock another session holds on
#      the table: the drop does not wait for the builder, no ERROR/FATAL appears in the server log, the
#      builder exits (none left in pg_stat_activity), the pending build is never run, the server stays
#      healthy, and CREATE EXTENSION again works.  Also when the builder's lock wait times out after
#      the drop, when DROP EXTENSION runs while the builder waits for a lock on its requests table,
#      and when the extension is created again (ids starting again at 1) while the old build waits.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

# ---------------------------------------------------------------------------------------------
# (a) not preloaded
# ---------------------------------------------------------------------------------------------
my $plain = PostgreSQL::Test::Cluster->new('lifecycle_plain');
$plain->init;
$plain->start;
$plain->safe_psql('postgres', q{
CREATE EXTENSION perfkit VERSION '0.1.0';
ALTER EXTENSION perfkit UPDATE;
CREATE TABLE t (x int);
});
is( $plain->safe_psql('postgres',
		q{SELECT extversion = (SELECT default_version FROM pg_available_extensions WHERE name = 'perfkit')
		    FROM pg_extension WHERE extname = 'perfkit'}),
	't', 'not preloaded: CREATE EXTENSION of 0.1.0 and ALTER EXTENSION UPDATE work');

my @probes = map { "SELECT * FROM $_" } split /\n/, $plain->safe_psql('postgres', q{
	SELECT c.oid::regclass FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
	 WHERE d.classid = 'pg_class'::regclass AND d.deptype = 'e' AND c.relkind = 'v'
	   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'perfkit') ORDER BY 1});
cmp_ok(scalar @probes, '>=', 6, 'the extension has its views (' . scalar(@probes) . ')');
push @probes,
  'SELECT perfkit.report()',
  'SELECT perfkit.reset()',
  'SELECT perfkit.reset_slow_queries()',
  'SELECT perfkit.reset_n_plus_one()',
  q{SELECT perfkit.create_index_concurrently('CREATE INDEX t_x_idx ON t (x)')},
  q{SELECT perfkit.create_index_concurrently('t', ARRAY['x'])},
  'SELECT perfkit.cancel_index_build(1)',
  q{CALL perfkit.wait_for_index_builds('1 second')},
  q{SELECT perfkit.redis_key('SELECT 1')},
  q{SELECT * FROM perfkit.recommend_indexes('SELECT 1')},
  'SELECT * FROM perfkit.create_recommended_indexes(dry_run => true)',
  'SELECT perfkit.reset_index_advisor()',
  'SELECT * FROM perfkit.top_statements()',
  'SELECT * FROM perfkit.top_statements_histogram()';
for my $sql (@probes)
{
	my ($ret, $out, $err) = $plain->psql('postgres', $sql);
	if ($ret == 0)
	{
		pass("not preloaded: $sql works");
		next;
	}
	like($err,
		qr/\A(?:psql:\S+ )?ERROR:  perfkit must be loaded via "shared_preload_libraries"\nHINT:  .*shared_preload_libraries.*(?:\nCONTEXT:  [\s\S]*)?\n?\z/,
		"not preloaded: $sql fails with the preload error and hint");
}
is($plain->safe_psql('postgres', 'DROP EXTENSION perfkit; SELECT 1'), '1',
	'not preloaded: DROP EXTENSION works, the server is up');
unlike(slurp_file($plain->logfile), qr/PANIC|terminated by signal|server process .* was terminated/,
	'not preloaded: no crash in the server log');
$plain->stop;

# ---------------------------------------------------------------------------------------------
# (b) upgrade from 0.1.0
# ---------------------------------------------------------------------------------------------
my $node = PostgreSQL::Test::Cluster->new('lifecycle');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'perfkit'
# statements of other sessions are read right after they end (TAP 054 tests the interval)
perfkit.stats_flush_interval = 0
perfkit.track = all
perfkit.index_build_retry_delay = '200ms'
perfkit.index_build_lock_timeout = '3s'
max_worker_processes = 12
});
$node->start;

# default_version from the installed control file
my $sharedir = $node->config_data('--sharedir');
my ($default_version) = slurp_file("$sharedir/extension/perfkit.control") =~ /^default_version\s*=\s*'([^']+)'/m;
ok(defined $default_version, "perfkit.control has a default_version ($default_version)");
isnt($default_version, '0.1.0', 'the default version is newer than the released 0.1.0');

$node->safe_psql('postgres', 'CREATE DATABASE upgraded; CREATE DATABASE fresh;');
$node->safe_psql('upgraded', q{
CREATE EXTENSION perfkit VERSION '0.1.0';
CREATE TABLE items (id int PRIMARY KEY, a int, b text);
INSERT INTO items SELECT g, g % 10, 'b' || g FROM generate_series(1, 5000) g;
});
is($node->safe_psql('upgraded', q{SELECT extversion FROM pg_extension WHERE extname = 'perfkit'}),
	'0.1.0', 'installed as 0.1.0');

# use it: statements, a built index, a cancelled request, a failed one
$node->safe_psql('upgraded', q{
SELECT count(*) FROM items WHERE a = 3;
SELECT count(*) FROM items WHERE a = 4;
BEGIN;
SELECT perfkit.create_index_concurrently('CREATE INDEX items_a_idx ON items (a)');
COMMIT;
});
is($node->safe_psql('upgraded', q{CALL perfkit.wait_for_index_builds('3 minutes')}), 't',
	'0.1.0: the build finished');
$node->safe_psql('upgraded', q{
BEGIN;
SELECT perfkit.create_index_concurrently('CREATE UNIQUE INDEX items_a_key ON items (a)');
COMMIT;
});
$node->safe_psql('upgraded', q{CALL perfkit.wait_for_index_builds('3 minutes')});
my $rows_sql = q{SELECT id, kind, relid::regclass, index_name, definition, status, attempts, error,
	requested_by::regrole, requested_at, started_at, finished_at
	FROM perfkit.index_build_requests ORDER BY id};
my $rows_before = $node->safe_psql('upgraded', $rows_sql);
like($rows_before, qr/items_a_idx\|.*\|succeeded\|1\|/, '0.1.0: a succeeded request row');
like($rows_before, qr/items_a_key\|.*\|failed\|1\|/, '0.1.0: a failed request row');
my $stats_sql = q{SELECT query, calls FROM perfkit.statements
	WHERE query LIKE 'SELECT count(*) FROM items WHERE a = %' AND dbid = (SELECT oid FROM pg_database WHERE datname = 'upgraded')};
is($node->safe_psql('upgraded', $stats_sql), 'SELECT count(*) FROM items WHERE a = $1|2',
	'0.1.0: statements recorded');

$node->safe_psql('upgraded', 'ALTER EXTENSION perfkit UPDATE');
is($node->safe_psql('upgraded', q{SELECT extversion FROM pg_extension WHERE extname = 'perfkit'}),
	$default_version, "ALTER EXTENSION perfkit UPDATE: now $default_version");
is($node->safe_psql('upgraded', $rows_sql), $rows_before, 'the index build requests survived unchanged');
is($node->safe_psql('upgraded', $stats_sql), 'SELECT count(*) FROM items WHERE a = $1|2',
	'the statistics survived');

$node->safe_psql('fresh', 'CREATE EXTENSION perfkit');
is($node->safe_psql('fresh', q{SELECT extversion FROM pg_extension WHERE extname = 'perfkit'}),
	$default_version, "a fresh CREATE EXTENSION installs $default_version");

# Every member object, with what defines it: functions and procedures (full definition, owner, ACL,
# volatility, security, settings are in pg_get_functiondef), relations (kind, columns with types,
# defaults, not-null, view definition, indexes, constraints, owner, ACL), types, the schema (ACL),
# and the extension's own settings (configuration tables).
my $members_sql = q{
WITH ext AS (SELECT oid, extconfig, extcondition, extrelocatable, extnamespace::regnamespace AS nsp
               FROM pg_extension WHERE extname = 'perfkit'),
m AS (SELECT d.classid, d.objid, d.objsubid FROM pg_depend d, ext
       WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e')
SELECT pg_describe_object(m.classid, m.objid, m.objsubid) || E'\n' ||
  CASE m.classid
  WHEN 'pg_proc'::regclass THEN
    (SELECT CASE WHEN p.prokind IN ('f', 'p') THEN pg_get_functiondef(p.oid) ELSE p.prokind::text END
            || ' owner=' || p.proowner::regrole || ' acl=' || coalesce(p.proacl::text, 'default')
       FROM pg_proc p WHERE p.oid = m.objid)
  WHEN 'pg_class'::regclass THEN
    (SELECT 'kind=' || c.relkind::text || ' owner=' || c.relowner::regrole
            || ' acl=' || coalesce(c.relacl::text, 'default')
            || ' options=' || coalesce(c.reloptions::text, '')
            || coalesce(E'\nview: ' || pg_get_viewdef(c.oid), '')
            || coalesce(E'\ncolumns: ' || (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                     || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
                     || coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), '')
                     || coalesce(' identity ' || nullif(a.attidentity::text, ''), '')
                     || coalesce(' acl=' || a.attacl::text, ''), ', ' ORDER BY a.attnum)
                 FROM pg_attribute a LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
                WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '')
            || coalesce(E'\nindexes: ' || (SELECT string_agg(pg_get_indexdef(i.indexrelid), '; ' ORDER BY 1)
                 FROM pg_index i WHERE i.indrelid = c.oid), '')
            || coalesce(E'\nconstraints: ' || (SELECT string_agg(co.conname || ' ' || pg_get_constraintdef(co.oid), '; ' ORDER BY 1)
                 FROM pg_constraint co WHERE co.conrelid = c.oid), '')
            || coalesce(E'\ntriggers: ' || (SELECT string_agg(pg_get_triggerdef(tg.oid), '; ' ORDER BY 1)
                 FROM pg_trigger tg WHERE tg.tgrelid = c.oid), '')
       FROM pg_class c WHERE c.oid = m.objid)
  WHEN 'pg_type'::regclass THEN
    (SELECT 'type ' || t.typtype::text || ' owner=' || t.typowner::regrole || ' acl=' || coalesce(t.typacl::text, 'default')
       FROM pg_type t WHERE t.oid = m.objid)
  WHEN 'pg_namespace'::regclass THEN
    (SELECT 'owner=' || n.nspowner::regrole || ' acl=' || coalesce(n.nspacl::text, 'default')
       FROM pg_namespace n WHERE n.oid = m.objid)
  ELSE 'class ' || m.classid::regclass::text
  END AS member
FROM m
UNION ALL
SELECT 'extension: schema=' || nsp || ' relocatable=' || extrelocatable
       || ' config=' || coalesce((SELECT string_agg(x::regclass::text, ',') FROM unnest(extconfig) x), '')
       || ' conditions=' || coalesce(extcondition::text, '')
  FROM ext
ORDER BY 1};
my $members_upgraded = $node->safe_psql('upgraded', $members_sql);
my $members_fresh = $node->safe_psql('fresh', $members_sql);
my $n_members = () = $members_fresh =~ /^(?:function|procedure|view|table|sequence|type|schema|index) /mg;
cmp_ok($n_members, '>=', 20, "the fresh install has its member objects ($n_members)");
is($members_upgraded, $members_fresh,
	'0.1.0 + ALTER EXTENSION UPDATE: the same member objects, definitions and privileges as a fresh install');
# The same from the previous release, 0.2.0, whose upgrade script is the last one.
$node->safe_psql('postgres', 'CREATE DATABASE from020');
$node->safe_psql('from020', q{CREATE EXTENSION perfkit VERSION '0.2.0'});
is($node->safe_psql('from020', q{SELECT extversion FROM pg_extension WHERE extname = 'perfkit'}),
	'0.2.0', 'installed as 0.2.0');
$node->safe_psql('from020', 'ALTER EXTENSION perfkit UPDATE');
is($node->safe_psql('from020', q{SELECT extversion FROM pg_extension WHERE extname = 'perfkit'}),
	$default_version, "0.2.0 + ALTER EXTENSION perfkit UPDATE: now $default_version");
is($node->safe_psql('from020', $members_sql), $members_fresh,
	'0.2.0 + ALTER EXTENSION UPDATE: the same member objects, definitions and privileges as a fresh install');
is( $node->safe_psql('from020',
		q{SELECT count(*) > 0 FROM perfkit.top_statements(5); SELECT statements > 0 FROM perfkit.metrics}),
	"t\nt", '0.2.0 + ALTER EXTENSION UPDATE: perfkit.top_statements() and perfkit.metrics work');

# Objects of the schema that are not members (they would be left behind by DROP EXTENSION)
my $strays_sql = q{
SELECT count(*) FROM pg_class c
 WHERE c.relnamespace = 'perfkit'::regnamespace AND c.relkind NOT IN ('i', 't')
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                     AND d.deptype IN ('e', 'a', 'i'))};
is($node->safe_psql('upgraded', $strays_sql), '0', 'upgraded: every relation in schema perfkit belongs to the extension');

# and it still works
$node->safe_psql('upgraded',
	q{SELECT perfkit.create_index_concurrently('CREATE INDEX items_b_idx ON items (b)')});
is($node->safe_psql('upgraded', q{CALL perfkit.wait_for_index_builds('3 minutes')}), 't',
	'upgraded: a new build finished');
is( $node->safe_psql('upgraded',
		q{SELECT status || ' ' || (SELECT indisvalid FROM pg_index WHERE indexrelid = 'items_b_idx'::regclass)
		    FROM perfkit.index_builds WHERE index_name = 'items_b_idx'}),
	'succeeded true', 'upgraded: the new index is built and valid');
# (which statements rank in its top 10 depends on timings: DDL of this test can outrank items')
like($node->safe_psql('upgraded', 'SELECT perfkit.report()'),
	qr/statements tracked.*== Top 10 statements by total time ==.*== Index recommendations/s,
	'upgraded: report() works');

# ---------------------------------------------------------------------------------------------
# (b2) upgrade from 0.2.0
# ---------------------------------------------------------------------------------------------
$node->safe_psql('postgres', 'CREATE DATABASE upgraded02');
$node->safe_psql('upgraded02', q{
CREATE EXTENSION perfkit VERSION '0.2.0';
CREATE VIEW my_redis_health AS SELECT connected, errors, last_error FROM perfkit.redis_status;
});
my $status_cols_sql = q{SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute
	WHERE attrelid = 'perfkit.redis_status'::regclass AND attnum > 0};
my $cols_020 = 'connected,pushed,invalidated,skipped_unsafe,dropped_queue_full,dropped_stale,errors,'
  . 'last_error,queue_bytes,enabled,skipped_too_big';
is($node->safe_psql('upgraded02', $status_cols_sql), $cols_020, '0.2.0: redis_status has its 11 columns');
is($node->safe_psql('upgraded02', 'SELECT enabled, connected, errors FROM perfkit.redis_status'),
	'f|f|0', '0.2.0 objects with the new library: redis_status works');
$node->safe_psql('upgraded02', 'ALTER EXTENSION perfkit UPDATE');
is($node->safe_psql('upgraded02', q{SELECT extversion FROM pg_extension WHERE extname = 'perfkit'}),
	$default_version, "0.2.0 + ALTER EXTENSION perfkit UPDATE: now $default_version");
is($node->safe_psql('upgraded02', $status_cols_sql), "$cols_020,last_connected_at,last_error_at",
	'updated: redis_status keeps its columns in order and gains last_connected_at, last_error_at');
is( $node->safe_psql('upgraded02',
		'SELECT last_connected_at IS NULL, last_error_at IS NULL FROM perfkit.redis_status'),
	't|t', 'updated: the new columns work (never connected: NULL)');
is($node->safe_psql('upgraded02', 'SELECT connected, errors FROM my_redis_health'), 'f|0',
	'updated: a view of the user over redis_status survived the update');
$node->safe_psql('upgraded02', 'DROP VIEW my_redis_health');
is($node->safe_psql('upgraded02', $members_sql), $members_fresh,
	'0.2.0 + ALTER EXTENSION UPDATE: the same member objects, definitions and privileges as a fresh install');
is($node->safe_psql('upgraded02', $strays_sql), '0', 'upgraded from 0.2.0: every relation in schema perfkit belongs to the extension');

# ---------------------------------------------------------------------------------------------
# (c) DROP EXTENSION while builds are pending
# ---------------------------------------------------------------------------------------------
$node->safe_psql('postgres', q{
CREATE EXTENSION perfkit;
CREATE TABLE orders (id int PRIMARY KEY, customer int, total numeric);
INSERT INTO orders SELECT g, g % 100, g FROM generate_series(1, 20000) g;
});

# Does an index exist and is it valid ('' when it does not exist)?
sub index_valid
{
	my ($name) = @_;
	return $node->safe_psql('postgres',
		"SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('$name')");
}

# Number of perfkit builders connected to postgres.
my $builders_sql = q{SELECT count(*) FROM pg_stat_activity
	WHERE backend_type = 'perfkit index builder' AND datname = 'postgres'};

# ERROR/FATAL/PANIC lines and crashes in the server log since offset.
sub log_problems
{
	my ($offset) = @_;
	my $log = slurp_file($node->logfile, $offset);
	return join('', grep { /\b(ERROR|FATAL|PANIC):|terminated by signal|was terminated/ } split /^/, $log);
}

# Hold SHARE on orders (the builder needs SHARE UPDATE EXCLUSIVE; the requests take ACCESS SHARE),
# request two builds, wait until the builder waits for the lock.
sub hold_and_request
{
	my ($first, $second) = @_;
	my $holder = $node->background_psql('postgres');
	$holder->query_safe('BEGIN');
	$holder->query_safe('LOCK TABLE orders IN SHARE MODE');
	$node->safe_psql('postgres', qq{
SELECT perfkit.create_index_concurrently('CREATE INDEX $first ON orders (customer)');
SELECT perfkit.create_index_concurrently('CREATE INDEX $second ON orders (total)');
});
	ok( $node->poll_query_until('postgres', q{SELECT count(*) FROM pg_stat_activity
			WHERE backend_type = 'perfkit index builder' AND wait_event_type = 'Lock'}, '1'),
		"the builder waits for the lock on the table ($first running, $second pending)");
	return $holder;
}

# c1: the lock is released after the drop: the claimed build completes, the pending one never runs.
my $holder = hold_and_request('orders_c1_idx', 'orders_c1_pending_idx');
my $offset = -s $node->logfile;
$node->safe_psql('postgres', 'DROP EXTENSION perfkit');
pass('DROP EXTENSION returned while the builder waited for its lock');
usleep(500_000);
$holder->query_safe('COMMIT');
$holder->quit;
ok($node->poll_query_until('postgres', $builders_sql, '0'), 'c1: the builder exited');
sleep(3);    # time for errors or a second builder to show up
is($node->safe_psql('postgres', $builders_sql), '0', 'c1: no builder lingers for the database');
is(index_valid('orders_c1_idx'), 't', 'c1: the build that was claimed completed (it is the user\'s index)');
is(index_valid('orders_c1_pending_idx'), '', 'c1: the pending build was never run');
is(log_problems($offset), '', 'c1: no ERROR/FATAL in the server log');
is($node->safe_psql('postgres', 'SELECT count(*) FROM pg_index WHERE NOT indisvalid'), '0',
	'c1: no INVALID index left');

# c2: the builder's lock wait times out (perfkit.index_build_lock_timeout = 3s) after the drop.
$node->safe_psql('postgres', 'CREATE EXTENSION perfkit');
$holder = hold_and_request('orders_c2_idx', 'orders_c2_pending_idx');
$offset = -s $node->logfile;
$node->safe_psql('postgres', 'DROP EXTENSION perfkit');
ok($node->poll_query_until('postgres', $builders_sql, '0'), 'c2: the builder exited (lock timeout)');
$holder->query_safe('COMMIT');
$holder->quit;
sleep(3);
is($node->safe_psql('postgres', $builders_sql), '0', 'c2: no builder lingers for the database');
is(index_valid('orders_c2_idx'), '', 'c2: the timed-out build left no index');
is(index_valid('orders_c2_pending_idx'), '', 'c2: the pending build was never run');
my $problems = log_problems($offset);
my @problem_lines = split /\n/, $problems;
# (one per build that waited: normally one; two if a slow machine let the lock time out before the
# drop, so that the builder moved on to the second request)
ok(@problem_lines <= 2 && !(grep { !/ERROR:  canceling statement due to lock timeout/ } @problem_lines),
	'c2: nothing in the server log but the lock timeout of the build that waited')
  or diag($problems);

# c3: DROP EXTENSION commits while the builder waits for the lock on its requests table.
$node->safe_psql('postgres', 'CREATE EXTENSION perfkit');
my $dropper = $node->background_psql('postgres');
$holder = hold_and_request('orders_c3_idx', 'orders_c3_pending_idx');
$offset = -s $node->logfile;
$dropper->query_safe('BEGIN');
$dropper->query_safe('DROP EXTENSION perfkit');
$holder->query_safe('COMMIT');
$holder->quit;
# the build completes, then recording its end waits for the dropping transaction
ok( $node->poll_query_until('postgres', q{SELECT count(*) FROM pg_stat_activity
		WHERE backend_type = 'perfkit index builder' AND wait_event_type = 'Lock'
		  AND query = 'perfkit: recording an index build'}, '1'),
	'c3: the builder waits for the dropping transaction');
$dropper->query_safe('COMMIT');
$dropper->quit;
ok($node->poll_query_until('postgres', $builders_sql, '0'), 'c3: the builder exited');
sleep(2);
is($node->safe_psql('postgres', $builders_sql), '0', 'c3: no builder lingers for the database');
is(index_valid('orders_c3_idx'), 't', 'c3: the claimed build completed');
is(index_valid('orders_c3_pending_idx'), '', 'c3: the pending build was never run');
is(log_problems($offset), '', 'c3: no ERROR/FATAL in the server log');

# c4: DROP and CREATE EXTENSION again while the builder still waits with a build of the dropped
# table: the new table's ids start again at 1, the id of that old build.  The new requests wait for
# the old build, cancelling new request 1 does not touch the old build 1, and then the new request 2
# is built by the same builder; the old pending request is never run.
$node->safe_psql('postgres', 'CREATE EXTENSION perfkit');
$holder = hold_and_request('orders_c4_idx', 'orders_c4_pending_idx');
is( $node->safe_psql('postgres',
		q{SELECT string_agg(id || ' ' || index_name || ' ' || status, ', ' ORDER BY id) FROM perfkit.index_builds}),
	'1 orders_c4_idx running, 2 orders_c4_pending_idx pending', 'c4: old build 1 running');
$offset = -s $node->logfile;
$node->safe_psql('postgres', q{
DROP EXTENSION perfkit;
CREATE EXTENSION perfkit;
SELECT perfkit.create_index_concurrently('CREATE INDEX orders_c4_new1_idx ON orders (customer, id)');
SELECT perfkit.create_index_concurrently('CREATE INDEX orders_c4_new2_idx ON orders (total, id)');
});
is($node->safe_psql('postgres', 'SELECT perfkit.cancel_index_build(1)'), 't', 'c4: new request 1 cancelled');
usleep(300_000);
is( $node->safe_psql('postgres',
		q{SELECT string_agg(id || ' ' || status || ' ' || coalesce(phase, '-'), ', ' ORDER BY id) FROM perfkit.index_builds}),
	'1 cancelled -, 2 pending -', 'c4: the new table shows only its own requests, none running');
is( $node->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity
		WHERE backend_type = 'perfkit index builder' AND wait_event_type = 'Lock'}),
	'1', 'c4: the old build still waits (the cancel of new id 1 did not reach it)');
$holder->query_safe('COMMIT');
$holder->quit;
is($node->safe_psql('postgres', q{CALL perfkit.wait_for_index_builds('3 minutes')}), 't',
	'c4: the new requests finished');
ok($node->poll_query_until('postgres', $builders_sql, '0'), 'c4: the builder exited');
is(index_valid('orders_c4_idx'), 't', 'c4: the old claimed build completed');
is(index_valid('orders_c4_pending_idx'), '', 'c4: the old pending build was never run');
is(index_valid('orders_c4_new1_idx'), '', 'c4: the cancelled new request was not built');
is( $node->safe_psql('postgres',
		q{SELECT status || ' ' || attempts || ' ' || coalesce(error, '-') FROM perfkit.index_builds WHERE id = 2}),
	'succeeded 1 -', 'c4: the new request 2 succeeded at its first attempt');
is(index_valid('orders_c4_new2_idx'), 't', 'c4: its index is valid');
is(log_problems($offset), '', 'c4: no ERROR/FATAL in the server log');
$node->safe_psql('postgres', 'DROP EXTENSION perfkit');

# Healthy, and perfkit can be installed again and builds.
$offset = -s $node->logfile;
$node->safe_psql('postgres', q{
CREATE EXTENSION perfkit;
SELECT perfkit.create_index_concurrently('CREATE INDEX orders_again_idx ON orders (customer, total)');
});
is($node->safe_psql('postgres', q{CALL perfkit.wait_for_index_builds('3 minutes')}), 't',
	'CREATE EXTENSION again: builds work');
is(index_valid('orders_again_idx'), 't', 'the new index is valid');
is( $node->safe_psql('postgres', q{SELECT count(*) FROM perfkit.index_builds}), '1',
	'the new requests table starts empty (nothing of the dropped one came back)');
is(log_problems($offset), '', 'no ERROR/FATAL in the server log');
ok($node->safe_psql('postgres', 'SELECT count(*) FROM perfkit.statements') > 0, 'statistics still recorded');
is($node->safe_psql('postgres', 'SELECT 1'), '1', 'server healthy');

$node->stop;
done_testing();
