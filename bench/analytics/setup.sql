-- Event analytics benchmark: one attached task table (test/lib/tasks.sql,
-- as in bench/outbox), and the rotation step taskevents.maintain() performs,
-- capture included: lock a non-current outbox partition, record its events
-- with _capture_analytics(), truncate it.  (No relay runs, so the events are
-- not delivered first; the write path and the capture are what is measured.)
CREATE EXTENSION IF NOT EXISTS pg_taskevents;

DROP TABLE IF EXISTS bench_tasks;
\set tasks bench_tasks
\ir ../../test/lib/tasks.sql

CREATE OR REPLACE FUNCTION bench_rotate() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    part text;
    n bigint := 0;
BEGIN
    FOR s IN 0..2 LOOP
        CONTINUE WHEN s = taskevents._current_slot();
        part := format('taskevents.outbox_%s', s);
        BEGIN
            EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE NOWAIT', part);
            n := n + taskevents._capture_analytics(part::regclass);
            EXECUTE format('TRUNCATE %s', part);
        EXCEPTION WHEN lock_not_available THEN
            NULL;
        END;
    END LOOP;
    PERFORM taskevents.maintain_analytics();
    RETURN n;
END;
$$;

-- Time one _capture_analytics() of the 100,000 events in bench_capture_src.
CREATE OR REPLACE FUNCTION bench_capture_ms(payload boolean, OUT ms numeric, OUT captured bigint, OUT bytes bigint)
LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz;
BEGIN
    UPDATE taskevents.analytics_settings SET enabled = true, keep_payload = payload;
    TRUNCATE taskevents.analytics_events;
    t0 := clock_timestamp();
    captured := taskevents._capture_analytics('bench_capture_src');
    ms := round(extract(epoch FROM clock_timestamp() - t0)::numeric * 1000, 1);
    SELECT sum(pg_total_relation_size(i.inhrelid)) INTO bytes
      FROM pg_inherits i WHERE i.inhparent = 'taskevents.analytics_events'::regclass;
END;
$$;
