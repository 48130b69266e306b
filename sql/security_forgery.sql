-- Nobody but the extension writes the extension's own event types, and
-- nobody but the relay writes dead-letter topics; the relay's protocol
-- accepts only positions that name a real batch, so no role can make
-- undelivered events look delivered (docs/SECURITY.md).
\set VERBOSITY terse
SET client_min_messages = warning;
SET TimeZone = 'UTC';

CREATE ROLE regress_publisher;
CREATE ROLE regress_relay;
GRANT EXECUTE ON FUNCTION taskevents.publish(text, text, jsonb, text, text) TO regress_publisher;
SELECT taskevents.grant_relay('regress_relay');

-- publish() with the README's grant: custom types work, also on the tasks
-- topic; the extension's own types and the dead-letter topics do not
SELECT ev_mark() AS mark \gset
SET ROLE regress_publisher;
SELECT try($$SELECT taskevents.publish('tasks', 'com.example.task.archived', '{"id": 1}', 'alice')$$);
SELECT try($$SELECT taskevents.publish('tasks', 'task.deleted', '{"id": 1}', 'alice')$$);
SELECT try($$SELECT taskevents.publish('tasks', 'Task.Completed', '{"id": 1}', 'alice')$$);
SELECT try($$SELECT taskevents.publish('reminders', 'reminder.triggered', '{}', 'alice')$$);
SELECT try($$SELECT taskevents.publish('notes', 'REMINDER.scheduled', '{}', 'alice')$$);
SELECT try($$SELECT taskevents.publish('tasks-dlq', 'com.example.x', '{}', 'alice')$$);
SELECT try($$SELECT taskevents.publish('reminders-DLQ', 'com.example.x', '{}', 'alice')$$);
RESET ROLE;
-- the superuser is refused the same way: publish() is not the way to write them
SELECT try($$SELECT taskevents.publish('tasks', 'task.created', '{}', 'alice')$$);
SELECT topic, event->>'type' AS type, event->>'source' AS source FROM ev_since(:mark);

-- attach() refuses a dead-letter topic too
SELECT make_tasks('forge_tasks');
SELECT try($$SELECT taskevents.attach('forge_tasks', topic => 'tasks-dlq')$$);

-- relay_ack() accepts only a tick that exists
SELECT taskevents.attach('forge_tasks');
INSERT INTO forge_tasks (id, user_id, title) VALUES (1, 'alice', 'pending');
SET ROLE regress_relay;
SELECT taskevents.relay_lease('forge', 'relay-1', 0) AS epoch;
SELECT taskevents.relay_tick('forge', 1) AS tick;
SELECT try($$SELECT taskevents.relay_ack('forge', 1, 1000000, 0, true)$$);
SELECT try($$SELECT taskevents.relay_ack('forge', 1, NULL, 0, true)$$);
SELECT try($$SELECT taskevents.relay_ack('forge', 2, 1, 0, true)$$);
RESET ROLE;
SELECT count(*) > 0 AS still_pending FROM taskevents.pending_events;

-- a position whose tick is missing (forced in behind the functions' back)
-- delivers nothing: the events stay pending, maintain() keeps them and the
-- dump filter keeps them
INSERT INTO taskevents.relay_acks (consumer, epoch, tick_id, cursor_id, batch_done, slot)
VALUES ('forge', 1, 1000000, 0, true, taskevents._current_slot());
SELECT count(*) > 0 AS still_pending FROM taskevents.pending_events;
SELECT bool_and(NOT taskevents._is_delivered(o.txid)) AS dump_keeps_them FROM taskevents.outbox o;
SELECT pending > 0 AS backlog_counts_them FROM taskevents.relay_backlog('forge');
DELETE FROM taskevents.relay_acks WHERE consumer = 'forge';
DELETE FROM taskevents.relay_ticks WHERE consumer = 'forge';
DELETE FROM taskevents.relay_consumers WHERE consumer = 'forge';

SELECT taskevents.detach('forge_tasks', force => true);
DROP TABLE forge_tasks;
REVOKE EXECUTE ON FUNCTION taskevents.publish(text, text, jsonb, text, text) FROM regress_publisher;
DROP OWNED BY regress_relay;
DROP ROLE regress_publisher, regress_relay;
