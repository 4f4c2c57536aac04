-- perfkit 0.1.0 -> 0.2.0: the index advisor.
-- Run by ALTER EXTENSION perfkit UPDATE, and by CREATE EXTENSION perfkit after perfkit--0.1.0.sql.
-- Same rules as the base script: every reference schema-qualified, SECURITY DEFINER functions pin
-- search_path.

\echo Use "ALTER EXTENSION perfkit UPDATE" to load this file. \quit
