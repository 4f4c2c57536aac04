# Privileges, as ordinary (non-superuser) roles:
#   - query texts, bind parameters, plans and sample values of other roles (perfkit.statements,
#     slow_queries, n_plus_one, report() and the functions behind them) are hidden without
#     pg_read_all_stats and shown with it;
#   - the reset functions need an explicit GRANT EXECUTE;
#   - indexes can be requested (built, dropped) only on tables the role owns, directly or as a
#     member of the owning role; builds of other roles cannot be cancelled;
#   - perfkit.index_builds hides other roles' definitions and error texts; the requests table
#     itself is not readable;
#   - every SECURITY DEFINER function of the extension pins search_path;
#   - a hostile role that planted functions, operators and catalog-named views in schema public
#     before CREATE EXTENSION gets none of them called, by the extension script or by perfkit's
#     functions, views and background builder, whatever the callers' search_path (public first,
#     pg_catalog after it), and nothing of perfkit depends on an object in public.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('privileges_nonsuperuser');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'perfkit'
# statements of other sessions are read right after they end (TAP 054 tests the interval)
perfkit.stats_flush_interval = 0
perfkit.track = all
perfkit.slow_threshold = 50
perfkit.nplusone_min_repeats = 5
perfkit.index_build_retry_delay = '100ms'
});
$node->start;

# Run SQL as a role (via SET ROLE in a superuser session would keep superuser's session
# privileges for some checks, so connect as the role itself); returns (stdout, stderr).
sub as_role
{
	my ($role, $sql) = @_;
	my ($stdout, $stderr);
	$node->psql('postgres', $sql, stdout => \$stdout, stderr => \$stderr,
		extra_params => [ '-U', $role ], on_error_stop => 0);
	return ($stdout, $stderr);
}

# Run SQL as a role and fail the test on any error; returns stdout.
sub as_role_ok
{
	my ($role, $sql, $name) = @_;
	my ($stdout, $stderr) = as_role($role, $sql);
	is($stderr, '', "$name: no error") if defined $name;
	return $stdout;
}

