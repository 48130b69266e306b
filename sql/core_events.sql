-- Every task event type and every CloudEvent attribute, shown inline.
\set VERBOSITY terse
SET client_min_messages = warning;
SET TimeZone = 'UTC';

SELECT make_tasks('ev_tasks');
ALTER TABLE ev_tasks ADD COLUMN notes text;
SELECT taskevents.attach('ev_tasks');

SELECT ev_mark() AS mark \gset

INSERT INTO ev_tasks (id, user_id, title, tags, due_date)
VALUES (1, 'alice', 'write report', '{work,q4}', '2025-12-01 09:00+00');
SELECT jsonb_pretty(event) FROM ev_since(:mark);

-- id is a UUIDv7, time is RFC 3339 and equals the statement time
SELECT event->>'id' ~ '^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$' AS id_is_uuidv7,
       (event->>'time')::timestamptz <= now() + interval '1 minute' AS time_parses,
       event->>'time' ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$' AS time_is_rfc3339
  FROM taskevents.outbox WHERE id > :mark;

SELECT ev_mark() AS mark \gset
-- an UPDATE that changes something
UPDATE ev_tasks SET title = 'write the report' WHERE id = 1;
-- a no-op UPDATE emits nothing, also with a value rewritten to itself
UPDATE ev_tasks SET title = title, tags = '{work,q4}' WHERE id = 1;
-- completion
UPDATE ev_tasks SET completed = true WHERE id = 1;
-- un-completing is an update
UPDATE ev_tasks SET completed = false WHERE id = 1;
-- completing again after un-completing is another completion
UPDATE ev_tasks SET completed = true WHERE id = 1;
DELETE FROM ev_tasks WHERE id = 1;
SELECT event->>'type' AS type, event->>'subject' AS subject, partition_key,
       event->'data'->>'title' AS title, event->'data'->>'completed' AS completed
  FROM ev_since(:mark);

-- the deleted event carries the old row
SELECT event->'data' AS deleted_row FROM ev_since(:mark) WHERE event->>'type' = 'task.deleted';

-- traceparent is carried when the session sets it, and validated
SELECT ev_mark() AS mark \gset
SET taskevents.traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
INSERT INTO ev_tasks (id, user_id, title) VALUES (2, 'bob', 'traced');
RESET taskevents.traceparent;
INSERT INTO ev_tasks (id, user_id, title) VALUES (3, 'bob', 'untraced');
SELECT event->>'subject' AS subject, event->>'traceparent' AS traceparent FROM ev_since(:mark);
SELECT try($$SET taskevents.traceparent = 'not-a-traceparent'$$);
SELECT try($$SET taskevents.traceparent = '00-00000000000000000000000000000000-00f067aa0ba902b7-01'$$);
SELECT try($$SET taskevents.traceparent = '00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01'$$);
SELECT try($$SET taskevents.traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra'$$);

-- NULL user id: refused, nothing written
SELECT ev_mark() AS mark \gset
SELECT try($$INSERT INTO ev_tasks (id, user_id, title) VALUES (4, NULL, 'orphan')$$);
SELECT count(*) AS events FROM ev_since(:mark);

-- an unknown extra column is carried along, a value of any type becomes JSON
ALTER TABLE ev_tasks ADD COLUMN estimate interval, ADD COLUMN meta jsonb;
INSERT INTO ev_tasks (id, user_id, title, estimate, meta, notes)
VALUES (5, 'carol', E'quotes " and \\ and \n newline', '2 hours', '{"a": [1, 2]}', 'ünïcødé');
SELECT event->'data' AS data FROM ev_since(:mark);

-- a dropped column disappears from data
ALTER TABLE ev_tasks DROP COLUMN notes;
SELECT ev_mark() AS mark \gset
UPDATE ev_tasks SET title = 'plain' WHERE id = 5;
SELECT event->'data' ? 'notes' AS has_notes, event->'data'->>'title' AS title FROM ev_since(:mark);

-- TRUNCATE is refused
SELECT try('TRUNCATE ev_tasks');
SELECT count(*) AS still_there FROM ev_tasks;

-- a uuid key and a bigint user id work as subject and partition key
CREATE TABLE ev_uuid (id uuid PRIMARY KEY, user_id bigint NOT NULL, title text,
                      due_date timestamptz, is_recurring boolean, recurring_interval text,
                      completed boolean);
SELECT taskevents.attach('ev_uuid');
SELECT ev_mark() AS mark \gset
INSERT INTO ev_uuid VALUES ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 42, 't', NULL, false, NULL, NULL);
-- completed NULL -> true is a completion
UPDATE ev_uuid SET completed = true;
SELECT event->>'type' AS type, event->>'subject' AS subject, partition_key FROM ev_since(:mark);

-- the outbox keeps the event as JSON text (type json), written once by the
-- trigger: attributes in a fixed order, data last, the row's columns in
-- table order; hostile strings are escaped, and the text is valid JSON
SELECT ev_mark() AS mark \gset
INSERT INTO ev_tasks (id, user_id, title, description, tags)
VALUES (7, 'mallory "quoted"', E'tab\there, newline\nthere, back\\slash', '{"json": "inside"}', '{"a\"b"}');
SELECT regexp_replace(regexp_replace(event::text,
         '"id":"[0-9a-f-]{36}"', '"id":"<uuid>"'), '"time":"[^"]+"', '"time":"<time>"', 'g') AS stored_text
  FROM taskevents.outbox WHERE id > :mark;
SELECT pg_typeof(event) AS column_type, event::jsonb->'data'->>'title' = E'tab\there, newline\nthere, back\\slash' AS title_roundtrips,
       event::jsonb->>'partitionkey' AS partitionkey
  FROM taskevents.outbox WHERE id > :mark;

-- a library that does not match the outbox's layout (a new .so before
-- ALTER EXTENSION UPDATE) refuses to write instead of writing a bad row
BEGIN;
ALTER TABLE taskevents.outbox ADD COLUMN extra integer;
SELECT try($$INSERT INTO ev_tasks (id, user_id, title) VALUES (8, 'layout', 'y')$$);
ROLLBACK;
INSERT INTO ev_tasks (id, user_id, title) VALUES (8, 'layout', 'fine again');
