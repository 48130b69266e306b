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
  FROM taskevents.outbox_events WHERE id > :mark;

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
  FROM taskevents.outbox_events WHERE id > :mark;
SELECT pg_typeof(event) AS column_type, event::jsonb->'data'->>'title' = E'tab\there, newline\nthere, back\\slash' AS title_roundtrips,
       event::jsonb->>'partitionkey' AS partitionkey
  FROM taskevents.outbox_events WHERE id > :mark;

-- a library that does not match the outbox's layout (a new .so before
-- ALTER EXTENSION UPDATE) refuses to write instead of writing a bad row
BEGIN;
ALTER TABLE taskevents.outbox ADD COLUMN extra integer;
SELECT try($$INSERT INTO ev_tasks (id, user_id, title) VALUES (8, 'layout', 'y')$$);
ROLLBACK;
INSERT INTO ev_tasks (id, user_id, title) VALUES (8, 'layout', 'fine again');

-- The outbox keeps a row's values and the envelope its column names; what
-- a consumer gets as data is exactly row_to_json(row), for every kind of
-- column (each rendered by its json category, see extension/rowjson.c)
CREATE TYPE ev_mood AS ENUM ('ok', 'meh');
CREATE TYPE ev_pair AS (a integer, b text);
CREATE DOMAIN ev_positive AS integer CHECK (VALUE > 0);
CREATE TABLE ev_kinds (
    id bigint PRIMARY KEY, user_id text NOT NULL, completed boolean NOT NULL DEFAULT false,
    i2 smallint, i4 integer, n numeric, f4 real, f8 double precision, b boolean,
    t text, vc varchar(10), c3 char(3), u uuid, d date, ts timestamp, tstz timestamptz,
    tm time, tmtz timetz, iv interval, j json, jb jsonb, ta text[], i2d integer[],
    pair ev_pair, mood ev_mood, pos ev_positive, by bytea, ip inet, pt point, m money,
    "odd ""name""" text);
SELECT taskevents.attach('ev_kinds', due_date_column => NULL, is_recurring_column => NULL,
                         recurring_interval_column => NULL);
SELECT ev_mark() AS mark \gset
INSERT INTO ev_kinds VALUES
    (1, 'u', false, 1, -2, 3.14159265358979323846, 1.5, -0.0, true,
     E'quote " backslash \\ tab \t nl \n bell \x07 ∑ 🙂', 'vc', 'ab', '00000000-0000-0000-0000-000000000001',
     '2026-02-28', '2026-03-29 02:30', '2026-03-29 02:30+01', '23:59:59.999999', '10:00+05:30',
     '1 year 2 mons 3 days 04:05:06.7', '{ "a" : [1, 2],  "b":null }', '{"b": [true, {"c": "d"}], "a": 1}',
     ARRAY['x', NULL, 'y "z"'], ARRAY[[1, 2], [3, 4]], ROW(7, 'seven'), 'meh', 42, '\xdeadbeef',
     '192.168.0.1/24', '(1.5,2)', 12.34, 'odd'),
    (2, 'u', true, NULL, NULL, 'NaN', 'Infinity', '-Infinity', NULL, '', NULL, NULL, NULL,
     'infinity', '-infinity', 'infinity', NULL, NULL, NULL, 'null', '"just a string"', '{}', '{}',
     ROW(NULL, NULL), NULL, NULL, '', NULL, NULL, NULL, NULL),
    (3, 'u', false, 32767, 2147483647, 1e-30, 3.4e38, 1e308, false, 'x', 'y', 'z  ', NULL,
     '0001-01-01 BC', '294276-12-31 23:59:59', '1999-12-31 23:59:59.999999+14', '00:00', '00:00-12',
     '-178000000 years', '[]', '[]', ARRAY[]::text[], NULL, NULL, 'ok', 1, NULL, '::1', '(0,0)', -0.01, NULL);
-- each event's data against row_to_json() of the row as it is now (right
-- after the write)
CREATE FUNCTION ev_kinds_check(mark bigint)
RETURNS TABLE (type text, subject text, data_is_row_to_json boolean)
LANGUAGE sql AS $$
    SELECT o.event->>'type', o.event->>'subject', (o.event->'data')::text = row_to_json(k)::text
      FROM taskevents.outbox_events o
      JOIN ev_kinds k ON k.id::text = o.event->>'subject'
     WHERE o.id > mark AND o.topic = 'tasks' ORDER BY o.id
$$;
SELECT * FROM ev_kinds_check(:mark);
SELECT ev_mark() AS mark \gset
UPDATE ev_kinds SET t = t || '!' WHERE id = 1;
SELECT * FROM ev_kinds_check(:mark);
-- the stored rows hold the values alone, the envelope the names
SELECT o.envelope = e.envelope_id AS values_envelope, e.columns[1:3] AS first_columns,
       o.data NOT LIKE '%"user_id"%' AS names_not_stored
  FROM taskevents.outbox o JOIN taskevents.envelopes e ON e.envelope_id = o.envelope
 WHERE e.source LIKE '%/ev_kinds' AND e.columns IS NOT NULL ORDER BY o.id LIMIT 1;
