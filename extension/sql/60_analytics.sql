
-------------------------------------------------------------------------------
-- Event analytics (see docs/consumers.md).
--
-- A record of every event the extension emitted, at no cost on the write
-- path: maintain() calls _capture_analytics(partition) right before it
-- truncates a fully delivered outbox partition, in the same transaction,
-- and the rows are copied in one INSERT ... SELECT.  The record therefore
-- lags by up to two rotation periods and holds delivered events only.
--
-- analytics_events is partitioned by UTC day of the event time;
-- maintain_analytics() creates the partitions ahead and drops whole days
-- older than the retention (no DELETE).
-------------------------------------------------------------------------------

CREATE TABLE @extschema@.analytics_settings (
    onerow       boolean PRIMARY KEY DEFAULT true CHECK (onerow),
    enabled      boolean NOT NULL DEFAULT false,
    retention    interval NOT NULL DEFAULT '90 days' CHECK (retention OPERATOR(pg_catalog.>=) '1 day'::pg_catalog.interval),
    keep_payload boolean NOT NULL DEFAULT false
);

COMMENT ON TABLE @extschema@.analytics_settings IS
    'One row: whether maintain() records delivered events in analytics_events, for how long, and whether with their data.';

CREATE TRIGGER settings_replace BEFORE INSERT ON @extschema@.analytics_settings
    FOR EACH ROW EXECUTE FUNCTION @extschema@._settings_replace();

INSERT INTO @extschema@.analytics_settings DEFAULT VALUES;

CREATE TABLE @extschema@.analytics_events (
    event_time    timestamptz NOT NULL,
    type          text,
    topic         text NOT NULL,
    partition_key text,
    subject       text,
    event_id      uuid,
    source        text,
    payload       jsonb
) PARTITION BY RANGE (event_time);

CREATE TABLE @extschema@.analytics_events_default PARTITION OF @extschema@.analytics_events DEFAULT;

COMMENT ON TABLE @extschema@.analytics_events IS
    'One row per delivered event (captured when its outbox partition is truncated), partitioned by UTC day of event_time.';
COMMENT ON COLUMN @extschema@.analytics_events.event_time IS
    'When the event was written to the outbox: its CloudEvent "time" (a replayed dead letter: the replay).';
COMMENT ON COLUMN @extschema@.analytics_events.payload IS
    'The CloudEvent "data", only while analytics_settings.keep_payload is on.';

-- Copy the events of one outbox partition into analytics_events, if
-- analytics is on.  maintain() calls it right before truncating the
-- partition; it truncates nothing itself.  Never fails on a malformed
-- event: attributes it cannot read are NULL.  Returns the rows copied.
CREATE FUNCTION @extschema@._capture_analytics(part regclass) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st @extschema@.analytics_settings;
    n  bigint;
