-- Process-once inbox: process_once() and receive() semantics, the
-- consumer's transaction, retention and its edge, and a consumer role
-- with nothing but grant_consumer().
\set VERBOSITY terse
SET client_min_messages = warning;
SET TimeZone = 'UTC';

-------------------------------------------------------------------------------
-- process_once(): true the first time, false after
-------------------------------------------------------------------------------

SELECT taskevents.process_once('/inbox/test', 'ev-1') AS first,
       taskevents.process_once('/inbox/test', 'ev-1') AS again,
       taskevents.process_once('/inbox/other', 'ev-1') AS other_source,
       taskevents.process_once('/inbox/test', 'ev-2') AS other_id;

-- bad arguments are errors, never a silent NULL or false
SELECT try($$SELECT taskevents.process_once(NULL, 'ev-1')$$);
SELECT try($$SELECT taskevents.process_once('/inbox/test', NULL)$$);
SELECT try($$SELECT taskevents.process_once('', 'ev-1')$$);
SELECT try($$SELECT taskevents.process_once('/inbox/test', '')$$);

-- stored in today's and yesterday's slot (a delivery on the other side of
-- midnight meets the entry on the primary key)
SELECT count(*) AS rows,
       count(*) FILTER (WHERE slot = taskevents._inbox_slot(current_date)) AS today,
       count(*) FILTER (WHERE slot = taskevents._inbox_slot(current_date - 1)) AS yesterday
  FROM taskevents.inbox WHERE source = '/inbox/test' AND id = 'ev-1';

-- an open consumer transaction locks only the slots of the days within the
-- retention (today back to 7 days ago), so prune_inbox() can truncate the
-- others meanwhile
BEGIN;
SELECT taskevents.process_once('/inbox/test', 'ev-locks') AS first;
SELECT count(*) AS slots_locked,
       bool_and(c.relname IN (SELECT 'inbox_' || s FROM unnest(taskevents._inbox_slots(current_date - 7, current_date)) s)) AS all_within_retention
  FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
 WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND c.relname ~ '^inbox_[0-9]+$';
COMMIT;

-------------------------------------------------------------------------------
-- The mark commits or rolls back with the consumer's transaction
-------------------------------------------------------------------------------

BEGIN;
SELECT taskevents.process_once('/inbox/test', 'ev-rollback') AS first_try;
ROLLBACK;
SELECT taskevents.process_once('/inbox/test', 'ev-rollback') AS after_rollback;

BEGIN;
SAVEPOINT handler;
SELECT taskevents.process_once('/inbox/test', 'ev-savepoint') AS in_savepoint;
ROLLBACK TO SAVEPOINT handler;
SELECT taskevents.process_once('/inbox/test', 'ev-savepoint') AS after_rollback_to_savepoint;
COMMIT;
SELECT taskevents.process_once('/inbox/test', 'ev-savepoint') AS after_commit;

-------------------------------------------------------------------------------
-- receive(): a valid CloudEvent goes through process_once(); an invalid one
-- is refused with 22023 naming the attribute
-------------------------------------------------------------------------------

SELECT taskevents.receive('{"specversion": "1.0", "id": "r-1", "source": "/inbox/test", "type": "task.created"}') AS first,
       taskevents.receive('{"specversion": "1.0", "id": "r-1", "source": "/inbox/test", "type": "task.created"}') AS again,
       taskevents.process_once('/inbox/test', 'r-1') AS same_pair;

SELECT e AS event, try(format('SELECT taskevents.receive(%L)', e)) AS outcome
  FROM unnest(ARRAY[
    '[1, 2]',
    '{"id": "x", "source": "/s", "type": "t"}',
    '{"specversion": "0.3", "id": "x", "source": "/s", "type": "t"}',
    '{"specversion": 1.0, "id": "x", "source": "/s", "type": "t"}',
    '{"specversion": "1.0", "source": "/s", "type": "t"}',
    '{"specversion": "1.0", "id": "", "source": "/s", "type": "t"}',
    '{"specversion": "1.0", "id": 42, "source": "/s", "type": "t"}',
    '{"specversion": "1.0", "id": "x", "type": "t"}',
    '{"specversion": "1.0", "id": "x", "source": null, "type": "t"}',
    '{"specversion": "1.0", "id": "x", "source": "/s"}',
    '{"specversion": "1.0", "id": "x", "source": "/s", "type": ""}']) e;
