-- Tables for bench/analytics/inbox.sh: the extension (process_once()'s
-- inbox) and the floor, a plain one-table inbox.
CREATE EXTENSION pg_taskevents;
CREATE TABLE plain_inbox (source text, id text, PRIMARY KEY (source, id));
