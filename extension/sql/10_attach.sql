
-------------------------------------------------------------------------------
-- C functions
-------------------------------------------------------------------------------

CREATE FUNCTION @extschema@.task_trigger() RETURNS trigger
LANGUAGE C
AS 'MODULE_PATHNAME', 'task_trigger';

COMMENT ON FUNCTION @extschema@.task_trigger() IS
    'Row trigger installed by attach(): writes task.* CloudEvents into the outbox.';

CREATE FUNCTION @extschema@.publish(topic text, type text, data jsonb,
                                    partition_key text, subject text DEFAULT NULL)
RETURNS uuid
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'publish';

COMMENT ON FUNCTION @extschema@.publish(text, text, jsonb, text, text) IS
    'Write one custom CloudEvent into the outbox in the caller''s transaction; returns its id.';

CREATE FUNCTION @extschema@._enqueue_event(topic text, partition_key text, event jsonb) RETURNS void
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'enqueue_event';

COMMENT ON FUNCTION @extschema@._enqueue_event(text, text, jsonb) IS
    'Insert an already built CloudEvent into the outbox (dead-letter replay).';

-------------------------------------------------------------------------------
-- attach() / detach()
-------------------------------------------------------------------------------

-- Make sure the envelopes of an attached table's events exist: for its
-- topic with its current column names (events carry the row's values
-- alone), for its topic without them (the whole row, when the columns
-- change without this being run), and for the reminders topic.  Envelopes
-- are never changed or removed: old events keep rendering as written.
-- The topic of every reminder.* event (TASKEVENTS_REMINDERS_TOPIC in
-- extension/taskevents.h: the one place it is defined).
CREATE FUNCTION @extschema@._reminders_topic() RETURNS text
LANGUAGE C IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'reminders_topic';

