-------------------------------------------------------------------------------
-- Recurring tasks: the date rule, and which completed instance produced
-- which next instance (so a task completed twice spawns once, and each
-- series remembers its anchor so monthly dates never drift).
-- See "Recurring tasks" in docs/recurrence-and-reminders.md.
-------------------------------------------------------------------------------

CREATE TABLE @extschema@.recurrence_spawned (
    task_table    regclass NOT NULL,
    task_id       text NOT NULL,          -- the completed instance
    next_task_id  text,                   -- the instance it produced
    series_anchor timestamptz NOT NULL,   -- due date of the series' first instance
    next_due      timestamptz NOT NULL,   -- the due date given to next_task_id
    spawned_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (task_table, task_id)
);

-- The claim that spawned an instance (its series anchor), by the
-- instance's key.  recurrence.c reads the claims by index without SQL,
-- each lookup by the index made for it (by task_id: the primary key; by
-- next_task_id: this one, then it checks task_table and next_due), and
-- sql/recurrence counts the rows read.  Partial: every claim written since
-- 0.2.0 has its next_task_id (it is written after the next instance).
CREATE INDEX recurrence_spawned_next_idx ON @extschema@.recurrence_spawned (next_task_id)
    WHERE next_task_id IS NOT NULL;

COMMENT ON TABLE @extschema@.recurrence_spawned IS
    'One row per completed instance of a recurring task that produced its next instance; never more than one.';

CREATE FUNCTION @extschema@.next_occurrence(due timestamptz, recurring_interval text,
                                            after timestamptz DEFAULT NULL,
                                            tz text DEFAULT NULL,
                                            anchor timestamptz DEFAULT NULL)
RETURNS timestamptz
LANGUAGE C STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'next_occurrence';

COMMENT ON FUNCTION @extschema@.next_occurrence(timestamptz, text, timestamptz, text, timestamptz) IS
    'Due date of the next instance of a recurring task: the first occurrence of the series (anchored at anchor, else due) strictly after due and after, computed in tz (else taskevents.timezone, else TimeZone).';

SELECT pg_catalog.pg_extension_config_dump('@extschema@.recurrence_spawned', '');
