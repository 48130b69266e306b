-------------------------------------------------------------------------------
-- Reminders: one row per task that has (or had) a reminder, kept in step
-- with the task by the row trigger (reminders.c); fired by
-- fire_due_reminders(), which writes an in-app notification, a log row and
-- a reminder.triggered event.  See docs/recurrence-and-reminders.md.
-------------------------------------------------------------------------------

CREATE TABLE @extschema@.reminders (
    reminder_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_table     regclass NOT NULL,
    task_id        text NOT NULL,
    user_id        text NOT NULL,
    due_at         timestamptz NOT NULL,
    remind_at      timestamptz NOT NULL,
    state          text NOT NULL DEFAULT 'scheduled'
                   CHECK (state IN ('scheduled', 'fired', 'cancelled', 'failed')),
    scheduled_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    fired_at       timestamptz,
    cancelled_at   timestamptz,
    error_sqlstate text,
    CONSTRAINT reminders_task_key UNIQUE (task_table, task_id)
);

-- Only scheduled reminders are in this index, so finding the due ones costs
-- the same however many fired and cancelled rows the table holds.
CREATE INDEX reminders_due_idx ON @extschema@.reminders (remind_at) WHERE state = 'scheduled';

COMMENT ON TABLE @extschema@.reminders IS
    'The reminder of each task with a due date: scheduled at due - lead, then fired, cancelled or failed.';

CREATE TABLE @extschema@.notifications (
    notification_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id         text NOT NULL,
    task_table      regclass NOT NULL,
    task_id         text NOT NULL,
    kind            text NOT NULL DEFAULT 'reminder',
    title           text,
    due_date        timestamptz,
    reminder_id     bigint,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    read_at         timestamptz
);

CREATE INDEX notifications_unread_idx ON @extschema@.notifications (user_id, created_at DESC)
    WHERE read_at IS NULL;

COMMENT ON TABLE @extschema@.notifications IS
    'In-app notifications (one per fired reminder); read with unread_notifications(), acknowledge with mark_notification_read().';

CREATE TABLE @extschema@.reminder_log (
    log_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    reminder_id bigint NOT NULL,
    task_table  regclass NOT NULL,
    task_id     text NOT NULL,
    user_id     text NOT NULL,
    due_at      timestamptz,
    sent_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    run_id      uuid NOT NULL
);

CREATE INDEX reminder_log_task_idx ON @extschema@.reminder_log (task_table, task_id);

COMMENT ON TABLE @extschema@.reminder_log IS
    'One row per reminder sent: which task, when, and by which fire_due_reminders() run.';

CREATE FUNCTION @extschema@.emit_event(task_table regclass, topic text, type text,
                                       subject text, partition_key text, data jsonb)
RETURNS uuid
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'emit_event';

COMMENT ON FUNCTION @extschema@.emit_event(regclass, text, text, text, text, jsonb) IS
    'Write an event about a task of an attached table with the table''s source (used by fire_due_reminders()).';

CREATE FUNCTION @extschema@.reminder_task(task_table regclass, task_id text, sent_at timestamptz DEFAULT NULL)
RETURNS jsonb
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'reminder_task';

COMMENT ON FUNCTION @extschema@.reminder_task(regclass, text, timestamptz) IS
    'For fire_due_reminders(): lock and read a task (NOWAIT), or set its reminder_sent_at; runs as the table''s owner.';

-- Fire every scheduled reminder due at as_of (at most batch_limit of them,
-- earliest first) and return how many fired.  Concurrent callers skip each
-- other's rows (SKIP LOCKED), so each reminder fires once.  Each reminder
-- is handled in its own subtransaction: one that fails is marked 'failed'
-- and logged with its task id and SQLSTATE, and the run goes on; one whose
-- task row is locked by a writer stays scheduled for the next run.
CREATE FUNCTION @extschema@.fire_due_reminders(as_of timestamptz DEFAULT pg_catalog.now(),
                                               batch_limit integer DEFAULT 1000)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    run uuid := pg_catalog.gen_random_uuid();
    r record;
    reg record;
    cur_table regclass;
    task jsonb;
    due timestamptz;
    notif bigint;
    sqlstate_ text;
    fired integer := 0;
    failed integer := 0;
    busy integer := 0;
    dropped integer := 0;