SELECT try($$SELECT taskevents.receive(NULL)$$);

-------------------------------------------------------------------------------
-- A subscriber handler in SQL (the example of docs/consumers.md): the
-- notification and the "processed" mark commit together, a redelivery
-- changes nothing.
-------------------------------------------------------------------------------

CREATE TABLE inbox_notifications (
    user_id    text NOT NULL,
    task_id    text NOT NULL,
    message    text NOT NULL,
    event_id   text NOT NULL
);

CREATE FUNCTION inbox_handle_task_event(event jsonb) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT taskevents.receive(event) THEN
        RETURN 'duplicate, skipped';
    END IF;
    IF event->>'type' = 'task.completed' THEN
        INSERT INTO inbox_notifications (user_id, task_id, message, event_id)
        VALUES (event->>'partitionkey', event->>'subject',
                format('Well done: "%s" is complete.', event->'data'->>'title'), event->>'id');
    END IF;
    RETURN 'applied';
END;
$$;

SELECT inbox_handle_task_event(e) AS delivery
  FROM (VALUES (1), (2), (3)) n(i),
       (SELECT '{"specversion": "1.0", "id": "0193a7c0-0000-7000-8000-000000000001",
                 "source": "/pg_taskevents/app/public/tasks", "type": "task.completed",
                 "subject": "42", "partitionkey": "alice",
                 "data": {"id": 42, "user_id": "alice", "title": "Write the report", "completed": true}}'::jsonb) ev(e)
 ORDER BY i;
SELECT * FROM inbox_notifications;

-- a handler that fails after the mark: nothing of it commits, and the
-- redelivery is applied
BEGIN;
SAVEPOINT delivery;
SELECT inbox_handle_task_event('{"specversion": "1.0", "id": "ev-fails-once", "source": "/inbox/test",
                                 "type": "task.completed", "partitionkey": "bob", "subject": "7",
                                 "data": {"title": "Flaky"}}') AS delivery;
SELECT 1 / 0;
ROLLBACK TO SAVEPOINT delivery;
SELECT inbox_handle_task_event('{"specversion": "1.0", "id": "ev-fails-once", "source": "/inbox/test",
                                 "type": "task.completed", "partitionkey": "bob", "subject": "7",
                                 "data": {"title": "Flaky"}}') AS redelivery;
COMMIT;
SELECT user_id, task_id, message FROM inbox_notifications ORDER BY user_id;

-------------------------------------------------------------------------------
-- Retention: prune_inbox() truncates whole day slots whose entries are all
-- older than the retention; an entry just inside the window still blocks a
-- duplicate.
-------------------------------------------------------------------------------

SELECT retention FROM taskevents.inbox_settings;
SELECT try($$UPDATE taskevents.inbox_settings SET retention = '14 days'$$);
SELECT try($$UPDATE taskevents.inbox_settings SET retention = '12 hours'$$);
SELECT try($$SELECT taskevents.prune_inbox('30 days')$$);

-- entries first seen at a given time, as process_once() would have stored
-- them then
CREATE FUNCTION inbox_put(src text, ev text, at timestamptz) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO taskevents.inbox (slot, source, id, seen_at)
    VALUES (taskevents._inbox_slot((at AT TIME ZONE 'UTC')::date), src, ev, at),
           (taskevents._inbox_slot((at AT TIME ZONE 'UTC')::date - 1), src, ev, at)
$$;
SELECT inbox_put('/inbox/retention', 'inside', now() - interval '7 days' + interval '1 minute');
SELECT inbox_put('/inbox/retention', 'outside', now() - interval '8 days' - interval '1 minute');