BEGIN
    SELECT * INTO st FROM @extschema@.analytics_settings;
    IF NOT coalesce(st.enabled, false) OR part IS NULL THEN
        RETURN 0;
    END IF;
    -- An event stored as facts (envelope set) has them as columns; one
    -- stored whole (publish(), a replay) is read from its JSON.
    EXECUTE format(
        'INSERT INTO @extschema@.analytics_events
                (event_time, type, topic, partition_key, subject, event_id, source, payload)
         SELECT o.created_at,
                CASE WHEN o.envelope IS NULL THEN e.ev ->> ''type'' ELSE v.type_prefix || x.type END,
                @extschema@._event_topic(o.envelope, o.topic), x.partition_key,
                CASE WHEN o.envelope IS NULL THEN e.ev ->> ''subject'' ELSE x.subject END,
                CASE WHEN o.envelope IS NOT NULL THEN x.event_id
                     WHEN e.ev ->> ''id'' ~ ''^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$''
                     THEN (e.ev ->> ''id'')::uuid END,
                CASE WHEN o.envelope IS NULL THEN e.ev ->> ''source'' ELSE v.source END,
                CASE WHEN $1 THEN coalesce(e.ev,
                                           @extschema@._event_json(x.event_id, o.envelope, x.type, x.subject, o.created_at,
                                                                   o.topic, x.partition_key, o.traceparent, x.data)::jsonb) -> ''data'' END
           FROM %s o
          CROSS JOIN LATERAL @extschema@._outbox_unpack(o.id, o.event_id, o.type, o.subject,
                                                       o.partition_key, o.data, o.earlier) x
           LEFT JOIN @extschema@.envelopes v ON v.envelope_id = o.envelope
          CROSS JOIN LATERAL (SELECT CASE WHEN o.envelope IS NULL THEN x.data::jsonb END AS ev) e', part)
        USING st.keep_payload;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END;
$$;

COMMENT ON FUNCTION @extschema@._capture_analytics(regclass) IS
    'Record the events of an outbox partition in analytics_events (if analytics is on); maintain() calls it before TRUNCATE.';

-- The partition of analytics_events that holds UTC day "day".
CREATE FUNCTION @extschema@._analytics_partition_name(day date) RETURNS text
LANGUAGE sql IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'analytics_events_' || pg_catalog.to_char(day, 'YYYYMMDD');
$$;

-- Create the day partitions for today and the next two days (while
-- analytics is on), drop those whose whole day is older than the
-- retention, and empty the default partition once everything in it is
-- that old.  Takes its locks with NOWAIT: when a report is reading
-- analytics_events it does nothing and the next call does the work.
-- Returns nothing; safe to call at any time.
CREATE FUNCTION @extschema@.maintain_analytics() RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st       @extschema@.analytics_settings;
    now_ts   timestamptz := clock_timestamp();
    today    date := (now_ts AT TIME ZONE 'UTC')::date;
    cutoff   timestamptz;
    create_days date[];
    drop_parts  text[];
    d        date;
    p        text;
    lo       timestamptz;
    default_expired boolean;
    g        text;
BEGIN
    SELECT * INTO st FROM @extschema@.analytics_settings;
    cutoff := now_ts - coalesce(st.retention, interval '90 days');

    IF coalesce(st.enabled, false) THEN
        SELECT coalesce(array_agg(g.day ORDER BY g.day), '{}') INTO create_days
          FROM (SELECT (today + i) AS day FROM generate_series(0, 2) i) g
         WHERE to_regclass('@extschema@.' || @extschema@._analytics_partition_name(g.day)) IS NULL;
    ELSE
        create_days := '{}';
    END IF;

    SELECT coalesce(array_agg(c.relname::text ORDER BY c.relname), '{}') INTO drop_parts
      FROM pg_inherits i
      JOIN pg_class c ON c.oid = i.inhrelid
     WHERE i.inhparent = '@extschema@.analytics_events'::regclass
       AND c.relname ~ '^analytics_events_[0-9]{8}$'
       AND (to_date(substr(c.relname, 18), 'YYYYMMDD') + 1)::timestamp AT TIME ZONE 'UTC' <= cutoff;

    SELECT EXISTS (SELECT 1 FROM @extschema@.analytics_events_default)
       AND NOT EXISTS (SELECT 1 FROM @extschema@.analytics_events_default e WHERE e.event_time > cutoff)
      INTO default_expired;

    IF cardinality(create_days) = 0 AND cardinality(drop_parts) = 0 AND NOT default_expired THEN
        RETURN;
    END IF;

    BEGIN
        -- Creating or dropping a partition locks the parent; never queue
        -- behind a long report (and make the relay's maintain() wait).
        LOCK TABLE @extschema@.analytics_events IN ACCESS EXCLUSIVE MODE NOWAIT;
        LOCK TABLE @extschema@.analytics_events_default IN ACCESS EXCLUSIVE MODE NOWAIT;
    EXCEPTION WHEN lock_not_available THEN
        RETURN;
    END;

    FOREACH d IN ARRAY create_days LOOP
        lo := d::timestamp AT TIME ZONE 'UTC';
        -- Rows of that day already in the default partition (captured
        -- before the partition existed) stay there; the day is left to it.
        CONTINUE WHEN EXISTS (SELECT 1 FROM @extschema@.analytics_events_default e
                               WHERE e.event_time >= lo AND e.event_time < lo + interval '1 day');
        EXECUTE format('CREATE TABLE @extschema@.%I PARTITION OF @extschema@.analytics_events FOR VALUES FROM (%L) TO (%L)',
                       @extschema@._analytics_partition_name(d), lo, lo + interval '1 day');
        -- whoever may read the default partition for pg_dump
        -- (grant_backup()) may read the new one
        FOR g IN SELECT a.grantee::regrole::text FROM pg_class c, aclexplode(c.relacl) a
                  WHERE c.oid = '@extschema@.analytics_events_default'::regclass
                    AND a.privilege_type = 'SELECT' AND a.grantee <> c.relowner AND a.grantee <> 0 LOOP
            EXECUTE format('GRANT SELECT ON @extschema@.%I TO %s', @extschema@._analytics_partition_name(d), g);
        END LOOP;
    END LOOP;

    FOREACH p IN ARRAY drop_parts LOOP
        EXECUTE format('DROP TABLE @extschema@.%I', p);
    END LOOP;

    IF default_expired THEN
        TRUNCATE @extschema@.analytics_events_default;
    END IF;
END;
$$;

COMMENT ON FUNCTION @extschema@.maintain_analytics() IS
    'Create analytics_events day partitions ahead and drop the days older than analytics_settings.retention.';

-- Deprecated name of maintain_analytics() (0.1.0).
CREATE FUNCTION @extschema@.analytics_maintain() RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$ SELECT @extschema@.maintain_analytics() $$;

COMMENT ON FUNCTION @extschema@.analytics_maintain() IS 'Deprecated: use maintain_analytics().';

-- Maintenance operation maintain_analytics.
CREATE FUNCTION @extschema@._maint_analytics_partitions(OUT done bigint, OUT failed bigint)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM @extschema@.maintain_analytics();
    done := 0;
    failed := 0;
END;
$$;

-- Analytics registers two operations: its day partitions (periodic), and
-- the recording of an outbox partition's events right before rotate_outbox
-- truncates it (in the same transaction, so exactly once).
INSERT INTO @extschema@.maintenance_registry (operation, feature, function, phase, period, position, description) VALUES
    ('maintain_analytics', 'analytics', '@extschema@._maint_analytics_partitions()', 'periodic', '1 minute', 10,
     'Create analytics_events day partitions ahead and drop the expired ones (a no-op while analytics is off).'),
    ('capture_analytics', 'analytics', '@extschema@._capture_analytics(regclass)', 'before_outbox_truncate', NULL, 10,
     'Record the events of an outbox partition in analytics_events before it is truncated (while analytics is on).');

-------------------------------------------------------------------------------
-- Views for product questions.  Days are UTC days of the event time.
-------------------------------------------------------------------------------

CREATE VIEW @extschema@.analytics_events_per_day AS
SELECT pg_catalog.timezone('UTC', e.event_time)::pg_catalog.date AS day, e.type, pg_catalog.count(*) AS events
  FROM @extschema@.analytics_events e
 GROUP BY 1, 2;

COMMENT ON VIEW @extschema@.analytics_events_per_day IS 'Events per type per UTC day.';

CREATE VIEW @extschema@.analytics_active_users_per_day AS
SELECT pg_catalog.timezone('UTC', e.event_time)::pg_catalog.date AS day,
       pg_catalog.count(DISTINCT e.partition_key) AS active_users,
       pg_catalog.count(*) AS task_events
  FROM @extschema@.analytics_events e
 WHERE e.type OPERATOR(pg_catalog.~~) 'task.%'
 GROUP BY 1;

COMMENT ON VIEW @extschema@.analytics_active_users_per_day IS
    'Users (partition keys) that created, changed, completed or deleted a task, per UTC day.';

CREATE VIEW @extschema@.analytics_completions_per_day AS
SELECT pg_catalog.timezone('UTC', e.event_time)::pg_catalog.date AS day,
       pg_catalog.count(*) AS completions,
       pg_catalog.count(DISTINCT e.partition_key) AS users
  FROM @extschema@.analytics_events e
 WHERE e.type OPERATOR(pg_catalog.=) 'task.completed'
 GROUP BY 1;

COMMENT ON VIEW @extschema@.analytics_completions_per_day IS 'task.completed events and the users behind them, per UTC day.';

CREATE VIEW @extschema@.analytics_reminders_per_day AS
SELECT pg_catalog.timezone('UTC', e.event_time)::pg_catalog.date AS day,
       pg_catalog.count(*) FILTER (WHERE e.type OPERATOR(pg_catalog.=) 'reminder.scheduled') AS scheduled,
       pg_catalog.count(*) FILTER (WHERE e.type OPERATOR(pg_catalog.=) 'reminder.triggered') AS fired,
       pg_catalog.count(*) FILTER (WHERE e.type OPERATOR(pg_catalog.=) 'reminder.cancelled') AS cancelled
  FROM @extschema@.analytics_events e
 WHERE e.type OPERATOR(pg_catalog.=) ANY (ARRAY['reminder.scheduled', 'reminder.triggered', 'reminder.cancelled'])
 GROUP BY 1;

COMMENT ON VIEW @extschema@.analytics_reminders_per_day IS 'Reminders scheduled, fired and cancelled, per UTC day.';

-- A task is its (source, subject): source names the table, subject the id.
-- Time to complete = its first task.completed after its first task.created.
CREATE VIEW @extschema@.analytics_time_to_complete AS
WITH created AS (
    SELECT e.source, e.subject, pg_catalog.min(e.event_time) AS created_at
      FROM @extschema@.analytics_events e
     WHERE e.type OPERATOR(pg_catalog.=) 'task.created'
     GROUP BY 1, 2
), done AS (
    SELECT c.source, c.subject, c.created_at, pg_catalog.min(e.event_time) AS completed_at
      FROM created c
      JOIN @extschema@.analytics_events e
        ON e.type OPERATOR(pg_catalog.=) 'task.completed' AND e.source OPERATOR(pg_catalog.=) c.source AND e.subject OPERATOR(pg_catalog.=) c.subject
       AND e.event_time OPERATOR(pg_catalog.>=) c.created_at
     GROUP BY 1, 2, 3
), owner AS (
    SELECT DISTINCT ON (e.source, e.subject) e.source, e.subject, e.partition_key
      FROM @extschema@.analytics_events e
     WHERE e.type OPERATOR(pg_catalog.=) 'task.completed'
     ORDER BY e.source, e.subject, e.event_time
)
SELECT o.partition_key AS user_id,
       pg_catalog.count(*) AS completed_tasks,
       pg_catalog.make_interval(secs => pg_catalog.percentile_cont(0.5) WITHIN GROUP
                             (ORDER BY pg_catalog.date_part('epoch', d.completed_at OPERATOR(pg_catalog.-) d.created_at))) AS median_time_to_complete
  FROM done d
  JOIN owner o USING (source, subject)
 GROUP BY 1;

COMMENT ON VIEW @extschema@.analytics_time_to_complete IS
    'Per user: tasks created and completed within the record, and the median time from task.created to its first task.completed.';

-- Grant a role read access to the analytics record and views.
CREATE FUNCTION @extschema@.grant_analytics(analyst_role regrole) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r text;
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA @extschema@ TO %s', analyst_role);
    FOREACH r IN ARRAY ARRAY['analytics_events', 'analytics_events_per_day', 'analytics_active_users_per_day',
                             'analytics_completions_per_day', 'analytics_reminders_per_day',
                             'analytics_time_to_complete'] LOOP
        EXECUTE format('GRANT SELECT ON @extschema@.%I TO %s', r, analyst_role);
    END LOOP;
END;
$$;