BEGIN
    IF as_of IS NULL OR batch_limit IS NULL OR batch_limit < 1 THEN
        RAISE EXCEPTION 'as_of must not be null and batch_limit must be positive'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    FOR r IN
        SELECT m.reminder_id, m.task_table, m.task_id, m.user_id, m.due_at, m.remind_at
          FROM @extschema@.reminders m
         WHERE m.state = 'scheduled' AND m.remind_at <= fire_due_reminders.as_of
         ORDER BY m.remind_at
         LIMIT fire_due_reminders.batch_limit
           FOR UPDATE SKIP LOCKED
    LOOP
        BEGIN
            IF cur_table IS DISTINCT FROM r.task_table THEN
                SELECT a.* INTO reg FROM @extschema@.attached_tables a WHERE a.task_table = r.task_table;
                cur_table := CASE WHEN FOUND THEN r.task_table END;
            END IF;

            IF cur_table IS NULL THEN
                -- the table was detached: nobody is left to remind
                UPDATE @extschema@.reminders m SET state = 'cancelled', cancelled_at = pg_catalog.now()
                 WHERE m.reminder_id = r.reminder_id;
                dropped := dropped + 1;
                CONTINUE;
            END IF;

            task := @extschema@.reminder_task(r.task_table, r.task_id);
            IF task IS NULL OR (task->>reg.completed_column)::boolean IS TRUE THEN
                -- deleted or completed behind the trigger's back (disabled trigger)
                UPDATE @extschema@.reminders m SET state = 'cancelled', cancelled_at = pg_catalog.now()
                 WHERE m.reminder_id = r.reminder_id;
                PERFORM @extschema@.emit_event(r.task_table, 'reminders', 'reminder.cancelled', r.task_id, r.user_id,
                            pg_catalog.jsonb_build_object('reminder_id', r.reminder_id, 'task_id', r.task_id,
                                'user_id', r.user_id, 'due_date', r.due_at, 'remind_at', r.remind_at,
                                'reason', CASE WHEN task IS NULL THEN 'task_missing' ELSE 'completed' END));
                dropped := dropped + 1;
                CONTINUE;
            END IF;
            due := coalesce((task->>reg.due_date_column)::timestamptz, r.due_at);

            INSERT INTO @extschema@.notifications (user_id, task_table, task_id, kind, title, due_date, reminder_id)
            VALUES (r.user_id, r.task_table, r.task_id, 'reminder', task->>'title', due, r.reminder_id)
            RETURNING notification_id INTO notif;

            INSERT INTO @extschema@.reminder_log (reminder_id, task_table, task_id, user_id, due_at, run_id)
            VALUES (r.reminder_id, r.task_table, r.task_id, r.user_id, due, run);

            PERFORM @extschema@.reminder_task(r.task_table, r.task_id, pg_catalog.now());

            UPDATE @extschema@.reminders m SET state = 'fired', fired_at = pg_catalog.now()
             WHERE m.reminder_id = r.reminder_id;

            PERFORM @extschema@.emit_event(r.task_table, 'reminders', 'reminder.triggered', r.task_id, r.user_id,
                        pg_catalog.jsonb_build_object('reminder_id', r.reminder_id, 'task_id', r.task_id,
                            'user_id', r.user_id, 'due_date', due, 'remind_at', r.remind_at,
                            'fired_at', pg_catalog.now(), 'notification_id', notif, 'run_id', run));
            fired := fired + 1;
        EXCEPTION
            WHEN lock_not_available THEN
                -- a writer holds the task row: try again on the next run
                busy := busy + 1;
            WHEN OTHERS THEN
                GET STACKED DIAGNOSTICS sqlstate_ = RETURNED_SQLSTATE;
                -- the task id and SQLSTATE only: messages may quote row data
                RAISE LOG 'taskevents: reminder of task % in % failed with SQLSTATE %, skipped',
                    r.task_id, r.task_table, sqlstate_;
                UPDATE @extschema@.reminders m SET state = 'failed', error_sqlstate = sqlstate_
                 WHERE m.reminder_id = r.reminder_id;
                failed := failed + 1;
        END;
    END LOOP;

    IF fired + failed + busy + dropped > 0 THEN
        RAISE LOG 'taskevents: fire_due_reminders: % fired, % failed, % busy, % cancelled',
            fired, failed, busy, dropped;
    END IF;
    RETURN fired;
