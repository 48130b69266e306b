
-------------------------------------------------------------------------------
-- Process-once inbox for consumers (see docs/consumers.md).
--
-- Kafka delivers at least once.  A consumer that writes into this database
-- calls taskevents.process_once(source, id) in the transaction that applies
-- the event: true the first time the CloudEvent (source, id) is seen, false
-- after.  The mark commits or rolls back with the consumer's own writes.
--
-- Storage is a ring of 16 day slots (LIST partitions inbox_0 .. inbox_15,
-- slot = UTC day number mod 16), like the outbox: entries of a day go into
-- that day's slot, and a slot is emptied by TRUNCATE (prune_inbox()) once
-- every entry in it is older than the retention.  No DELETE, no dead tuples,
-- no DDL in steady state.  Each entry is written into today's slot and into
-- yesterday's slot, so two deliveries of one event on either side of
-- midnight still meet on one primary key and the second waits for the first.
-------------------------------------------------------------------------------

CREATE TABLE @extschema@.inbox_settings (
    onerow    boolean PRIMARY KEY DEFAULT true CHECK (onerow),
    retention interval NOT NULL DEFAULT '7 days'
              CHECK (retention OPERATOR(pg_catalog.>=) '1 day'::pg_catalog.interval
                     AND retention OPERATOR(pg_catalog.<=) '13 days'::pg_catalog.interval)
);

COMMENT ON TABLE @extschema@.inbox_settings IS
    'One row: how long process_once() remembers an event (1 to 13 days, default 7).';

