# Redis result push against a real redis-server: a hot statement's result is readable with a plain
# GET under the documented key (computed here independently with Digest::SHA and compared with
# perfkit.redis_key()), holds exactly the rows the query returns, is deleted by UPDATE, TRUNCATE and
# COPY (also through a view and a partitioned table) with a PUBLISH, and statements that must never
# be pushed are not.  Every wait polls with a deadline.
use strict;
use warnings;

use Digest::SHA;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

use FindBin;
use lib "$FindBin::RealBin/../perl";
use PerfkitRedis;    # redis-server child, redis_cli, poll_until, key_of, $redis_port, $role


redis_start();
my $node = PostgreSQL::Test::Cluster->new('redis_push');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'perfkit'
# statements of other sessions are read right after they end (TAP 054 tests the interval)
perfkit.stats_flush_interval = 0
perfkit.redis_url = 'redis://127.0.0.1:$redis_port/0'
perfkit.redis_hot_calls = 3
perfkit.redis_min_push_interval = 0
perfkit.redis_ttl = 300
});
$node->start;
$role = $node->safe_psql('postgres', 'SELECT current_user');

sub status
{
	return $node->safe_psql('postgres', "SELECT $_[0] FROM perfkit.redis_status");
}

# Wait until the pusher has handled everything queued so far.
sub drain
{
	ok(poll_until(sub { status('queue_bytes') eq '0' }), "queue drained ($_[0])");
}

$node->safe_psql('postgres', q{
CREATE EXTENSION perfkit;
CREATE TABLE items (id int PRIMARY KEY, name text, price numeric, big bigint, at timestamptz,
                    ok boolean, f float8, j jsonb, n text);
INSERT INTO items SELECT g, 'item "' || g || '"\\', g * 1.25, g * 10000000000 + 1,
       '2024-05-01 12:00:00.5+02'::timestamptz + g * interval '1 day', g % 2 = 0, g / 3.0,
       jsonb_build_object('g', g, 'tags', jsonb_build_array('a', g)), NULL
  FROM generate_series(1, 5) g;
CREATE VIEW cheap AS SELECT id, name FROM items WHERE price < 5;
CREATE TABLE parted (k int, v text) PARTITION BY RANGE (k);
CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (100);
CREATE TABLE parted_2 PARTITION OF parted FOR VALUES FROM (100) TO (200);
INSERT INTO parted VALUES (1, 'one'), (150, 'one fifty');
CREATE UNLOGGED TABLE scratch (id int);
INSERT INTO scratch VALUES (1);
CREATE TABLE secret (id int);
INSERT INTO secret VALUES (1);
ALTER TABLE secret ENABLE ROW LEVEL SECURITY;
});
ok(poll_until(sub { status('connected') eq 't' }), 'the pusher connects to redis');

