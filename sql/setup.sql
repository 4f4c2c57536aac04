-- Install the extension next to pg_stat_statements (both preloaded by test/regress.conf).
CREATE EXTENSION perfkit;
CREATE EXTENSION pg_stat_statements;

-- The public columns of the views.
\d perfkit.statements
\d perfkit.info
\d perfkit.slow_queries
\d perfkit.n_plus_one
\d perfkit.index_recommendations
\d perfkit.metrics

-- Settings, their defaults and contexts.
SELECT name, boot_val, context, vartype
  FROM pg_settings WHERE name LIKE 'perfkit.%' ORDER BY name;

-- The perfkit.* prefix is reserved: a misspelled setting is an error.
SET perfkit.trak = 'all';

-- Settings are validated.
SET perfkit.track = 'sometimes';
SET perfkit.max_statements = 10;

-- Objects live in schema perfkit only.
SELECT pg_describe_object(classid, objid, objsubid) AS object
  FROM pg_depend
 WHERE refclassid = 'pg_extension'::regclass
   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'perfkit')
   -- 17+ also records the row types of the tables and views (and their array
   -- types) as members; they follow from the relations listed
   AND NOT (classid = 'pg_type'::regclass AND EXISTS (
         SELECT 1 FROM pg_type t LEFT JOIN pg_type e ON e.oid = t.typelem
          WHERE t.oid = objid AND (t.typrelid <> 0 OR e.typrelid <> 0)))
 ORDER BY 1;
