-- Event analytics: _capture_analytics() on a partition shaped like the
-- outbox and on a real outbox partition, maintain_analytics() (day
-- partitions ahead, whole-day drops, the default partition), and the views
-- on fixed data.
\set VERBOSITY terse
SET client_min_messages = warning;
SET TimeZone = 'UTC';

SELECT enabled, retention, keep_payload FROM taskevents.analytics_settings;

-- a scratch table shaped like an outbox partition, with fixed events: the
-- rows below in this order, ids from 1
CREATE TABLE analytics_scratch (LIKE taskevents.outbox INCLUDING DEFAULTS);
INSERT INTO analytics_scratch (txid, id, slot, created_at, topic, partition_key, data)
SELECT pg_current_xact_id(), row_number() OVER (), 0, at,
       coalesce(topic, CASE WHEN typ LIKE 'reminder.%' THEN 'reminders' ELSE 'tasks' END), usr,
       jsonb_build_object('specversion', '1.0', 'id', gen_random_uuid(),
                          'source', '/pg_taskevents/app/public/tasks', 'type', typ,
                          'time', at, 'subject', subj, 'partitionkey', usr,
                          'data', jsonb_build_object('id', subj, 'user_id', usr))
  FROM (VALUES
    -- day 1: alice creates tasks 1 and 2, bob task 10; alice completes task 1
    -- after 2 hours, which cancels its reminder
    ('2026-03-01 09:00+00'::timestamptz, 'task.created', 'alice', '1', NULL::text),
    ('2026-03-01 09:00+00', 'reminder.scheduled', 'alice', '1', NULL),
    ('2026-03-01 09:30+00', 'task.created', 'alice', '2', NULL),
    ('2026-03-01 09:30+00', 'reminder.scheduled', 'alice', '2', NULL),
    ('2026-03-01 10:00+00', 'task.created', 'bob', '10', NULL),
    ('2026-03-01 10:00+00', 'reminder.scheduled', 'bob', '10', NULL),
    ('2026-03-01 11:00+00', 'task.completed', 'alice', '1', NULL),
    ('2026-03-01 11:00+00', 'reminder.cancelled', 'alice', '1', NULL),
    -- day 2: bob completes task 10 after 24 hours; carol creates task 20 and
    -- completes it after 30 minutes; alice's reminder for task 2 fires and she
    -- edits it
    ('2026-03-02 08:00+00', 'task.created', 'carol', '20', NULL),
    ('2026-03-02 08:30+00', 'task.completed', 'carol', '20', NULL),
    ('2026-03-02 09:00+00', 'reminder.triggered', 'alice', '2', NULL),
    ('2026-03-02 10:00+00', 'task.completed', 'bob', '10', NULL),
    ('2026-03-02 10:00+00', 'reminder.cancelled', 'bob', '10', NULL),
    ('2026-03-02 12:00+00', 'task.updated', 'alice', '2', NULL),
    -- day 3: alice completes task 2 after 48 hours, un-completes and completes
    -- task 1 again (its first completion counts); carol creates task 21 and
    -- completes it after 4 hours, deletes task 20 and exports a report (a
    -- publish() event)
    ('2026-03-03 09:30+00', 'task.completed', 'alice', '2', NULL),
    ('2026-03-03 09:40+00', 'task.updated', 'alice', '1', NULL),
    ('2026-03-03 09:50+00', 'task.completed', 'alice', '1', NULL),
    ('2026-03-03 10:00+00', 'task.created', 'carol', '21', NULL),
    ('2026-03-03 14:00+00', 'task.completed', 'carol', '21', NULL),
    ('2026-03-03 15:00+00', 'task.deleted', 'carol', '20', NULL),
    ('2026-03-03 16:00+00', 'report.exported', 'carol', NULL, 'exports')
  ) AS e(at, typ, usr, subj, topic);
-- rows capture must survive: not an object, an id that is no UUID
INSERT INTO analytics_scratch (txid, id, slot, created_at, topic, partition_key, data)
VALUES (pg_current_xact_id(), 100, 0, '2026-03-03 17:00+00', 'tasks', NULL, '"not an object"'),
       (pg_current_xact_id(), 101, 0, '2026-03-03 17:00+00', 'tasks', 'dave',
        '{"id": "order-17", "type": "x.y", "source": "/elsewhere"}');

-------------------------------------------------------------------------------
-- _capture_analytics()
-------------------------------------------------------------------------------