# Run a statement 3 times in one session (simple protocol): it becomes hot at the third.
sub run_hot
{
	my ($sql, $prefix) = @_;
	$node->safe_psql('postgres', ($prefix // '') . join('', map { "$sql;\n" } 1 .. 4));
}

sub poll_get
{
	my ($key, $like) = @_;
	my $v = '';
	poll_until(sub { $v = redis_cli('GET', $key); $v ne '' && (!defined $like || $v =~ $like) });
	return $v;
}

# --- a hot statement is pushed under the documented key, with exactly its rows ---
my $q = 'SELECT id, name, price, big, at, ok, f, j, n FROM items ORDER BY id';
my $key = key_of($q);
is($node->safe_psql('postgres', "SELECT perfkit.redis_key(\$q\$$q;\$q\$)"),
	$key, 'perfkit.redis_key() agrees with the key computed independently (SHA-1 of the text)');
run_hot($q);
my $value = poll_get($key);
isnt($value, '', 'the result of the hot statement is in redis under its key');
my $doc = decode_json($value);
is_deeply([ map { "$_->{name}:$_->{type}" } @{ $doc->{columns} } ],
	[ 'id:integer', 'name:text', 'price:numeric', 'big:bigint', 'at:timestamp with time zone',
	  'ok:boolean', 'f:double precision', 'j:jsonb', 'n:text' ], 'columns with names and types');
is($doc->{row_count}, 5, 'row_count');
is($doc->{rows}[0][3], '10000000001', 'bigint as a string');
is($doc->{rows}[0][2], '1.25', 'numeric as a string');
is($doc->{rows}[0][4], '2024-05-02T10:00:00.5Z', 'timestamptz in UTC ISO 8601');
ok(JSON::PP::is_bool($doc->{rows}[0][5]), 'boolean as a JSON boolean');
is_deeply($doc->{rows}[0][7], { g => 1, tags => [ 'a', 1 ] }, 'jsonb embedded as JSON');
ok(!defined $doc->{rows}[0][8], 'NULL as null');
like($doc->{generated_at}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/, 'generated_at in UTC ISO 8601');
is($doc->{queryid},
	$node->safe_psql('postgres', "SELECT queryid FROM perfkit.statements WHERE query = '$q'"),
	'queryid is the fingerprint of perfkit.statements');
# identical rows: every JSON value cast back to its column's type equals the table's, in order
is( $node->safe_psql('postgres', qq{
WITH r AS (SELECT e, o FROM jsonb_array_elements(\$v\$$value\$v\$::jsonb -> 'rows') WITH ORDINALITY AS t(e, o)),
     i AS (SELECT *, row_number() OVER (ORDER BY id) AS o FROM items)
SELECT count(*) FROM i FULL JOIN r USING (o)
 WHERE (r.e ->> 0)::int IS DISTINCT FROM i.id OR (r.e ->> 1) IS DISTINCT FROM i.name
    OR (r.e ->> 2)::numeric IS DISTINCT FROM i.price OR (r.e ->> 3)::bigint IS DISTINCT FROM i.big
    OR (r.e ->> 4)::timestamptz IS DISTINCT FROM i.at OR (r.e ->> 5)::boolean IS DISTINCT FROM i.ok
    OR (r.e ->> 6)::float8 IS DISTINCT FROM i.f OR (r.e -> 7) IS DISTINCT FROM i.j
    OR (r.e ->> 8) IS DISTINCT FROM i.n}), '0', 'the pushed rows are identical to the query result');
my $ttl = redis_cli('TTL', $key);
ok($ttl > 0 && $ttl <= 300, "the key has the TTL of perfkit.redis_ttl ($ttl)");

# --- the extended protocol: the key includes the bind parameter ---
my $pq = 'SELECT id, name FROM items WHERE id = $1';
my $pkey = key_of($pq, '2');
is($node->safe_psql('postgres', "SELECT perfkit.redis_key(\$q\$$pq\$q\$, ARRAY['2'])"),
	$pkey, 'perfkit.redis_key() with a parameter agrees with the independent computation');
$node->pgbench('--no-vacuum --client=1 --transactions=5 --protocol=extended --define=id=2',
	0, [qr{processed: 5/5}], [qr{^$}], 'hot statement with a bind parameter',
	{ '020_param' => "SELECT id, name FROM items WHERE id = :id;\n" });
like(poll_get($pkey), qr/"rows":\[\[2,"item \\"2\\"\\\\"\]\]/, 'pushed under the key with its parameter');
is(redis_cli('EXISTS', key_of($pq, '3')), '0', 'not under the key of another parameter value');

# --- invalidation: UPDATE, with a PUBLISH on <prefix>:invalidate ---
my $sub_out = '';
my $sub = IPC::Run::start([ 'redis-cli', '-p', $redis_port, 'SUBSCRIBE', 'perfkit:invalidate' ],
	'>', \$sub_out, '2>&1');
ok(poll_until(sub { $sub->pump_nb; $sub_out =~ /subscribe/ }), 'subscribed to perfkit:invalidate');
$node->safe_psql('postgres', q{UPDATE items SET name = 'renamed' WHERE id = 1});
ok(poll_until(sub { redis_cli('EXISTS', $key) eq '0' }), 'UPDATE deletes the pushed result');
ok(poll_until(sub { redis_cli('EXISTS', $pkey) eq '0' }), '... and every other result that read the table');
ok(poll_until(sub { $sub->pump_nb; $sub_out =~ /"table":"public\.items"/ }),
	'the table is announced on perfkit:invalidate');
like($sub_out, qr/\{"database":"postgres","table":"public\.items","relid":\d+\}/, 'message format');
$sub->kill_kill;
run_hot($q);
like(poll_get($key), qr/"renamed"/, 'pushed again after the write, with the new rows');

# --- perfkit.redis_min_push_interval: a key is captured at most that often ---
my $iq = 'SELECT id FROM items WHERE id = 1';
run_hot($iq);
isnt(poll_get(key_of($iq)), '', 'pushed');
$node->safe_psql('postgres', q{UPDATE items SET name = 'renamed again' WHERE id = 1});
ok(poll_until(sub { redis_cli('EXISTS', key_of($iq)) eq '0' }), 'deleted by a write');
run_hot($iq, "SET perfkit.redis_min_push_interval = '1h';\n");
drain('within the interval');
is(redis_cli('EXISTS', key_of($iq)), '0', 'not captured again within perfkit.redis_min_push_interval');
run_hot($iq);
isnt(poll_get(key_of($iq)), '', 'captured again once the interval allows it');

# --- TRUNCATE and COPY FROM ---
$node->safe_psql('postgres', 'TRUNCATE items');
ok(poll_until(sub { redis_cli('EXISTS', $key) eq '0' }), 'TRUNCATE deletes the pushed result');
run_hot($q);
like(poll_get($key), qr/"row_count":0/, 'the empty result is pushed');
$node->safe_psql('postgres', "COPY items (id, name, price) FROM STDIN;\n7\tcopied\t1.5\n\\.\n");
ok(poll_until(sub { redis_cli('EXISTS', $key) eq '0' }), 'COPY FROM deletes the pushed result');
run_hot($q);
like(poll_get($key), qr/"copied"/, 'pushed again with the copied row');

# --- a view is resolved to its base table; partitions to their parent and back ---
my $vq = 'SELECT id, name FROM cheap ORDER BY id';
run_hot($vq);
isnt(poll_get(key_of($vq)), '', 'result read through a view pushed');
$node->safe_psql('postgres', q{UPDATE items SET price = 2 WHERE id = 7});
ok(poll_until(sub { redis_cli('EXISTS', key_of($vq)) eq '0' }), 'a write to the base table deletes it');

my ($parent_q, $leaf_q) = ('SELECT k, v FROM parted ORDER BY k', 'SELECT k, v FROM parted_1 ORDER BY k');
run_hot($parent_q);
run_hot($leaf_q);
isnt(poll_get(key_of($parent_q)), '', 'result read from a partitioned table pushed');
isnt(poll_get(key_of($leaf_q)), '', 'result read from one partition pushed');
$node->safe_psql('postgres', q{INSERT INTO parted VALUES (2, 'two')});
ok(poll_until(sub { redis_cli('EXISTS', key_of($parent_q)) eq '0' }),
	'a row routed through the parent deletes the parent\'s result');
ok(poll_until(sub { redis_cli('EXISTS', key_of($leaf_q)) eq '0' }),
	'... and the result read from the partition directly');

# --- statements that must never be pushed ---
my $unsafe_before = status('skipped_unsafe');
my @unsafe = (
	[ 'FOR UPDATE', 'SELECT id FROM items WHERE id = 7 FOR UPDATE' ],
	[ 'data-modifying WITH',
	  'WITH u AS (UPDATE scratch SET id = id RETURNING id) SELECT id FROM u' ],
	[ 'volatile function', 'SELECT id, random() < 2 AS r FROM items' ],
	[ 'stable function', 'SELECT id, now() > \'2000-01-01\' AS recent FROM items' ],
	[ 'row level security', 'SELECT id FROM secret' ],
	[ 'unlogged table', 'SELECT id FROM scratch' ],
	[ 'system catalog', q{SELECT relname FROM pg_class WHERE relname = 'items'} ],
	[ 'temporary table', 'SELECT a FROM tmp_t', 'CREATE TEMP TABLE tmp_t AS SELECT 1 AS a;' ],
	[ 'read in a transaction that wrote the table', 'SELECT id, price FROM items ORDER BY id',
	  "BEGIN;\nUPDATE items SET price = 3 WHERE id = 7;\n", "COMMIT;\n" ],
	[ 'excluded table', 'SELECT id, name FROM items WHERE id > 0',
	  "SET perfkit.redis_exclude_tables = 'public.items';\n" ]);
for my $case (@unsafe)
{
	my ($what, $sql, $prefix, $suffix) = @$case;
	$node->safe_psql('postgres', ($prefix // '') . join('', map { "$sql;\n" } 1 .. 4) . ($suffix // ''));
}
# several statements in one query string (psql -c sends it as one)
my $multi_first = 'SELECT name FROM items WHERE id = 7';
$node->command_ok([ 'psql', '-X', '-d', $node->connstr('postgres'), '-c', "$multi_first; SELECT 1" ],
	"several statements in one string ($_)") for 1 .. 4;
# over the byte cap
my $big_q = q{SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 100) g};
$node->safe_psql('postgres', "SET perfkit.redis_max_bytes = '4kB';\n" . join('', map { "$big_q;\n" } 1 .. 4));
drain('after the unsafe statements');
for my $case (@unsafe)
{
	is(redis_cli('EXISTS', key_of($case->[1])), '0', "never pushed: $case->[0]");
}
is(redis_cli('EXISTS', key_of($multi_first)), '0', 'never pushed: several statements in the text');
is(redis_cli('EXISTS', key_of($big_q)), '0', 'never pushed: result over perfkit.redis_max_bytes');
ok(poll_until(sub { status('skipped_unsafe') > $unsafe_before }), 'skipped_unsafe counts them');
ok(poll_until(sub { status('skipped_too_big') > 0 }), 'skipped_too_big counts the big result');
# control: the statement read inside the writing transaction is pushed once run outside it
run_hot('SELECT id, price FROM items ORDER BY id');
isnt(poll_get(key_of('SELECT id, price FROM items ORDER BY id')), '',
	'control: the same statement outside that transaction is pushed');

# the report has a Redis section
like($node->safe_psql('postgres', 'SELECT perfkit.report()'),
	qr/== Redis result cache ==\n    connected; \d+ pushed, \d+ invalidated/, 'perfkit.report() shows the push');

$node->stop;
redis_stop();
done_testing();
