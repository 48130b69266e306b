-- Recurring tasks: the date rule (next_occurrence) and the next instance
-- created by the trigger in the completing transaction.
\set VERBOSITY terse
SET client_min_messages = warning;
SET TimeZone = 'UTC';

-------------------------------------------------------------------------------
-- The date rule
-------------------------------------------------------------------------------

-- every interval, in any letter case
SELECT i, taskevents.next_occurrence('2026-05-14 09:00+00', i) AS next
  FROM unnest(ARRAY['daily', 'weekly', 'monthly', 'Weekly', 'MONTHLY']) i;

-- month end: each step from the series anchor, never from the previous
-- (clamped) date, so Jan 31 comes back to Mar 31 and May 31; 2028 is a leap
-- year, 2027 is not
WITH RECURSIVE chain(n, due) AS (
    SELECT 0, timestamptz '2028-01-31 09:00+00'
    UNION ALL
    SELECT n + 1, taskevents.next_occurrence(due, 'monthly', anchor => '2028-01-31 09:00+00')
      FROM chain WHERE n < 13)
SELECT n, due FROM chain;
SELECT taskevents.next_occurrence('2027-01-31 09:00+00', 'monthly') AS feb_2027,
       taskevents.next_occurrence('2027-02-28 09:00+00', 'monthly', anchor => '2027-01-31 09:00+00') AS mar_2027,
       taskevents.next_occurrence('2028-02-28 09:00+00', 'daily') AS leap_day,
       taskevents.next_occurrence('2028-02-29 09:00+00', 'monthly') AS from_leap_day;
-- without an anchor the due date is the anchor: Feb 28 -> Mar 28
SELECT taskevents.next_occurrence('2028-02-28 09:00+00', 'monthly') AS no_anchor;

-- daylight-saving changes in America/New_York (2026-03-08 and 2026-11-01):
-- 09:00 local stays 09:00 local, so the UTC time moves by an hour
SELECT label, due AT TIME ZONE 'America/New_York' AS due_local,
       n AT TIME ZONE 'America/New_York' AS next_local, n AS next_utc
  FROM (VALUES
        ('daily over spring-forward', timestamptz '2026-03-07 09:00 America/New_York', 'daily'),
        ('weekly over spring-forward', '2026-03-02 09:00 America/New_York', 'weekly'),
        ('monthly over spring-forward', '2026-02-15 09:00 America/New_York', 'monthly'),
        ('daily over fall-back', '2026-10-31 09:00 America/New_York', 'daily'),
        ('weekly over fall-back', '2026-10-26 09:00 America/New_York', 'weekly'),
        ('monthly over fall-back', '2026-10-15 09:00 America/New_York', 'monthly')) v(label, due, i),
       LATERAL taskevents.next_occurrence(due, i, tz => 'America/New_York') n;
-- a time skipped by spring-forward reads as one hour later; the series
-- keeps its anchor, so the day after is 02:30 again
SELECT taskevents.next_occurrence('2026-03-07 02:30 America/New_York', 'daily', tz => 'America/New_York')
           AT TIME ZONE 'America/New_York' AS in_the_gap,
       taskevents.next_occurrence('2026-03-08 03:30 America/New_York', 'daily', tz => 'America/New_York',
                                  anchor => '2026-03-07 02:30 America/New_York')
           AT TIME ZONE 'America/New_York' AS after_the_gap;
-- the zone comes from tz, else taskevents.timezone, else TimeZone
SET taskevents.timezone = 'America/New_York';
SELECT taskevents.next_occurrence('2026-03-07 14:00+00', 'daily') AS from_setting;
RESET taskevents.timezone;
SELECT taskevents.next_occurrence('2026-03-07 14:00+00', 'daily') AS from_timezone_utc;
SET TimeZone = 'America/New_York';
SELECT taskevents.next_occurrence('2026-03-07 14:00+00', 'daily') AT TIME ZONE 'UTC' AS from_timezone_ny;
SET TimeZone = 'UTC';
SELECT try($$SET taskevents.timezone = 'Mars/Olympus_Mons'$$);
SELECT try($$SELECT taskevents.next_occurrence(now(), 'daily', tz => 'Mars/Olympus_Mons')$$);