-- The settings tables hold exactly one row.  An INSERT replaces it, so that
-- pg_dump's copy of a changed row restores over the default row the install
-- script wrote, instead of failing on the primary key.
CREATE FUNCTION @extschema@._settings_replace() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('DELETE FROM %I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME);
    RETURN NEW;
END;
$$;

CREATE TRIGGER settings_replace BEFORE INSERT ON @extschema@.inbox_settings
    FOR EACH ROW EXECUTE FUNCTION @extschema@._settings_replace();

INSERT INTO @extschema@.inbox_settings DEFAULT VALUES;

CREATE TABLE @extschema@.inbox (
    slot    smallint NOT NULL,
    source  text NOT NULL,
    id      text NOT NULL,
    seen_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    PRIMARY KEY (source, id, slot)
) PARTITION BY LIST (slot);

DO $$
BEGIN
    FOR s IN 0..15 LOOP
        EXECUTE pg_catalog.format('CREATE TABLE @extschema@.inbox_%s PARTITION OF @extschema@.inbox FOR VALUES IN (%s)', s, s);
    END LOOP;
END;
$$;

COMMENT ON TABLE @extschema@.inbox IS
    'Process-once inbox: CloudEvents (source, id) a consumer has processed, in 16 day slots emptied by prune_inbox().';

-- The slot of a UTC day.  (No SET clause, so that it is inlined; every
-- name in it is qualified.)
CREATE FUNCTION @extschema@._inbox_slot(day date) RETURNS smallint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT (((day OPERATOR(pg_catalog.-) '2000-01-01'::pg_catalog.date) OPERATOR(pg_catalog.%) 16)
            OPERATOR(pg_catalog.+) 16) OPERATOR(pg_catalog.%) 16;
$$;

-- The slots of the UTC days from first_day to last_day.
CREATE FUNCTION @extschema@._inbox_slots(first_day date, last_day date) RETURNS smallint[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(array_agg(@extschema@._inbox_slot(d::date)), '{}')
      FROM generate_series(first_day::timestamp, last_day::timestamp, interval '1 day') d;
$$;

-- Is (source, id) in slot s?  One static query per slot, so each keeps a
-- cached plan that locks only its own partition: a query on the parent
-- would lock all 16 until the consumer commits (a generic plan locks every
-- partition) and keep prune_inbox() from truncating the expired ones.
-- (No SET clause: it costs a configuration save and restore per call, and
-- the only caller, process_once(), has pinned search_path already; every
-- operator in it is qualified anyway.)
CREATE FUNCTION @extschema@._inbox_seen(s integer, source text, id text) RETURNS boolean
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    IF s OPERATOR(pg_catalog.=) 0 THEN
        RETURN EXISTS (SELECT 1 FROM @extschema@.inbox_0 i
                        WHERE i.source OPERATOR(pg_catalog.=) $2 AND i.id OPERATOR(pg_catalog.=) $3);
    ELSIF s OPERATOR(pg_catalog.=) 1 THEN
        RETURN EXISTS (SELECT 1 FROM @extschema@.inbox_1 i
                        WHERE i.source OPERATOR(pg_catalog.=) $2 AND i.id OPERATOR(pg_catalog.=) $3);
    ELSIF s OPERATOR(pg_catalog.=) 2 THEN
        RETURN EXISTS (SELECT 1 FROM @extschema@.inbox_2 i
                        WHERE i.source OPERATOR(pg_catalog.=) $2 AND i.id OPERATOR(pg_catalog.=) $3);
    ELSIF s OPERATOR(pg_catalog.=) 3 THEN
        RETURN EXISTS (SELECT 1 FROM @extschema@.inbox_3 i
                        WHERE i.source OPERATOR(pg_catalog.=) $2 AND i.id OPERATOR(pg_catalog.=) $3);
    ELSIF s OPERATOR(pg_catalog.=) 4 THEN
        RETURN EXISTS (SELECT 1 FROM @extschema@.inbox_4 i
                        WHERE i.source OPERATOR(pg_catalog.=) $2 AND i.id OPERATOR(pg_catalog.=) $3);
    ELSIF s OPERATOR(pg_catalog.=) 5 THEN
        RETURN EXISTS (SELECT 1 FROM @extschema@.inbox_5 i
                        WHERE i.source OPERATOR(pg_catalog.=) $2 AND i.id OPERATOR(pg_catalog.=) $3);
    ELSIF s OPERATOR(pg_catalog.=) 6 THEN
        RETURN EXISTS (SELECT 1 FROM @extschema@.inbox_6 i
                        WHERE i.source OPERATOR(pg_catalog.=) $2 AND i.id OPERATOR(pg_catalog.=) $3);
    ELSIF s OPERATOR(pg_catalog.=) 7 THEN
        RETURN EXISTS (SELECT 1 FROM @extschema@.inbox_7 i
                        WHERE i.source OPERATOR(pg_catalog.=) $2 AND i.id OPERATOR(pg_catalog.=) $3);
    ELSIF s OPERATOR(pg_catalog.=) 8 THEN
        RETURN EXISTS (SELECT 1 FROM @extschema@.inbox_8 i
                        WHERE i.source OPERATOR(pg_catalog.=) $2 AND i.id OPERATOR(pg_catalog.=) $3);
    ELSIF s OPERATOR(pg_catalog.=) 9 THEN
        RETURN EXISTS (SELECT 1 FROM @extschema@.inbox_9 i
                        WHERE i.source OPERATOR(pg_catalog.=) $2 AND i.id OPERATOR(pg_catalog.=) $3);
    ELSIF s OPERATOR(pg_catalog.=) 10 THEN
        RETURN EXISTS (SELECT 1 FROM @extschema@.inbox_10 i
                        WHERE i.source OPERATOR(pg_catalog.=) $2 AND i.id OPERATOR(pg_catalog.=) $3);
    ELSIF s OPERATOR(pg_catalog.=) 11 THEN
        RETURN EXISTS (SELECT 1 FROM @extschema@.inbox_11 i
                        WHERE i.source OPERATOR(pg_catalog.=) $2 AND i.id OPERATOR(pg_catalog.=) $3);
    ELSIF s OPERATOR(pg_catalog.=) 12 THEN
        RETURN EXISTS (SELECT 1 FROM @extschema@.inbox_12 i
                        WHERE i.source OPERATOR(pg_catalog.=) $2 AND i.id OPERATOR(pg_catalog.=) $3);
    ELSIF s OPERATOR(pg_catalog.=) 13 THEN
        RETURN EXISTS (SELECT 1 FROM @extschema@.inbox_13 i
                        WHERE i.source OPERATOR(pg_catalog.=) $2 AND i.id OPERATOR(pg_catalog.=) $3);
    ELSIF s OPERATOR(pg_catalog.=) 14 THEN
        RETURN EXISTS (SELECT 1 FROM @extschema@.inbox_14 i
                        WHERE i.source OPERATOR(pg_catalog.=) $2 AND i.id OPERATOR(pg_catalog.=) $3);
    ELSIF s OPERATOR(pg_catalog.=) 15 THEN
        RETURN EXISTS (SELECT 1 FROM @extschema@.inbox_15 i
                        WHERE i.source OPERATOR(pg_catalog.=) $2 AND i.id OPERATOR(pg_catalog.=) $3);
    END IF;
    RETURN NULL;
END;
$$;

-- True the first time the CloudEvent (source, id) is seen, false after.
-- A concurrent transaction that saw it first makes this call wait, then
-- return false if it commits and true if it rolls back.
CREATE FUNCTION @extschema@.process_once(source text, id text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    now_ts   timestamptz := clock_timestamp();
    today    date := (now_ts AT TIME ZONE 'UTC')::date;
    keep     interval;
    first_day date;
BEGIN
    IF source IS NULL OR id IS NULL THEN
        RAISE EXCEPTION 'CloudEvent % must not be NULL', CASE WHEN source IS NULL THEN 'source' ELSE 'id' END
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF source = '' OR id = '' THEN
        RAISE EXCEPTION 'CloudEvent % must not be empty', CASE WHEN source = '' THEN 'source' ELSE 'id' END
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT s.retention INTO keep FROM @extschema@.inbox_settings s;
    first_day := ((now_ts - coalesce(keep, interval '7 days')) AT TIME ZONE 'UTC')::date;

    -- Days before yesterday, newest first: a committed entry there is a
    -- duplicate.
    FOR back IN 2..(today - first_day) LOOP
        IF @extschema@._inbox_seen(@extschema@._inbox_slot(today - back), source, id) THEN
            RETURN false;
        END IF;
    END LOOP;

    -- Today and yesterday: the primary key decides, also against entries
    -- not yet committed (we wait for them).
    INSERT INTO @extschema@.inbox (slot, source, id, seen_at)
    VALUES (@extschema@._inbox_slot(today), process_once.source, process_once.id, now_ts)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO @extschema@.inbox (slot, source, id, seen_at)
    VALUES (@extschema@._inbox_slot(today - 1), process_once.source, process_once.id, now_ts)
    ON CONFLICT DO NOTHING;
    RETURN FOUND;
END;
$$;

COMMENT ON FUNCTION @extschema@.process_once(text, text) IS
    'True the first time CloudEvent (source, id) is seen, false after; call it in the transaction that applies the event.';

-- Validate a CloudEvent (structured mode JSON) and apply process_once().
CREATE FUNCTION @extschema@.receive(event jsonb) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    attr text;
BEGIN
    IF event IS NULL THEN
        RAISE EXCEPTION 'CloudEvent must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF jsonb_typeof(event) <> 'object' THEN
        RAISE EXCEPTION 'CloudEvent must be a JSON object, not %', jsonb_typeof(event)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the whole event in structured mode, as Dapr and the relay deliver it.';
    END IF;
    IF NOT (event ? 'specversion') THEN
        RAISE EXCEPTION 'CloudEvent attribute "specversion" is missing' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF event -> 'specversion' IS DISTINCT FROM '"1.0"'::jsonb THEN
        RAISE EXCEPTION 'CloudEvent attribute "specversion" is %, not "1.0"', event -> 'specversion'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOREACH attr IN ARRAY ARRAY['id', 'source', 'type'] LOOP
        IF NOT (event ? attr) THEN
            RAISE EXCEPTION 'CloudEvent attribute "%" is missing', attr USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF jsonb_typeof(event -> attr) <> 'string' OR event ->> attr = '' THEN
            RAISE EXCEPTION 'CloudEvent attribute "%" must be a non-empty string', attr
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END LOOP;
    RETURN @extschema@.process_once(event ->> 'source', event ->> 'id');
END;
$$;

COMMENT ON FUNCTION @extschema@.receive(jsonb) IS
    'Check that a CloudEvent has specversion 1.0 and non-empty id, source and type, then process_once(source, id).';

-- Empty every slot whose entries are all older than older_than (default:
-- inbox_settings.retention).  Returns the number of rows removed (each
-- event is stored twice, see above).  A slot still read by an open consumer
-- transaction is skipped and emptied by a later call.
CREATE FUNCTION @extschema@.prune_inbox(older_than interval DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    now_ts  timestamptz := clock_timestamp();
    today   date := (now_ts AT TIME ZONE 'UTC')::date;
    keep    interval := older_than;
    live    smallint[];
    part    text;
    nonempty boolean;
    n       bigint;
    removed bigint := 0;
BEGIN
    IF keep IS NULL THEN
        SELECT s.retention INTO keep FROM @extschema@.inbox_settings s;
        keep := coalesce(keep, interval '7 days');
    END IF;
    IF keep < interval '1 day' OR keep > interval '13 days' THEN
        RAISE EXCEPTION 'inbox retention must be between 1 day and 13 days, not %', keep
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'process_once() writes into yesterday''s slot, and the ring has 16 day slots.';
    END IF;
    -- Keep the slots of every day with an entry younger than keep, and
    -- tomorrow's (a caller whose clock passed midnight may write there).
    live := @extschema@._inbox_slots(((now_ts - keep) AT TIME ZONE 'UTC')::date, today + 1);
    FOR s IN 0..15 LOOP
        CONTINUE WHEN s = ANY (live);
        part := format('@extschema@.inbox_%s', s);
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s)', part) INTO STRICT nonempty;
        CONTINUE WHEN NOT nonempty;
        BEGIN
            EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE NOWAIT', part);
            EXECUTE format('SELECT count(*) FROM %s', part) INTO STRICT n;
            EXECUTE format('TRUNCATE %s', part);
            removed := removed + n;
        EXCEPTION WHEN lock_not_available THEN
            NULL;   -- a consumer transaction still reads it; next time
        END;
    END LOOP;
    RETURN removed;
END;
$$;

COMMENT ON FUNCTION @extschema@.prune_inbox(interval) IS
    'Truncate the inbox day slots whose entries are all older than older_than (default: inbox_settings.retention); returns rows removed.';

-- Deprecated name of prune_inbox() (0.1.0).
CREATE FUNCTION @extschema@.inbox_prune(older_than interval DEFAULT NULL) RETURNS bigint
LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$ SELECT @extschema@.prune_inbox(older_than) $$;

COMMENT ON FUNCTION @extschema@.inbox_prune(interval) IS 'Deprecated: use prune_inbox().';

-- Maintenance operation prune_inbox.  done = rows removed.
CREATE FUNCTION @extschema@._maint_prune_inbox(OUT done bigint, OUT failed bigint)
LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$ SELECT @extschema@.prune_inbox(), 0::bigint $$;

INSERT INTO @extschema@.maintenance_registry (operation, feature, function, period, position, description)
VALUES ('prune_inbox', 'inbox', '@extschema@._maint_prune_inbox()', '1 minute', 50,
        'Truncate the process-once inbox day slots past their retention.');

-- Grant a consumer role what process_once() and receive() need.
CREATE FUNCTION @extschema@.grant_consumer(consumer_role regrole) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA @extschema@ TO %s', consumer_role);
    EXECUTE format('GRANT EXECUTE ON FUNCTION @extschema@.process_once(text, text) TO %s', consumer_role);
    EXECUTE format('GRANT EXECUTE ON FUNCTION @extschema@.receive(jsonb) TO %s', consumer_role);
END;
$$;
