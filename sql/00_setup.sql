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

-- A task table with the brief's default columns.
CREATE FUNCTION make_tasks(tbl text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format($t$
        CREATE TABLE %I (
            id bigint PRIMARY KEY,
            user_id text,
            title text NOT NULL,
            description text,
            priority text DEFAULT 'medium',
            tags text[] DEFAULT '{}',
            due_date timestamptz,
            is_recurring boolean NOT NULL DEFAULT false,
            recurring_interval text,
            completed boolean NOT NULL DEFAULT false)$t$, tbl);
END;
$$;