-- completed late: the first occurrence of the series after completion,
-- not a pile of overdue copies
SELECT taskevents.next_occurrence('2026-01-05 09:00+00', 'weekly', after => '2026-03-04 12:00+00') AS weekly_late,
       taskevents.next_occurrence('2026-01-05 09:00+00', 'daily', after => '2026-03-04 12:00+00') AS daily_late,
       taskevents.next_occurrence('2026-01-05 09:00+00', 'daily', after => '2026-03-04 08:00+00') AS daily_late_early_hour,
       taskevents.next_occurrence('2026-01-31 09:00+00', 'monthly', after => '2026-04-30 10:00+00') AS monthly_late,
       taskevents.next_occurrence('2026-03-10 09:00+00', 'weekly', after => '2026-03-01 12:00+00') AS completed_early;
-- no due date: one interval after completion; neither: NULL
SELECT taskevents.next_occurrence(NULL, 'daily', after => '2026-03-04 12:34+00') AS daily,
       taskevents.next_occurrence(NULL, 'monthly', after => '2026-01-31 12:34+00') AS monthly,
       taskevents.next_occurrence(NULL, 'weekly') AS neither,
       taskevents.next_occurrence('2026-03-04 12:00+00', NULL) AS no_interval;

-- unknown intervals
SELECT try($$SELECT taskevents.next_occurrence(now(), 'fortnightly')$$);
SELECT try($$SELECT taskevents.next_occurrence(now(), ' daily')$$);
SELECT try($$SELECT taskevents.next_occurrence(now(), '')$$);

-------------------------------------------------------------------------------
-- The next instance, written by the trigger
-------------------------------------------------------------------------------

-- the brief's table (sql/00_setup.sql) with three more columns
CREATE TABLE rec_tasks (LIKE tasks_brief INCLUDING ALL,
    estimate interval,
    completed_at timestamptz,
    title_upper text GENERATED ALWAYS AS (upper(title)) STORED);
SELECT taskevents.attach('rec_tasks');

-- the task events of rec_tasks since a mark (reminders are in their own test)
CREATE FUNCTION rec_events(mark bigint)
RETURNS TABLE (type text, subject text, partitionkey text, due_date text, completed text)
LANGUAGE sql AS $$
    SELECT e.event->>'type', e.event->>'subject', e.event->>'partitionkey',
           e.event->'data'->>'due_date', e.event->'data'->>'completed'
      FROM ev_since(mark) e
     WHERE e.topic = 'tasks' AND e.event->>'source' LIKE '%/rec_tasks'
$$;

SELECT ev_mark() AS mark \gset
INSERT INTO rec_tasks (user_id, title, description, priority, tags, due_date,
                       is_recurring, recurring_interval, estimate, reminder_sent_at, completed_at)
VALUES ('alice', 'water plants', 'the big one too', 'high', '{home}', '2096-01-31 09:00+00',
        true, 'monthly', '15 minutes', '2096-01-30 09:00+00', '2000-01-01 00:00+00');
UPDATE rec_tasks SET completed = true, completed_at = now() WHERE id = 1;
-- task.completed, then the next instance's task.created; nothing else
SELECT * FROM rec_events(:mark);
-- copied: user, title, description, priority, tags, recurrence, estimate;
-- fresh: key, completed, due date, reminder_sent_at, created_at (a
-- computed default), completed_at, generated columns
SELECT id, user_id, title, description, priority, tags, due_date, is_recurring,
       recurring_interval, completed, reminder_sent_at, estimate,
       created_at <> first_value(created_at) OVER (ORDER BY id) AS fresh_created_at,
       completed_at IS NOT NULL AS has_completed_at, title_upper
  FROM rec_tasks ORDER BY id;

-- un-complete and complete again: still one next instance
SELECT ev_mark() AS mark \gset
UPDATE rec_tasks SET completed = false WHERE id = 1;
UPDATE rec_tasks SET completed = true WHERE id = 1;
SELECT * FROM rec_events(:mark);
SELECT count(*) AS instances FROM rec_tasks;

-- the month-end chain through the trigger: Feb 29, Mar 31, Apr 30, May 31
-- (dates far in the future, so that completing them is never late)
UPDATE rec_tasks SET completed = true WHERE id = 2;
UPDATE rec_tasks SET completed = true WHERE id = 3;
UPDATE rec_tasks SET completed = true WHERE id = 4;
SELECT id, due_date, completed FROM rec_tasks ORDER BY id;
SELECT task_id, next_task_id, series_anchor, next_due
  FROM taskevents.recurrence_spawned WHERE task_table = 'rec_tasks'::regclass ORDER BY task_id;
-- moving an instance's due date starts a new series from the moved date
UPDATE rec_tasks SET due_date = '2096-05-30 09:00+00' WHERE id = 5;
UPDATE rec_tasks SET completed = true WHERE id = 5;
SELECT id, due_date FROM rec_tasks WHERE id = 6;
DELETE FROM rec_tasks;

