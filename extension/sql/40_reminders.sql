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
    -- scheduled, fired, cancelled or failed; written only by the
    -- extension's own statements (no CHECK: evaluating one costs every
    -- reminder write a parse of the constraint's expression)
    state          text NOT NULL DEFAULT 'scheduled',
    scheduled_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    fired_at       timestamptz,
    cancelled_at   timestamptz,
    error_sqlstate text,
    CONSTRAINT reminders_task_key UNIQUE (task_table, task_id)
);

-- Only scheduled reminders are in this index, so finding the due ones costs
-- the same however many fired and cancelled rows the table holds.  It is in
-- the order a run claims them (remind_at, reminder_id): on (remind_at)
-- alone, each batch sorted every due reminder with the same remind_at (a
-- bulk import's) to take the first thousand.
CREATE INDEX reminders_due_idx ON @extschema@.reminders (remind_at, reminder_id) WHERE state OPERATOR(pg_catalog.=) 'scheduled';

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

-- Fire every scheduled reminder due at as_of (at most batch_limit of them,
-- earliest first) and return how many fired; see reminders.c.  Concurrent
-- callers skip each other's rows (SKIP LOCKED), so each reminder fires once.
-- Not SECURITY DEFINER: the C code runs its statements as the extension
-- owner and the task tables' statements as their owners, and only the
-- extension owner may pass an as_of later than now().
CREATE FUNCTION @extschema@.fire_due_reminders(as_of timestamptz DEFAULT pg_catalog.now(),
                                               batch_limit integer DEFAULT 1000)
RETURNS integer
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'fire_due_reminders';

COMMENT ON FUNCTION @extschema@.fire_due_reminders(timestamptz, integer) IS
    'Fire the reminders due at as_of (at most batch_limit): notification, log row, reminder_sent_at, reminder.triggered. Returns how many fired.';

-- Maintenance operation fire_reminders: fire_due_reminders() as of now()
-- with its default batch; done = reminders fired, failed = reminders that
-- failed (each also a WARNING naming the task and the SQLSTATE), next_at =
-- when the next scheduled reminder is due (NULL: none).
CREATE FUNCTION @extschema@._maint_fire_reminders(OUT done bigint, OUT failed bigint, OUT next_at timestamptz)
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'maint_fire_reminders';

INSERT INTO @extschema@.maintenance_registry (operation, feature, function, period, position, description)
VALUES ('fire_reminders', 'reminders', '@extschema@._maint_fire_reminders()', '1 second', 40,
        'Fire the reminders that are due (notification, log, reminder_sent_at, reminder.triggered).');

-- Schedule reminders for the tasks of an attached table that have none yet
-- (not completed, due in the future): for a table that already held tasks
-- when it was attached; from then on the row trigger keeps reminders in
-- step.  Writes reminder.scheduled for each; returns how many.  Running it
-- again schedules nothing twice.  The caller must own the table.
CREATE FUNCTION @extschema@.schedule_reminders(task_table regclass) RETURNS integer
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'schedule_reminders';

COMMENT ON FUNCTION @extschema@.schedule_reminders(regclass) IS
    'Schedule reminders for tasks that were in a table before it was attached; returns how many.';

-- Mark one notification read; false when it does not exist or was read.
CREATE FUNCTION @extschema@.mark_notification_read(notification_id bigint) RETURNS boolean
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
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
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
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