-- off by default: captures nothing
SELECT taskevents._capture_analytics('analytics_scratch') AS captured_while_off;
SELECT count(*) AS recorded FROM taskevents.analytics_events;

UPDATE taskevents.analytics_settings SET enabled = true;
SELECT taskevents._capture_analytics('analytics_scratch') AS captured;
-- it truncates nothing itself
SELECT count(*) AS scratch_rows FROM analytics_scratch;
-- what one row records (no payload unless keep_payload)
SELECT event_time, type, topic, partition_key, subject, event_id IS NOT NULL AS has_event_id, source, payload
  FROM taskevents.analytics_events WHERE type = 'task.completed' AND subject = '10';
SELECT event_time, type, topic, partition_key, subject, event_id, source
  FROM taskevents.analytics_events WHERE event_time = '2026-03-03 17:00+00' ORDER BY partition_key;

-------------------------------------------------------------------------------
-- The views, on the fixed events
-------------------------------------------------------------------------------

SELECT * FROM taskevents.analytics_events_per_day ORDER BY day, type;
SELECT * FROM taskevents.analytics_active_users_per_day ORDER BY day;
SELECT * FROM taskevents.analytics_completions_per_day ORDER BY day;
SELECT * FROM taskevents.analytics_reminders_per_day ORDER BY day;
SELECT * FROM taskevents.analytics_time_to_complete ORDER BY user_id;

-------------------------------------------------------------------------------
-- A real outbox partition: capture after writes, with and without payload
-------------------------------------------------------------------------------

TRUNCATE taskevents.analytics_events;
SELECT taskevents.maintain_analytics();
-- today's partition and the next two exist
SELECT count(*) AS partitions_ahead
  FROM generate_series(0, 2) i
 WHERE to_regclass('taskevents.' || taskevents._analytics_partition_name(current_date + i)) IS NOT NULL;

SELECT make_tasks('analytics_tasks');
SELECT taskevents.attach('analytics_tasks', source => '/analytics/test');
INSERT INTO analytics_tasks (id, user_id, title) VALUES (1, 'alice', 'one'), (2, 'bob', 'two');
UPDATE analytics_tasks SET completed = true WHERE id = 1;
BEGIN;
INSERT INTO analytics_tasks (id, user_id, title) VALUES (3, 'carol', 'rolled back');
ROLLBACK;

CREATE TEMP TABLE analytics_outbox_before AS SELECT count(*) AS n FROM taskevents.outbox;
SELECT sum(taskevents._capture_analytics(p)) >= 3 AS captured
  FROM unnest(ARRAY['taskevents.outbox_0', 'taskevents.outbox_1', 'taskevents.outbox_2']::regclass[]) p;
SELECT (SELECT count(*) FROM taskevents.outbox) = n AS outbox_untouched FROM analytics_outbox_before;
SELECT tableoid::regclass = ('taskevents.' || taskevents._analytics_partition_name((now() AT TIME ZONE 'UTC')::date))::regclass AS in_todays_partition,
       type, topic, partition_key, subject, payload
  FROM taskevents.analytics_events WHERE source = '/analytics/test' ORDER BY event_time, subject;
-- each row is the outbox event it came from
SELECT count(*) AS matching
  FROM taskevents.analytics_events a
  JOIN taskevents.outbox_events o ON (o.event->>'id')::uuid = a.event_id
 WHERE a.source = '/analytics/test'
   AND a.event_time = o.created_at AND a.type = o.event->>'type' AND a.subject = o.event->>'subject';

-- keep_payload records the event's data
TRUNCATE taskevents.analytics_events;
UPDATE taskevents.analytics_settings SET keep_payload = true;
SELECT sum(taskevents._capture_analytics(p)) >= 3 AS captured
  FROM unnest(ARRAY['taskevents.outbox_0', 'taskevents.outbox_1', 'taskevents.outbox_2']::regclass[]) p;
SELECT type, payload->>'title' AS title, payload->>'completed' AS completed
  FROM taskevents.analytics_events WHERE source = '/analytics/test' ORDER BY event_time, subject;
SELECT day = current_date AS today, type, events
  FROM taskevents.analytics_events_per_day WHERE day = current_date AND type LIKE 'task.%' ORDER BY type;

-------------------------------------------------------------------------------
-- maintain_analytics(): whole days older than the retention are dropped
-------------------------------------------------------------------------------