-- daily and weekly, in a zone with daylight saving
SET taskevents.timezone = 'America/New_York';
INSERT INTO rec_tasks (user_id, title, due_date, is_recurring, recurring_interval)
VALUES ('bob', 'standup', '2096-03-10 09:00 America/New_York', true, 'daily'),
       ('bob', 'review', '2096-11-01 09:00 America/New_York', true, 'weekly');
UPDATE rec_tasks SET completed = true WHERE user_id = 'bob';
SELECT title, due_date AT TIME ZONE 'America/New_York' AS due_local, due_date, completed
  FROM rec_tasks WHERE user_id = 'bob' ORDER BY title, id;
RESET taskevents.timezone;

-- completed late: due in 2020, the next one is the first Monday 09:00 after
-- now, not 2020 + 1 week
INSERT INTO rec_tasks (user_id, title, due_date, is_recurring, recurring_interval)
VALUES ('carol', 'weekly report', '2020-01-06 09:00+00', true, 'weekly');
UPDATE rec_tasks SET completed = true WHERE user_id = 'carol';
SELECT extract(isodow FROM due_date) AS isodow, due_date::time AS time,
       due_date > now() AND due_date <= now() + interval '7 days' AS within_a_week
  FROM rec_tasks WHERE user_id = 'carol' AND NOT completed;

-- no due date: one interval after completion (now() of the completing
-- transaction)
BEGIN;
INSERT INTO rec_tasks (user_id, title, is_recurring, recurring_interval)
VALUES ('dave', 'stretch', true, 'daily');
UPDATE rec_tasks SET completed = true WHERE user_id = 'dave';
SELECT due_date - now() AS due_in FROM rec_tasks WHERE user_id = 'dave' AND NOT completed;
COMMIT;

-- a completion rolled back leaves no instance and no claim
SELECT count(*) AS before FROM rec_tasks;
BEGIN;
UPDATE rec_tasks SET completed = true WHERE user_id = 'dave' AND NOT completed;
ROLLBACK;
SELECT count(*) AS after FROM rec_tasks;

-- non-recurring tasks: completing creates nothing, the interval column is
-- not looked at
SELECT ev_mark() AS mark \gset
INSERT INTO rec_tasks (user_id, title, due_date, recurring_interval)
VALUES ('erin', 'one-off', '2096-01-01 09:00+00', 'whenever');
UPDATE rec_tasks SET completed = true WHERE user_id = 'erin';
SELECT type, subject FROM rec_events(:mark);

-- unknown interval on a recurring task: refused at write time
SELECT try($$INSERT INTO rec_tasks (user_id, title, is_recurring, recurring_interval)
             VALUES ('erin', 'bad', true, 'fortnightly')$$);
SELECT try($$INSERT INTO rec_tasks (user_id, title, is_recurring) VALUES ('erin', 'bad', true)$$);
SELECT try($$UPDATE rec_tasks SET is_recurring = true WHERE user_id = 'erin'$$);
SELECT try($$UPDATE rec_tasks SET recurring_interval = 'yearly' WHERE user_id = 'dave'$$);
SELECT count(*) AS events FROM rec_events(:mark);

-- an application role with no privilege on the taskevents schema's tables
CREATE ROLE rec_app;
GRANT SELECT, INSERT, UPDATE ON rec_tasks TO rec_app;
SET ROLE rec_app;
INSERT INTO rec_tasks (user_id, title, due_date, is_recurring, recurring_interval)
VALUES ('frank', 'app task', '2096-06-01 09:00+00', true, 'weekly');
UPDATE rec_tasks SET completed = true WHERE user_id = 'frank';
SELECT due_date, completed FROM rec_tasks WHERE user_id = 'frank' ORDER BY id;
RESET ROLE;
-- ... and it needs no INSERT of its own: the next instance is written as
-- the table's owner, in a restricted context (docs/SECURITY.md)
REVOKE INSERT ON rec_tasks FROM rec_app;
SET ROLE rec_app;
SELECT try($$UPDATE rec_tasks SET completed = true WHERE user_id = 'frank' AND NOT completed$$);
RESET ROLE;
SELECT due_date, completed FROM rec_tasks WHERE user_id = 'frank' ORDER BY id;
DELETE FROM rec_tasks;
DROP OWNED BY rec_app;
DROP ROLE rec_app;