# --- A hostile role plants objects in schema public before perfkit is installed.
$node->safe_psql('postgres', q{
CREATE ROLE hostile LOGIN;
GRANT CREATE ON SCHEMA public TO hostile;
});
as_role_ok('hostile', q{
CREATE SEQUENCE public.hostile_hits;
GRANT ALL ON SEQUENCE public.hostile_hits TO PUBLIC;
CREATE FUNCTION public.hostile_hit(what text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_catalog.nextval('public.hostile_hits');
    RAISE WARNING 'hostile object called: %', what;
    RETURN true;
END $$;
DO $$
DECLARE
    f record;
BEGIN
    FOR f IN SELECT * FROM (VALUES
        ('now', '', 'timestamptz'), ('format', 'text', 'text'), ('lower', 'text', 'text'),
        ('lower', 'character varying', 'text'), ('upper', 'text', 'text'),
        ('regexp_replace', 'text, text, text', 'text'),
        ('regexp_replace', 'text, text, text, text', 'text'), ('pg_get_userbyid', 'oid', 'name'),
        ('pg_has_role', 'oid, text', 'boolean'), ('pg_has_role', 'name, text', 'boolean'),
        ('pg_has_role', 'text, text', 'boolean'), ('current_database', '', 'name'),
        ('current_setting', 'text', 'text'), ('to_char', 'timestamp with time zone, text', 'text'),
        ('round', 'numeric, integer', 'numeric'), ('round', 'double precision', 'double precision'),
        ('left', 'text, integer', 'text'), ('substr', 'text, integer, integer', 'text'),
        ('length', 'text', 'integer'), ('array_length', 'anyarray, integer', 'integer'),
        ('quote_ident', 'text', 'text'), ('set_config', 'text, text, boolean', 'text'),
        ('pg_backend_pid', '', 'integer'), ('texteq', 'text, text', 'boolean'),
        ('oideq', 'oid, oid', 'boolean'), ('int8eq', 'bigint, bigint', 'boolean'),
        ('coalesce', 'timestamp with time zone, timestamp with time zone', 'timestamp with time zone'),
        ('textcat', 'text, text', 'text'), ('pg_get_indexdef', 'oid', 'text'))
      AS v(name, args, ret)
    LOOP
        EXECUTE pg_catalog.format(
            'CREATE FUNCTION public.%I(%s) RETURNS %s LANGUAGE plpgsql AS $f$ BEGIN PERFORM public.hostile_hit(%L); RETURN NULL; END $f$',
            f.name, f.args, f.ret, f.name || '(' || f.args || ')');
    END LOOP;
    FOR f IN SELECT * FROM (VALUES
        ('=', 'oid', 'oid'), ('=', 'text', 'text'), ('=', 'bigint', 'bigint'),
        ('=', 'integer', 'integer'), ('=', 'name', 'name'), ('<>', 'text', 'text'),
        ('~', 'text', 'text'), ('||', 'text', 'text'), ('<=', 'timestamp with time zone', 'timestamp with time zone'),
        ('+', 'integer', 'integer'), ('<', 'integer', 'integer'), ('>', 'bigint', 'bigint'))
      AS v(op, l, r)
    LOOP
        EXECUTE pg_catalog.format(
            'CREATE FUNCTION public.%I(%s, %s) RETURNS boolean LANGUAGE plpgsql AS $f$ BEGIN PERFORM public.hostile_hit(%L); RETURN NULL; END $f$',
            'hostile_op_' || pg_catalog.md5(f.op || f.l || f.r), f.l, f.r, f.op || '(' || f.l || ', ' || f.r || ')');
        EXECUTE pg_catalog.format('CREATE OPERATOR public.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = public.%I)',
            f.op, f.l, f.r, 'hostile_op_' || pg_catalog.md5(f.op || f.l || f.r));
    END LOOP;
    FOR f IN SELECT * FROM (VALUES ('pg_class'), ('pg_roles'), ('pg_database'), ('pg_namespace'),
                                    ('pg_stat_progress_create_index'), ('pg_index'), ('pg_stat_activity'),
                                    ('index_build_requests'), ('statements'), ('slow_queries'),
                                    ('n_plus_one'), ('info'), ('index_builds'), ('redis_status'))
      AS v(name)
    LOOP
        EXECUTE pg_catalog.format('CREATE VIEW public.%I AS SELECT * FROM pg_catalog.pg_class WHERE public.hostile_hit(%L)',
            f.name, 'view ' || f.name);
    END LOOP;
END $$;
});
is( $node->safe_psql('postgres',
		q{SELECT count(*) FROM pg_proc WHERE pronamespace = 'public'::regnamespace}) > 40 ? 'many' : 'few',
	'many', 'hostile functions and operator functions are in place');

# The superuser installs perfkit with public first on its own search_path.
my ($out, $err) = ('', '');
$node->psql('postgres', q{SET search_path = public, pg_catalog; CREATE EXTENSION perfkit;},
	stdout => \$out, stderr => \$err);
is($err, '', 'CREATE EXTENSION with the hostile objects in place: no error, no warning');
is($node->safe_psql('postgres', q{SELECT last_value FROM public.hostile_hits WHERE is_called}),
	'', 'the extension script called none of the hostile objects');

# Nothing of the extension depends on anything in schema public (views are bound at creation).
is( $node->safe_psql('postgres', q{
	WITH members AS (
	    SELECT classid, objid FROM pg_depend
	     WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
	       AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'perfkit')
	    UNION
	    SELECT 'pg_rewrite'::regclass, r.oid FROM pg_rewrite r
	      JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = r.ev_class AND d.deptype = 'e'
	     WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'perfkit'))
	SELECT count(*) FROM pg_depend d JOIN members m ON m.classid = d.classid AND m.objid = d.objid
	 WHERE (d.refclassid = 'pg_proc'::regclass
	        AND (SELECT pronamespace FROM pg_proc WHERE oid = d.refobjid) = 'public'::regnamespace)
	    OR (d.refclassid = 'pg_operator'::regclass
	        AND (SELECT oprnamespace FROM pg_operator WHERE oid = d.refobjid) = 'public'::regnamespace)
	    OR (d.refclassid = 'pg_class'::regclass
	        AND (SELECT relnamespace FROM pg_class WHERE oid = d.refobjid) = 'public'::regnamespace)}),
	'0', 'no extension object depends on a function, operator or relation in public');