SELECT id, count(*) > 0 AS stored FROM taskevents.inbox WHERE source = '/inbox/retention' GROUP BY id ORDER BY id;
SELECT taskevents.prune_inbox() >= 1 AS pruned;
SELECT id, count(*) > 0 AS stored FROM taskevents.inbox WHERE source = '/inbox/retention' GROUP BY id ORDER BY id;
SELECT taskevents.process_once('/inbox/retention', 'inside') AS inside_window,
       taskevents.process_once('/inbox/retention', 'outside') AS outside_window;
-- nothing left to prune; today's entries are untouched
SELECT taskevents.prune_inbox() AS pruned_again;
SELECT taskevents.process_once('/inbox/test', 'ev-1') AS today_entry;

-- a shorter retention: the 7-day-old entry goes (duplicates that old would
-- pass again), yesterday's stays
SELECT inbox_put('/inbox/retention', 'yesterday', now() - interval '1 day');
SELECT taskevents.prune_inbox('2 days') >= 1 AS pruned;
SELECT i AS id, EXISTS (SELECT 1 FROM taskevents.inbox WHERE source = '/inbox/retention' AND id = i) AS stored
  FROM unnest(ARRAY['inside', 'yesterday']) i;
SELECT taskevents.process_once('/inbox/retention', 'yesterday') AS yesterday_entry;

-- the retention setting drives process_once() and prune_inbox()
UPDATE taskevents.inbox_settings SET retention = '10 days';
SELECT inbox_put('/inbox/retention', 'nine-days', now() - interval '9 days');
SELECT taskevents.prune_inbox() AS pruned,
       taskevents.process_once('/inbox/retention', 'nine-days') AS nine_days_old;
-- an INSERT replaces the one row (how pg_dump restores it)
INSERT INTO taskevents.inbox_settings (retention) VALUES ('7 days');
SELECT * FROM taskevents.inbox_settings;

-------------------------------------------------------------------------------
-- Privileges: a consumer role needs grant_consumer() and nothing else
-------------------------------------------------------------------------------

CREATE ROLE regress_consumer;
CREATE ROLE regress_stranger;
SET ROLE regress_stranger;
SELECT try($$SELECT taskevents.process_once('/inbox/test', 'by-stranger')$$);
RESET ROLE;

SELECT taskevents.grant_consumer('regress_consumer');
SET ROLE regress_consumer;
SELECT taskevents.process_once('/inbox/test', 'by-consumer') AS first,
       taskevents.process_once('/inbox/test', 'by-consumer') AS again,
       taskevents.receive('{"specversion": "1.0", "id": "by-consumer-2", "source": "/inbox/test", "type": "t"}') AS received;
SELECT try('SELECT * FROM taskevents.inbox');
SELECT try($$INSERT INTO taskevents.inbox (slot, source, id) VALUES (0, 'x', 'y')$$);
SELECT try('TRUNCATE taskevents.inbox_0');
SELECT try('SELECT taskevents.prune_inbox()');
SELECT try($$UPDATE taskevents.inbox_settings SET retention = '1 day'$$);
RESET ROLE;

-- a hostile search_path changes nothing
CREATE SCHEMA inbox_evil;
CREATE TABLE inbox_evil.inbox (LIKE taskevents.inbox);
GRANT USAGE ON SCHEMA inbox_evil TO regress_consumer;
GRANT ALL ON inbox_evil.inbox TO regress_consumer;
SET ROLE regress_consumer;
SET search_path = inbox_evil, public;
SELECT taskevents.process_once('/inbox/test', 'by-consumer') AS again_with_evil_path;
RESET search_path;
RESET ROLE;
SELECT count(*) AS evil_rows FROM inbox_evil.inbox;

DROP SCHEMA inbox_evil CASCADE;
DROP OWNED BY regress_consumer;
DROP ROLE regress_consumer;
DROP ROLE regress_stranger;
DROP FUNCTION inbox_put(text, text, timestamptz);