CREATE FUNCTION analytics_make_day(d date) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE TABLE taskevents.%I PARTITION OF taskevents.analytics_events FOR VALUES FROM (%L) TO (%L)',
                   taskevents._analytics_partition_name(d), d::timestamp AT TIME ZONE 'UTC',
                   (d + 1)::timestamp AT TIME ZONE 'UTC');
END;
$$;
-- the day holding (now - retention) still has younger events; the day
-- before it does not
SELECT analytics_make_day(((now() - interval '90 days') AT TIME ZONE 'UTC')::date - 1),
       analytics_make_day(((now() - interval '90 days') AT TIME ZONE 'UTC')::date);
INSERT INTO taskevents.analytics_events (event_time, topic)
VALUES (now() - interval '90 days' - interval '1 day', 'tasks'), (now() - interval '90 days' + interval '1 minute', 'tasks');
-- events of days without a partition land in the default partition
INSERT INTO taskevents.analytics_events (event_time, topic) VALUES ('2020-06-01', 'tasks');
SELECT tableoid::regclass = 'taskevents.analytics_events_default'::regclass AS in_default, count(*)
  FROM taskevents.analytics_events WHERE event_time < now() - interval '80 days' GROUP BY 1 ORDER BY 1;

SELECT taskevents.maintain_analytics();
SELECT to_regclass('taskevents.' || taskevents._analytics_partition_name(((now() - interval '90 days') AT TIME ZONE 'UTC')::date - 1)) IS NOT NULL AS older_day_kept,
       to_regclass('taskevents.' || taskevents._analytics_partition_name(((now() - interval '90 days') AT TIME ZONE 'UTC')::date)) IS NOT NULL AS boundary_day_kept,
       (SELECT count(*) FROM taskevents.analytics_events_default) AS default_rows;

-- the default partition is kept while it holds anything younger
INSERT INTO taskevents.analytics_events (event_time, topic) VALUES ('2020-06-01', 'tasks'), (now() + interval '10 days', 'tasks');
SELECT taskevents.maintain_analytics();
SELECT count(*) AS default_rows FROM taskevents.analytics_events_default;
DELETE FROM taskevents.analytics_events_default;

-- a shorter retention drops more days; turned off, nothing new is created
-- or recorded
UPDATE taskevents.analytics_settings SET retention = '1 day', enabled = false;
SELECT taskevents.maintain_analytics();
SELECT to_regclass('taskevents.' || taskevents._analytics_partition_name(((now() - interval '90 days') AT TIME ZONE 'UTC')::date)) IS NOT NULL AS boundary_day_kept,
       to_regclass('taskevents.' || taskevents._analytics_partition_name((now() AT TIME ZONE 'UTC')::date)) IS NOT NULL AS today_kept;
SELECT try($$UPDATE taskevents.analytics_settings SET retention = '1 hour'$$);

-------------------------------------------------------------------------------
-- Privileges: a reporting role reads the views after grant_analytics()
-------------------------------------------------------------------------------

CREATE ROLE regress_analyst;
SET ROLE regress_analyst;
SELECT try('SELECT * FROM taskevents.analytics_events_per_day');
RESET ROLE;
SELECT taskevents.grant_analytics('regress_analyst');
SET ROLE regress_analyst;
SELECT try('SELECT * FROM taskevents.analytics_events_per_day'),
       try('SELECT * FROM taskevents.analytics_time_to_complete'),
       try('SELECT * FROM taskevents.analytics_events');
SELECT try('SELECT * FROM taskevents.analytics_settings');
SELECT try($$UPDATE taskevents.analytics_settings SET enabled = true$$);
SELECT try($$SELECT taskevents._capture_analytics('taskevents.outbox_0')$$);
SELECT try('SELECT taskevents.maintain_analytics()');
SELECT try('TRUNCATE taskevents.analytics_events');
RESET ROLE;

-- leave analytics as installed: off, nothing recorded
DROP OWNED BY regress_analyst;
DROP ROLE regress_analyst;
INSERT INTO taskevents.analytics_settings DEFAULT VALUES;
SELECT enabled, retention, keep_payload FROM taskevents.analytics_settings;
TRUNCATE taskevents.analytics_events;
SELECT taskevents.detach('analytics_tasks', force => true);
DROP TABLE analytics_tasks, analytics_scratch;
DROP FUNCTION analytics_make_day(date);