# --- Roles.
$node->safe_psql('postgres', q{
CREATE ROLE alice LOGIN;
CREATE ROLE bob LOGIN;
CREATE ROLE carol LOGIN IN ROLE alice;
CREATE ROLE dave LOGIN IN ROLE pg_read_all_stats;
CREATE ROLE eve LOGIN;
GRANT CREATE ON SCHEMA public TO alice, bob;
});

# Every SECURITY DEFINER function of the extension pins search_path to pg_catalog, pg_temp.
is( $node->safe_psql('postgres', q{
	SELECT count(*) FILTER (WHERE p.prosecdef) >= 1,
	       count(*) FILTER (WHERE p.prosecdef AND NOT coalesce(
	           'search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false))
	  FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
	 WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
	   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'perfkit')}),
	't|0', 'every SECURITY DEFINER function (there is at least one) pins search_path to pg_catalog, pg_temp');

# --- alice's statements, slow queries (with parameters and a plan) and an N+1 loop.
as_role_ok('alice', q{
CREATE TABLE a_items (id int PRIMARY KEY, note text);
INSERT INTO a_items SELECT g, 'note ' || g FROM generate_series(1, 50) g;
INSERT INTO a_items VALUES (100, 'dup'), (101, 'dup');
SELECT id AS alice_marker FROM a_items WHERE id < 3 ORDER BY id;
PREPARE alice_slow(text) AS SELECT pg_sleep(0.06), $1 AS alice_slow_marker FROM a_items WHERE id = 1;
EXECUTE alice_slow('alice-secret-param');
BEGIN;
SELECT id FROM a_items WHERE id BETWEEN 11 AND 16 ORDER BY id;
SELECT note AS alice_nplus FROM a_items WHERE id = 11;
SELECT note AS alice_nplus FROM a_items WHERE id = 12;
SELECT note AS alice_nplus FROM a_items WHERE id = 13;
SELECT note AS alice_nplus FROM a_items WHERE id = 14;
SELECT note AS alice_nplus FROM a_items WHERE id = 15;
SELECT note AS alice_nplus FROM a_items WHERE id = 16;
COMMIT;
}, 'alice runs her workload');

# What a role sees of alice's entries: counts of rows and of visible texts.
my %seen_sql = (
	statements => q{SELECT count(*) || '/' || count(query) FROM perfkit.statements WHERE rolname = 'alice'},
	statements_fn => q{SELECT count(*) || '/' || count(query) FROM perfkit._statements()
	                    WHERE userid = 'alice'::regrole},
	slow => q{SELECT count(*) || '/' || count(query) || '/' || count(params) || '/' || count(plan)
	           FROM perfkit.slow_queries WHERE rolname = 'alice'},
	slow_fn => q{SELECT count(*) || '/' || count(query) || '/' || count(params) || '/' || count(plan)
	              || '/' || bool_or(visible) FROM perfkit._slow_queries() WHERE userid = 'alice'::regrole},
	nplus => q{SELECT count(*) || '/' || count(query) || '/' || count(parent_query) || '/' || count(sample_params)
	            || '/' || bool_or(suggestion LIKE '%alice_nplus%') FROM perfkit.n_plus_one WHERE rolname = 'alice'},
	nplus_fn => q{SELECT count(*) || '/' || count(sample_params) FROM perfkit._n_plus_one()
	               WHERE userid = 'alice'::regrole},
	report => q{SELECT perfkit.report(50, 50) ~ '(alice_marker|alice_slow_marker|alice-secret|alice_nplus)'},
);

# The numbers alice herself sees are the reference.
my %alice;
$alice{$_} = as_role_ok('alice', $seen_sql{$_}) for keys %seen_sql;
like($alice{statements}, qr{^(\d+)/\1$}, "alice sees all her statement texts ($alice{statements})");
like($alice{slow}, qr{^([1-9]\d*)/\1/[1-9]\d*/\1$}, "alice sees her slow queries with parameters and plans ($alice{slow})");
is($alice{nplus}, '1/1/1/1/true', "alice sees her N+1 pattern, its texts, sample and fix ($alice{nplus})");
is($alice{report}, 't', "alice's report shows her texts");
like( as_role_ok('alice', q{SELECT params FROM perfkit.slow_queries WHERE rolname = 'alice' AND params IS NOT NULL}),
	qr/alice-secret-param/, 'the slow query kept the bind parameter');

for my $viewer ('bob', 'eve')
{
	my %v;
	$v{$_} = as_role_ok($viewer, $seen_sql{$_}) for keys %seen_sql;
	like($v{statements}, qr{^[1-9]\d*/0$}, "$viewer: alice's statements listed, no text");
	like($v{statements_fn}, qr{^[1-9]\d*/0$}, "$viewer: _statements() hides alice's texts too");
	like($v{slow}, qr{^[1-9]\d*/0/0/0$}, "$viewer: alice's slow queries listed, no text, parameters or plan");
	like($v{slow_fn}, qr{^[1-9]\d*/0/0/0/false$}, "$viewer: _slow_queries() hides them too");
	is($v{nplus}, '1/0/0/0/false', "$viewer: alice's N+1 pattern listed, no texts, sample or text in the fix");
	is($v{nplus_fn}, '1/0', "$viewer: _n_plus_one() hides the sample too");
	is($v{report}, 'f', "$viewer: report() shows none of alice's texts or values");
}

my %dave;
$dave{$_} = as_role_ok('dave', $seen_sql{$_}) for keys %seen_sql;
like($dave{statements}, qr{^([1-9]\d*)/\1$}, 'dave (pg_read_all_stats) sees alice\'s statement texts');
like($dave{slow}, qr{^([1-9]\d*)/\1/[1-9]\d*/\1$}, 'dave sees her slow queries with parameters and plans');
is($dave{nplus}, $alice{nplus}, 'dave sees her N+1 pattern with texts, sample and fix');
is($dave{report}, 't', 'dave\'s report shows her texts');

# --- Reset functions need GRANT EXECUTE.
for my $fn ('reset()', 'reset_slow_queries()', 'reset_n_plus_one()')
{
	for my $role ('bob', 'dave', 'alice')
	{
		my (undef, $e) = as_role($role, "SELECT perfkit.$fn");
		like($e, qr/ERROR:  permission denied for function reset/, "$role cannot call perfkit.$fn");
	}
}
$node->safe_psql('postgres', q{
GRANT EXECUTE ON FUNCTION perfkit.reset(), perfkit.reset_slow_queries(), perfkit.reset_n_plus_one() TO eve;
});
as_role_ok('eve', q{SELECT perfkit.reset(), perfkit.reset_slow_queries(), perfkit.reset_n_plus_one();},
	'eve, granted EXECUTE, resets everything');
is( $node->safe_psql('postgres', q{
	SELECT (SELECT count(*) FROM perfkit.statements WHERE rolname = 'alice')
	     + (SELECT count(*) FROM perfkit.slow_queries) + (SELECT count(*) FROM perfkit.n_plus_one)}),
	'0', 'the resets took effect');

# --- Index builds: only on tables the role owns (or as a member of the owner).
as_role_ok('bob', q{CREATE TABLE b_items (id int, v int); INSERT INTO b_items SELECT g, g FROM generate_series(1, 20) g;});
for my $call (
	q{SELECT perfkit.create_index_concurrently('CREATE INDEX bob_on_alice ON a_items (note)')},
	q{SELECT perfkit.create_index_concurrently('a_items', ARRAY['note'])},
	q{SELECT perfkit.create_index_concurrently('CREATE INDEX bob_on_alice ON public.a_items (note)')},
	q{SELECT perfkit.drop_index_concurrently('a_items_pkey')})
{
	my (undef, $e) = as_role('bob', $call);
	like($e, qr/ERROR:  must be owner of table "a_items"/, "bob refused: $call");
}
# ... and refused before any lock is taken: no queueing behind a lock on someone else's table.
my $locker = $node->background_psql('postgres');
$locker->query_safe('BEGIN; LOCK a_items IN ACCESS EXCLUSIVE MODE');
for my $call (
	q{SELECT perfkit.create_index_concurrently('CREATE INDEX bob_on_alice ON a_items (note)')},
	q{SELECT perfkit.create_index_concurrently('a_items', ARRAY['note'])},
	q{SELECT perfkit.drop_index_concurrently('a_items_pkey')})
{
	my (undef, $e) = as_role('bob', "SET lock_timeout = '3s'; $call");
	like($e, qr/ERROR:  must be owner of table "a_items"/, "bob refused at once while the table is locked: $call");
}
$locker->query_safe('COMMIT');
$locker->quit;
my (undef, $e) = as_role('dave', q{SELECT perfkit.create_index_concurrently('a_items', ARRAY['note'])});
like($e, qr/ERROR:  must be owner of table "a_items"/, 'pg_read_all_stats gives no right to build');

as_role_ok('bob', q{SELECT perfkit.create_index_concurrently('CREATE INDEX b_items_v_idx ON b_items (v)')},
	'bob requests an index on his own table');
as_role_ok('carol', q{SELECT perfkit.create_index_concurrently('a_items', ARRAY['note'], name => 'a_items_note_by_carol')},
	'carol, a member of alice, requests an index on alice\'s table');
# alice's build that fails: its error text holds table data (the duplicated key)
as_role_ok('alice', q{SELECT perfkit.create_index_concurrently(
	$$CREATE UNIQUE INDEX a_items_note_uq ON a_items (note) WHERE note <> 'alice-secret-pred'$$)},
	'alice requests a unique index that cannot be built');
is($node->safe_psql('postgres', q{CALL perfkit.wait_for_index_builds('3 minutes')}), 't', 'the builds finished');
is( $node->safe_psql('postgres', q{
	SELECT string_agg(index_name || ':' || status || ':' || requested_by, ', ' ORDER BY id) FROM perfkit.index_builds}),
	'b_items_v_idx:succeeded:bob, a_items_note_by_carol:succeeded:carol, a_items_note_uq:failed:alice',
	'bob\'s and carol\'s builds succeeded, alice\'s failed');
is( $node->safe_psql('postgres', q{
	SELECT string_agg(c.relname || ':' || pg_get_userbyid(c.relowner), ', ' ORDER BY c.relname)
	  FROM pg_class c WHERE c.relname IN ('b_items_v_idx', 'a_items_note_by_carol', 'a_items_note_uq')}),
	'a_items_note_by_carol:alice, b_items_v_idx:bob', 'the indexes exist, owned by the tables\' owners');

my $uq_id = $node->safe_psql('postgres', q{SELECT id FROM perfkit.index_builds WHERE index_name = 'a_items_note_uq'});
(undef, $e) = as_role('bob', "SELECT perfkit.cancel_index_build($uq_id)");
like($e, qr/ERROR:  permission denied to cancel index build $uq_id/, 'bob cannot cancel alice\'s build');
(undef, $e) = as_role('bob', q{SELECT perfkit.drop_index_concurrently('a_items_note_by_carol')});
like($e, qr/ERROR:  must be owner of table "a_items"/, 'bob cannot drop an index of alice\'s table');
as_role_ok('carol', q{SELECT perfkit.drop_index_concurrently('a_items_note_by_carol')},
	'carol drops the index on alice\'s table');
is($node->safe_psql('postgres', q{CALL perfkit.wait_for_index_builds('3 minutes')}), 't', 'the drop finished');
is($node->safe_psql('postgres', q{SELECT to_regclass('a_items_note_by_carol') IS NULL}), 't', 'the index is gone');

# --- perfkit.index_builds: other roles' definitions and errors are hidden.
my $builds = q{SELECT index_name || ':' || coalesce(definition, '<hidden>') || ':' || coalesce(error, '<none or hidden>')
                 FROM perfkit.index_builds WHERE index_name = 'a_items_note_uq'};
for my $viewer ('bob', 'eve')
{
	is(as_role_ok($viewer, $builds), 'a_items_note_uq:<hidden>:<none or hidden>',
		"$viewer sees alice's failed build, not its definition or error");
}
for my $viewer ('alice', 'carol', 'dave')
{
	like(as_role_ok($viewer, $builds), qr/^a_items_note_uq:CREATE UNIQUE INDEX .*alice-secret-pred.*:.*could not create unique index/s,
		"$viewer sees alice's definition and error");
}
(undef, $e) = as_role('bob', q{SELECT * FROM perfkit.index_build_requests});
like($e, qr/ERROR:  permission denied for table index_build_requests/, 'the requests table is not readable');

# --- Everything again with public first on the callers' search_path: no hostile object called.
# (the test's own queries below qualify every function and operator: public is first now)
as_role_ok('alice', q{CREATE INDEX a_items_plain ON a_items (note, id)}, 'alice creates an index directly');
$node->safe_psql('postgres', q{ALTER ROLE ALL SET search_path = public, pg_catalog});
my $hits_sql = q{SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM public.hostile_hits};
is($node->safe_psql('postgres', $hits_sql), '0', 'no hostile object was called so far');
my $everything = q{
SELECT * FROM perfkit.statements;
SELECT * FROM perfkit.info;
SELECT * FROM perfkit.slow_queries;
SELECT * FROM perfkit.n_plus_one;
SELECT * FROM perfkit.index_builds;
SELECT * FROM perfkit.redis_status;
SELECT perfkit.report();
SELECT perfkit.report(1000, 1000);
SELECT perfkit.redis_key('SELECT 1', ARRAY['x']);
SELECT perfkit._latency_bins(0, 0, 0, true);
SELECT * FROM perfkit._index_build_progress();
SELECT perfkit._nplusone_quiet();
};
for my $role ('bob', 'dave', 'postgres')
{
	my ($o, $w) = as_role($role, $everything);
	unlike($w, qr/hostile|ERROR/, "$role, search_path public first: views and functions call no hostile object");
}
my ($o, $w) = as_role('eve', q{SELECT perfkit.reset(), perfkit.reset_slow_queries(), perfkit.reset_n_plus_one();});
unlike($w, qr/hostile|ERROR/, 'the resets call no hostile object');
($o, $w) = as_role('alice', q{
BEGIN;
SELECT perfkit.create_index_concurrently('CREATE INDEX a_items_id_note ON a_items (id, note)');
SELECT perfkit.create_index_concurrently('a_items', ARRAY['note', 'id'], name => 'a_items_note_id',
                                         predicate => 'true', include => NULL);
SELECT perfkit.drop_index_concurrently('a_items_plain') AS drop_id \gset
SELECT perfkit.cancel_index_build(:drop_id);
COMMIT;
CALL perfkit.wait_for_index_builds('3 minutes');
});
unlike($w, qr/hostile|ERROR/, 'alice requests, drops, cancels and waits: no hostile object called');
is( $node->safe_psql('postgres', q{
	SET search_path = pg_catalog;
	SELECT string_agg(index_name || ':' || kind || ':' || status, ', ' ORDER BY id) FROM perfkit.index_builds
	 WHERE index_name IN ('a_items_id_note', 'a_items_note_id', 'a_items_plain')}),
	'a_items_id_note:create:succeeded, a_items_note_id:create:succeeded, a_items_plain:drop:cancelled',
	'the background builder built them under alice\'s search_path');
is($node->safe_psql('postgres', $hits_sql), '0', 'no hostile function, operator or view was ever called');
unlike(slurp_file($node->logfile), qr/WARNING:  hostile object called/, 'the server log shows no hostile call (builder included)');

# Control: the trap works (an unqualified call with public first does reach the hostile function).
($o, $w) = as_role('bob', q{SELECT now()});
like($w, qr/WARNING:  hostile object called: now\(\)/, 'control: an unqualified now() of the caller is trapped');
is($node->safe_psql('postgres', $hits_sql), '1', 'control: the trap counted it');

$node->stop;
done_testing();