END;
$$;

COMMENT ON FUNCTION @extschema@.fire_due_reminders(timestamptz, integer) IS
    'Fire the reminders due at as_of (at most batch_limit): notification, log row, reminder_sent_at, reminder.triggered. Returns how many fired.';

-- Schedule reminders for the tasks of an attached table that have none yet
-- (not completed, due in the future): for a table that already held tasks
-- when it was attached; from then on the row trigger keeps reminders in
-- step.  Writes reminder.scheduled for each; returns how many.  Running it
-- again schedules nothing twice.
CREATE FUNCTION @extschema@.schedule_reminders(task_table regclass)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    reg record;
    lead interval;
    t record;
    data jsonb;
    n integer := 0;
BEGIN
    SELECT a.* INTO reg FROM @extschema@.attached_tables a WHERE a.task_table = schedule_reminders.task_table;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'table % is not attached', task_table
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF reg.due_date_column IS NULL THEN
        RETURN 0;
    END IF;
    -- the same lead as the trigger: the table's, else the setting in seconds
    lead := coalesce(reg.reminder_lead,
                     pg_catalog.make_interval(secs => (SELECT s.setting::double precision FROM pg_catalog.pg_settings s
                                                        WHERE s.name = 'taskevents.reminder_lead')));
    FOR t IN EXECUTE pg_catalog.format(
            'SELECT t.%1$I::text AS task_id, t.%2$I::text AS user_id, t.%3$I AS due FROM %4$s t'
            ' WHERE t.%3$I > pg_catalog.now() AND t.%5$I IS NOT TRUE AND t.%2$I IS NOT NULL',
            reg.id_column, reg.user_id_column, reg.due_date_column, task_table, reg.completed_column)
    LOOP
        INSERT INTO @extschema@.reminders AS r (task_table, task_id, user_id, due_at, remind_at)
        VALUES (schedule_reminders.task_table, t.task_id, t.user_id, t.due,
                GREATEST(t.due - lead, pg_catalog.now()))
        ON CONFLICT ON CONSTRAINT reminders_task_key DO NOTHING
        RETURNING pg_catalog.jsonb_build_object('reminder_id', r.reminder_id, 'task_id', r.task_id,
                      'user_id', r.user_id, 'due_date', r.due_at, 'remind_at', r.remind_at) INTO data;
        IF FOUND THEN
            PERFORM @extschema@.emit_event(schedule_reminders.task_table, 'reminders', 'reminder.scheduled',
                                           t.task_id, t.user_id, data);
            n := n + 1;
        END IF;
    END LOOP;
    RETURN n;
END;
$$;

COMMENT ON FUNCTION @extschema@.schedule_reminders(regclass) IS
    'Schedule reminders for tasks that were in a table before it was attached; returns how many.';

-- Mark one notification read; false when it does not exist or was read.
CREATE FUNCTION @extschema@.mark_notification_read(notification_id bigint)
RETURNS boolean
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH u AS (
        UPDATE @extschema@.notifications n SET read_at = pg_catalog.now()
         WHERE n.notification_id = mark_notification_read.notification_id AND n.read_at IS NULL
        RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM u);
$$;

COMMENT ON FUNCTION @extschema@.mark_notification_read(bigint) IS
    'Mark a notification read; returns false when it does not exist or was already read.';

-- The unread notifications of one user, newest first.
CREATE FUNCTION @extschema@.unread_notifications(user_id text, max_rows integer DEFAULT 100)
RETURNS SETOF @extschema@.notifications
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT n.* FROM @extschema@.notifications n
     WHERE n.user_id = unread_notifications.user_id AND n.read_at IS NULL
     ORDER BY n.created_at DESC, n.notification_id DESC
     LIMIT unread_notifications.max_rows;
$$;

COMMENT ON FUNCTION @extschema@.unread_notifications(text, integer) IS
    'Unread notifications of a user, newest first (uses notifications_unread_idx).';

SELECT pg_catalog.pg_extension_config_dump('@extschema@.reminders', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('@extschema@.reminders', 'reminder_id'), '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.notifications', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('@extschema@.notifications', 'notification_id'), '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.reminder_log', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('@extschema@.reminder_log', 'log_id'), '');
