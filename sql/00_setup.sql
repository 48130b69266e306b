-- Helpers shared by the test files (pg_regress runs them in one database).

-- Run a statement and show its outcome: "ok", or the SQLSTATE, message and
-- hint of the error it raised.  Keeps error codes visible in the expected
-- output without depending on source locations.
CREATE FUNCTION try(stmt text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    hint text;
BEGIN
    EXECUTE stmt;
    RETURN 'ok';
EXCEPTION WHEN others THEN
    GET STACKED DIAGNOSTICS hint = PG_EXCEPTION_HINT;
    RETURN SQLSTATE || ': ' || SQLERRM || CASE WHEN hint <> '' THEN E'\nHINT: ' || hint ELSE '' END;
END;
$$;

-- The events written since outbox id "mark", without the two attributes
-- that differ on every run (id and time; checked in core_events).
CREATE FUNCTION ev_since(mark bigint)
RETURNS TABLE (topic text, partition_key text, event jsonb)
LANGUAGE sql AS $$
    SELECT o.topic, o.partition_key, o.event::jsonb - 'id' - 'time'
      FROM taskevents.outbox_events o WHERE o.id > mark ORDER BY o.id
$$;

-- The newest outbox id, to pass to ev_since() later.
CREATE FUNCTION ev_mark() RETURNS bigint
LANGUAGE sql AS $$ SELECT coalesce(max(id), 0) FROM taskevents.outbox $$;

-- The brief's tasks table as tasks_brief, unattached: test/lib/tasks.sql,
-- the one definition, read with echo off (its lines are not this test's
-- output; the path is the checkout's, where pg_regress runs).  Tests copy
-- it: CREATE TABLE ... (LIKE tasks_brief INCLUDING ALL, ...).
\set tasks tasks_brief
\set attach off
\set ECHO none
\i test/lib/tasks.sql
\set ECHO all

-- make_tasks(name): a task table like it with ids the tests choose (no
-- identity), user_id optional, and neither reminder_sent_at nor created_at
-- (an event's data holds every column, and created_at differs on every run).
CREATE TABLE tasks_small (LIKE tasks_brief INCLUDING DEFAULTS INCLUDING INDEXES);
ALTER TABLE tasks_small ALTER user_id DROP NOT NULL, DROP reminder_sent_at, DROP created_at;
CREATE FUNCTION make_tasks(tbl text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE TABLE %I (LIKE tasks_small INCLUDING DEFAULTS INCLUDING INDEXES)', tbl);
END;
$$;