-- after ALTER TABLE the events carry the new columns (a new envelope),
-- and the events written before render as they were written
SELECT ev_mark() AS mark \gset
CREATE TEMP TABLE ev_before AS
    SELECT o.id, o.event::text AS event FROM taskevents.outbox_events o WHERE o.event->>'source' LIKE '%/ev_kinds';
ALTER TABLE ev_kinds ADD COLUMN added text DEFAULT 'new', DROP COLUMN pt;
UPDATE ev_kinds SET t = 'after alter' WHERE id = 2;
SELECT *, (SELECT (o.event->'data')::jsonb ? 'added' AND NOT (o.event->'data')::jsonb ? 'pt'
             FROM taskevents.outbox_events o WHERE o.id > :mark AND o.topic = 'tasks') AS new_columns
  FROM ev_kinds_check(:mark);
SELECT bool_and(b.event = o.event::text) AS old_events_unchanged, count(*) AS old_events
  FROM ev_before b JOIN taskevents.outbox_events o USING (id);
SELECT count(DISTINCT columns) AS column_sets FROM taskevents.envelopes WHERE source LIKE '%/ev_kinds';

-- the subject and the partition key are stored once (the envelope says
-- where they go in data, and how they render): keys of other kinds
CREATE TABLE ev_uuid2 (user_id integer NOT NULL, completed boolean NOT NULL DEFAULT false,
                      id uuid PRIMARY KEY, note text);
CREATE TABLE ev_text (id text PRIMARY KEY, completed boolean NOT NULL DEFAULT false, user_id text NOT NULL);
CREATE TABLE ev_num (id numeric PRIMARY KEY, user_id numeric NOT NULL, completed boolean NOT NULL DEFAULT false);
SELECT taskevents.attach(t, due_date_column => NULL, is_recurring_column => NULL, recurring_interval_column => NULL)
  FROM unnest(ARRAY['ev_uuid2', 'ev_text', 'ev_num']::regclass[]) t;
SELECT ev_mark() AS mark \gset
INSERT INTO ev_uuid2 VALUES (-7, false, '00000000-0000-0000-0000-0000000000aa', 'n');
INSERT INTO ev_text VALUES (E'quote " back \\ 🙂', false, E'u\tv');
INSERT INTO ev_num VALUES ('NaN', 1e-3, false), (12.50, 'Infinity', true);
SELECT o.event->>'source' ~ '/ev_[a-z0-9]+$' AS ours, o.event->>'subject' AS subject,
       o.event->>'partitionkey' AS partitionkey,
       (o.event->'data')::text = CASE o.topic WHEN 'tasks' THEN
           coalesce((SELECT row_to_json(u)::text FROM ev_uuid2 u WHERE u.id::text = o.event->>'subject'),
                    (SELECT row_to_json(t)::text FROM ev_text t WHERE t.id = o.event->>'subject'),
                    (SELECT row_to_json(n)::text FROM ev_num n WHERE n.id::text = o.event->>'subject')) END
           AS data_is_row_to_json
  FROM taskevents.outbox_events o WHERE o.id > :mark ORDER BY o.id;
SELECT e.source ~ '/ev_[a-z0-9]+$' AS ours, e.columns, e.subject_at, e.subject_json, e.key_at, e.key_json
  FROM taskevents.envelopes e WHERE e.source ~ '/ev_(uuid2|text|num)$' AND e.columns IS NOT NULL ORDER BY e.envelope_id;
SELECT taskevents.detach(t, force => true) FROM unnest(ARRAY['ev_uuid2', 'ev_text', 'ev_num']::regclass[]) t;
DROP TABLE ev_uuid2, ev_text, ev_num;
SELECT taskevents.detach('ev_kinds', force => true);
DROP TABLE ev_kinds;
DROP FUNCTION ev_kinds_check(bigint);
DROP TYPE ev_pair, ev_mood;
DROP DOMAIN ev_positive;

-- An event with an envelope stores its topic as '' (the envelope has it);
-- one stored whole (publish()) keeps its own.  Views and the relay read it
-- through _event_topic(); a row without either is refused as corrupt.
CREATE TABLE ev_topic (id bigint PRIMARY KEY, user_id text NOT NULL, completed boolean NOT NULL DEFAULT false);
SELECT taskevents.attach('ev_topic', topic => 'ev-topic', due_date_column => NULL,
                         is_recurring_column => NULL, recurring_interval_column => NULL);
SELECT ev_mark() AS mark \gset
INSERT INTO ev_topic VALUES (1, 'ann');
SELECT taskevents.publish('audit', 'com.example.audit.login', '{}', 'ann') IS NOT NULL AS published;
SELECT o.topic AS stored, o.envelope IS NOT NULL AS has_envelope, v.topic AS shown,
       v.event->>'topic' AS in_event
  FROM taskevents.outbox o JOIN taskevents.outbox_events v USING (id)
 WHERE o.id > :mark ORDER BY o.id;
SELECT taskevents._event_topic(NULL, '');
SELECT taskevents.detach('ev_topic', force => true);
DROP TABLE ev_topic;