-- a key without a default cannot be filled in for the next instance
SELECT make_tasks('rec_nodefault');
SELECT taskevents.attach('rec_nodefault');
INSERT INTO rec_nodefault (id, user_id, title, is_recurring, recurring_interval)
VALUES (1, 'gina', 'manual ids', true, 'daily');
SELECT try($$UPDATE rec_nodefault SET completed = true WHERE id = 1$$);

-- a column added later is copied too (the cached insert is rebuilt)
ALTER TABLE rec_tasks ADD COLUMN location text;
INSERT INTO rec_tasks (user_id, title, due_date, is_recurring, recurring_interval, location)
VALUES ('hank', 'gym', '2096-01-01 07:00+00', true, 'daily', 'downtown');
UPDATE rec_tasks SET completed = true WHERE user_id = 'hank';
SELECT due_date, location, completed FROM rec_tasks WHERE user_id = 'hank' ORDER BY id;

-- other column names, a uuid key with a default, a bigint user id, a quoted
-- table name: the same rules
CREATE TABLE "Todo Items" (
    todo_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner bigint NOT NULL,
    "Title" text,
    deadline timestamptz,
    repeats boolean,
    every varchar(10),
    done boolean NOT NULL DEFAULT false,
    done_at timestamptz,
    category text DEFAULT 'inbox');
SELECT taskevents.attach('"Todo Items"', id_column => 'todo_id', user_id_column => 'owner',
                         completed_column => 'done', due_date_column => 'deadline',
                         is_recurring_column => 'repeats', recurring_interval_column => 'every');
SELECT ev_mark() AS mark \gset
INSERT INTO "Todo Items" (owner, "Title", deadline, repeats, every, done_at, category)
VALUES (7, 'backup', '2096-03-31 22:00+00', true, 'MONTHLY', '2000-01-01', 'ops');
UPDATE "Todo Items" SET done = true, done_at = now();
SELECT "Title", deadline, repeats, every, done, done_at IS NULL AS done_at_fresh, category
  FROM "Todo Items" ORDER BY deadline;
SELECT e.topic, e.event->>'type' AS type, e.event->>'subject' = t.todo_id::text AS subject_is_key,
       e.partition_key
  FROM ev_since(:mark) WITH ORDINALITY e(topic, partition_key, event, n)
  LEFT JOIN "Todo Items" t ON t.todo_id::text = e.event->>'subject'
 WHERE e.event->>'source' LIKE '%Todo Items'
 ORDER BY e.n;

-- A backend that starts while recurrence_spawned is empty and vacuumed
-- (its statistics say 0 rows) still reads about one row of it per
-- completion: completing 100 recurring tasks reads fewer than 1,000.  (A
-- kept plan made then once took the index on (task_table, next_task_id)
-- for a lookup by (task_table, task_id), with task_id as a filter, and read
-- every row of the table each time: 5,050 rows here.  The lookups are index
-- scans in C now, each on its own index.)
CREATE TABLE rec_scale (LIKE tasks_brief INCLUDING ALL);
SELECT taskevents.attach('rec_scale');
DELETE FROM taskevents.recurrence_spawned;
VACUUM ANALYZE taskevents.recurrence_spawned;
\c -
INSERT INTO rec_scale (user_id, title, due_date, is_recurring, recurring_interval)
SELECT 'u' || g, 't' || g, '2096-01-01 09:00+00', true, 'daily' FROM generate_series(1, 100) g;
SELECT pg_stat_force_next_flush();
SELECT coalesce(idx_tup_fetch, 0) + coalesce(seq_tup_read, 0) AS reads_before
  FROM pg_stat_user_tables WHERE relid = 'taskevents.recurrence_spawned'::regclass \gset
UPDATE rec_scale SET completed = true WHERE id <= 100;
SELECT pg_stat_force_next_flush();
SELECT count(*) AS next_instances FROM rec_scale WHERE NOT completed;
SELECT coalesce(idx_tup_fetch, 0) + coalesce(seq_tup_read, 0) - :reads_before < 1000 AS reads_bounded
  FROM pg_stat_user_tables WHERE relid = 'taskevents.recurrence_spawned'::regclass;

-- A library that does not match the claims' layout (a new .so before
-- ALTER EXTENSION UPDATE) refuses the completion of a recurring task
-- instead of reading or writing a claim of another shape.
BEGIN;
ALTER TABLE taskevents.recurrence_spawned ADD COLUMN extra integer;
INSERT INTO rec_scale (user_id, title, due_date, is_recurring, recurring_interval)
VALUES ('layout', 'layout', '2096-01-01 09:00+00', true, 'daily');
SELECT try($$UPDATE rec_scale SET completed = true WHERE user_id = 'layout'$$);
ROLLBACK;
