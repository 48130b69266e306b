
-------------------------------------------------------------------------------
-- The maintenance list, in the manner of PgQ's maint_operations().
--
-- Each feature registers its periodic operations in maintenance_registry
-- from its own part of this script (outbox rotation and relay state in
-- 20_relay.sql, reminders in 40_reminders.sql, the inbox in 50_inbox.sql,
-- analytics in 60_analytics.sql).  taskevents-relay asks
-- maintenance_operations() what to run and how often, and runs each with
-- run_maintenance(operation) on a connection of its own; pg_cron or any
-- scheduler can do the same.  An operation that must run inside another one
-- registers a phase instead of a period: the functions of phase
-- 'before_outbox_truncate' are called by rotate_outbox, in its transaction,
-- with each partition it is about to truncate (analytics records the
-- partition's events that way, exactly once).  docs/relay.md shows the list.
-------------------------------------------------------------------------------

CREATE TABLE @extschema@.maintenance_registry (
    operation   text PRIMARY KEY,
    feature     text NOT NULL,
    function    regprocedure NOT NULL,
    phase       text NOT NULL DEFAULT 'periodic'
                CHECK (phase OPERATOR(pg_catalog.=) ANY (ARRAY['periodic', 'before_outbox_truncate'])),
    period      interval CHECK (period OPERATOR(pg_catalog.>) '0'::pg_catalog.interval),
    position    integer NOT NULL,
    description text NOT NULL,
    CHECK ((phase OPERATOR(pg_catalog.=) 'periodic') OPERATOR(pg_catalog.=) (period IS NOT NULL))
);

COMMENT ON TABLE @extschema@.maintenance_registry IS
    'The maintenance list: each feature''s periodic operations (function(OUT done bigint, OUT failed bigint [, OUT next_at timestamptz])), and the functions rotate_outbox calls before truncating a partition (function(regclass)).';

-- What to run, how often, in which order.
CREATE FUNCTION @extschema@.maintenance_operations()
RETURNS TABLE (operation text, period interval, feature text, description text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT m.operation, m.period, m.feature, m.description
      FROM @extschema@.maintenance_registry m
     WHERE m.phase = 'periodic'
     ORDER BY m.position, m.operation;
$$;

COMMENT ON FUNCTION @extschema@.maintenance_operations() IS
    'The periodic maintenance operations and how often to run each (run them with run_maintenance()).';

-- Run one periodic operation; done and failed are its counts (partitions
-- truncated, reminders fired and failed, ...; done is 0 when there was
-- nothing to do), next_at when it next has work for certain (NULL: not
-- known; an operation whose function has an OUT parameter next_at says).
CREATE FUNCTION @extschema@.run_maintenance(operation text)
RETURNS TABLE (done bigint, failed bigint, next_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fn regprocedure;
    has_next boolean;
BEGIN
    SELECT m.function,
           coalesce('next_at'::pg_catalog.text OPERATOR(pg_catalog.=) ANY (p.proargnames), false)
      INTO fn, has_next
      FROM @extschema@.maintenance_registry m
      JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) m.function::pg_catalog.oid
     WHERE m.operation = run_maintenance.operation AND m.phase = 'periodic';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown maintenance operation "%"', operation
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'taskevents.maintenance_operations() lists them.';
    END IF;
    RETURN QUERY EXECUTE format('SELECT r.done, r.failed, %s FROM %s() r',
                                CASE WHEN has_next THEN 'r.next_at' ELSE 'NULL::pg_catalog.timestamptz' END,
                                fn::regproc);
END;
$$;

COMMENT ON FUNCTION @extschema@.run_maintenance(text) IS
    'Run one operation of maintenance_operations() and return its counts (done, failed) and, when it knows, when it next has work (next_at).';