CREATE FUNCTION @extschema@._register_envelopes(task_table regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    reg @extschema@.attached_tables;
    cols name[];
    types regtype[];
    s_at integer;
    k_at integer;
    s_json "char";
    k_json "char";
BEGIN
    SELECT a.* INTO reg FROM @extschema@.attached_tables a WHERE a.task_table = _register_envelopes.task_table;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT array_agg(a.attname ORDER BY a.attnum), array_agg(a.atttypid::regtype ORDER BY a.attnum)
      INTO cols, types
      FROM pg_attribute a
     WHERE a.attrelid = task_table AND a.attnum > 0 AND NOT a.attisdropped;
    -- the subject and the partition key need not be stored twice when
    -- their JSON follows from their text (extension/rowjson.c)
    s_at := array_position(cols, reg.id_column);
    k_at := array_position(cols, reg.user_id_column);
    s_json := @extschema@._json_derivable(types[s_at]);
    k_json := @extschema@._json_derivable(types[k_at]);
    INSERT INTO @extschema@.envelopes
           (source, pubsubname, topic, type_prefix, columns, subject_at, subject_json, key_at, key_json)
    VALUES (reg.source, reg.pubsubname, reg.topic, 'task.', cols,
            CASE WHEN s_json IS NOT NULL THEN s_at ELSE 0 END, coalesce(s_json, ' '),
            CASE WHEN k_json IS NOT NULL AND k_at <> s_at THEN k_at ELSE 0 END,
            CASE WHEN k_at <> s_at THEN coalesce(k_json, ' ') ELSE ' ' END),
           (reg.source, reg.pubsubname, reg.topic, 'task.', NULL, 0, ' ', 0, ' '),
           (reg.source, reg.pubsubname, @extschema@._reminders_topic(), 'reminder.', NULL, 0, ' ', 0, ' ')
    ON CONFLICT DO NOTHING;
END;
$$;

-- Check that column colname of table tbl exists and has an acceptable type;
-- return false when it is absent and absent_ok.
CREATE FUNCTION @extschema@._check_column(tbl regclass, role text, colname name,
                                         accepted regtype[], absent_ok boolean)
RETURNS boolean
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    typ regtype;
BEGIN
    SELECT a.atttypid::regtype INTO typ
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = tbl AND a.attname = colname
       AND a.attnum > 0 AND NOT a.attisdropped;
    IF NOT FOUND THEN
        IF absent_ok THEN
            RETURN false;
        END IF;
        RAISE EXCEPTION 'table % has no column "%" (the % column)', tbl, colname, role
            USING ERRCODE = 'undefined_column',
                  HINT = format('Name the %s column with %s_column => ''...''%s.', role,
                                replace(role, ' ', '_'),
                                CASE WHEN role IN ('due_date', 'is_recurring', 'recurring_interval')
                                     THEN ', or pass NULL to attach without reminders and recurrence'
                                     ELSE '' END);
    END IF;
    IF accepted IS NOT NULL AND NOT typ = ANY (accepted) THEN
        RAISE EXCEPTION 'column "%" of table % has type %, which cannot be the % column', colname, tbl, typ, role
            USING ERRCODE = 'datatype_mismatch',
                  HINT = format('The %s column must be of type %s.', role, array_to_string(accepted, ' or '));
    END IF;
    IF accepted IS NULL AND (SELECT t.typcategory IN ('A', 'C', 'P') FROM pg_catalog.pg_type t WHERE t.oid = typ) THEN
        RAISE EXCEPTION 'column "%" of table % has type %, which cannot be the % column', colname, tbl, typ, role
            USING ERRCODE = 'datatype_mismatch',
                  HINT = format('The %s column must be a scalar (text, uuid, bigint, ...), not an array or a row.', role);
    END IF;
    RETURN true;
END;
$$;

CREATE FUNCTION @extschema@.attach(
    task_table regclass,
    topic text DEFAULT 'tasks',
    source text DEFAULT NULL,
    pubsubname text DEFAULT NULL,
    id_column name DEFAULT 'id',
    user_id_column name DEFAULT 'user_id',
    completed_column name DEFAULT 'completed',
    due_date_column name DEFAULT 'due_date',
    is_recurring_column name DEFAULT 'is_recurring',
    recurring_interval_column name DEFAULT 'recurring_interval',
    reminder_sent_at_column name DEFAULT 'reminder_sent_at',
    reminder_lead interval DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    kind "char";
    nsp name;
    rel name;
BEGIN
    IF task_table IS NULL THEN
        RAISE EXCEPTION 'task_table must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT c.relkind, n.nspname, c.relname INTO kind, nsp, rel
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = task_table;
    IF kind IS DISTINCT FROM 'r' THEN
        RAISE EXCEPTION '% is not an ordinary table', task_table
            USING ERRCODE = 'wrong_object_type',
                  HINT = 'attach() works on ordinary tables; attach each partition of a partitioned table.';
    END IF;
    IF nsp = '@extschema@' OR nsp LIKE 'pg\_%' OR nsp = 'information_schema' THEN
        RAISE EXCEPTION 'cannot attach system or extension table %', task_table
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    IF topic IS NULL OR topic !~ '^[A-Za-z0-9._-]{1,245}$' OR topic IN ('.', '..') THEN
        RAISE EXCEPTION 'invalid topic name "%"', topic
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Kafka topic names have 1 to 245 characters (room for "-dlq") of ASCII letters, digits, ".", "_" and "-".';
    END IF;
    IF lower(topic) LIKE '%-dlq' THEN
        RAISE EXCEPTION 'topic "%" is a dead-letter topic', topic
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Only the relay writes to dead-letter topics (<topic>-dlq).';
    END IF;
    source := coalesce(source, format('/pg_taskevents/%s/%s/%s', current_database(), nsp, rel));
    IF source = '' THEN
        RAISE EXCEPTION 'source must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    pubsubname := coalesce(pubsubname, nullif(current_setting('taskevents.pubsubname', true), ''), 'pubsub');
    IF reminder_lead IS NOT NULL AND reminder_lead <= interval '0' THEN
        RAISE EXCEPTION 'reminder_lead must be positive' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF id_column IS NULL OR user_id_column IS NULL OR completed_column IS NULL THEN
        RAISE EXCEPTION 'id_column, user_id_column and completed_column must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF (is_recurring_column IS NULL) <> (recurring_interval_column IS NULL) THEN
        RAISE EXCEPTION 'is_recurring_column and recurring_interval_column must both be set or both be null'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    PERFORM @extschema@._check_column(task_table, 'id', id_column, NULL, false);
    PERFORM @extschema@._check_column(task_table, 'user id', user_id_column, NULL, false);
    PERFORM @extschema@._check_column(task_table, 'completed', completed_column, ARRAY['boolean']::regtype[], false);
    IF due_date_column IS NOT NULL THEN
        PERFORM @extschema@._check_column(task_table, 'due_date', due_date_column, ARRAY['timestamptz']::regtype[], false);
    END IF;
    IF is_recurring_column IS NOT NULL THEN
        PERFORM @extschema@._check_column(task_table, 'is_recurring', is_recurring_column, ARRAY['boolean']::regtype[], false);
        PERFORM @extschema@._check_column(task_table, 'recurring_interval', recurring_interval_column,
                                         ARRAY['text', 'character varying']::regtype[], false);
    END IF;
    IF reminder_sent_at_column IS NOT NULL
       AND NOT @extschema@._check_column(task_table, 'reminder_sent_at', reminder_sent_at_column,
                                        ARRAY['timestamptz']::regtype[], reminder_sent_at_column = 'reminder_sent_at') THEN
        reminder_sent_at_column := NULL;    -- the optional default column is absent
    END IF;

    INSERT INTO @extschema@.attached_tables AS a
           (task_table, topic, source, pubsubname, id_column, user_id_column, completed_column,
            due_date_column, is_recurring_column, recurring_interval_column,
            reminder_sent_at_column, reminder_lead)
    VALUES (attach.task_table, attach.topic, attach.source, attach.pubsubname, attach.id_column,
            attach.user_id_column, attach.completed_column, attach.due_date_column,
            attach.is_recurring_column, attach.recurring_interval_column,
            attach.reminder_sent_at_column, attach.reminder_lead)
    ON CONFLICT ON CONSTRAINT attached_tables_pkey DO UPDATE
       SET topic = excluded.topic, source = excluded.source, pubsubname = excluded.pubsubname,
           id_column = excluded.id_column, user_id_column = excluded.user_id_column,
           completed_column = excluded.completed_column, due_date_column = excluded.due_date_column,
           is_recurring_column = excluded.is_recurring_column,
           recurring_interval_column = excluded.recurring_interval_column,
           reminder_sent_at_column = excluded.reminder_sent_at_column,
           reminder_lead = excluded.reminder_lead;

    -- The envelopes of its events: task.* with the row's values alone and
    -- with the whole row, reminder.* events.
    PERFORM @extschema@._register_envelopes(task_table);

    -- CREATE OR REPLACE keeps one trigger however often attach() runs, and
    -- its relcache invalidation makes every backend reload the registry row.
    EXECUTE format('CREATE OR REPLACE TRIGGER taskevents_emit'
                   ' AFTER INSERT OR UPDATE OR DELETE ON %s'
                   ' FOR EACH ROW EXECUTE FUNCTION @extschema@.task_trigger()', task_table);
    EXECUTE format('CREATE OR REPLACE TRIGGER taskevents_truncate'
                   ' BEFORE TRUNCATE ON %s'
                   ' FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.task_trigger()', task_table);
END;
$$;

COMMENT ON FUNCTION @extschema@.attach(regclass, text, text, text, name, name, name, name, name, name, name, interval) IS
    'Validate a task table, install the event triggers and record it in taskevents.attached_tables.';

CREATE FUNCTION @extschema@.detach(task_table regclass, force boolean DEFAULT false) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    reg @extschema@.attached_tables;
    pending bigint;
    dead bigint;
BEGIN
    SELECT a.* INTO reg FROM @extschema@.attached_tables a WHERE a.task_table = detach.task_table FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'table % is not attached', task_table
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    -- Nothing is lost by detaching, but a table that is no longer attached
    -- no longer holds DROP EXTENSION back: say so while its events are on
    -- their way or its dead letters wait for review.
    IF NOT coalesce(force, false) THEN
        SELECT count(*) INTO pending FROM @extschema@.pending_events e
         WHERE e.event ->> 'source' = reg.source;
        SELECT count(*) INTO dead FROM @extschema@.dead_letters d
         WHERE d.event ->> 'source' = reg.source AND d.replayed_at IS NULL;
        IF pending > 0 OR dead > 0 THEN
            RAISE EXCEPTION 'table % has % undelivered events and % dead letters not replayed', task_table, pending, dead
                USING ERRCODE = 'dependent_objects_still_exist',
                      DETAIL = 'Detaching keeps them, but once no table is attached nothing stops DROP EXTENSION from discarding them.',
                      HINT = 'Wait until taskevents.pending_events no longer lists them and replay or delete the dead letters, or call detach(..., force => true).';
        END IF;
    END IF;
    DELETE FROM @extschema@.attached_tables a WHERE a.task_table = detach.task_table;
    EXECUTE format('DROP TRIGGER IF EXISTS taskevents_emit ON %s', task_table);
    EXECUTE format('DROP TRIGGER IF EXISTS taskevents_truncate ON %s', task_table);
END;
$$;

COMMENT ON FUNCTION @extschema@.detach(regclass, boolean) IS
    'Remove the event triggers of a table and forget it; events already in the outbox stay. Refused while the table has undelivered events or dead letters, unless force.';

-- Forget registry entries of dropped tables (they would otherwise dangle as
-- bare OIDs).  SECURITY DEFINER: the role dropping its table has no
-- privilege on the registry.
CREATE FUNCTION @extschema@._forget_dropped_tables() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- Act only on the extension's own registry: should the schema ever be
    -- renamed and a look-alike created under this name, do nothing.
    IF pg_catalog.to_regnamespace('@extschema@') IS DISTINCT FROM
       (SELECT e.extnamespace FROM pg_catalog.pg_extension e WHERE e.extname = 'pg_taskevents') THEN
        RETURN;
    END IF;
    DELETE FROM @extschema@.attached_tables a
     USING pg_catalog.pg_event_trigger_dropped_objects() d
     WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objsubid = 0
       AND d.objid = a.task_table::oid;
END;
$$;

CREATE EVENT TRIGGER taskevents_forget_dropped ON sql_drop
    EXECUTE FUNCTION @extschema@._forget_dropped_tables();

-- When the columns of an attached table change (ALTER TABLE), register the
-- envelope of its new column names in the same transaction, so that its
-- events go on carrying the row's values alone.  (Without it they would
-- carry the whole row: correct, just larger.)  SECURITY DEFINER: the role
-- altering its table has no privilege on the envelopes.
CREATE FUNCTION @extschema@._track_table_changes() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t regclass;
BEGIN
    IF pg_catalog.to_regnamespace('@extschema@') IS DISTINCT FROM
       (SELECT e.extnamespace FROM pg_catalog.pg_extension e WHERE e.extname = 'pg_taskevents') THEN
        RETURN;
    END IF;
    FOR t IN SELECT DISTINCT a.task_table
               FROM pg_catalog.pg_event_trigger_ddl_commands() c
               JOIN @extschema@.attached_tables a ON a.task_table::oid = c.objid
              WHERE c.classid = 'pg_catalog.pg_class'::regclass LOOP
        PERFORM @extschema@._register_envelopes(t);
    END LOOP;
END;
$$;

CREATE EVENT TRIGGER taskevents_track_table_changes ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE')
    EXECUTE FUNCTION @extschema@._track_table_changes();
