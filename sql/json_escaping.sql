-- Every string in an event is escaped by the extension's EscapeJson()
-- (extension/util.c), which must give byte for byte what PostgreSQL's own
-- escape_json() gives, that is to_json(text)::text: on the write path
-- (publish(), a task row's values), on the read path (_event_json(): the
-- attributes, the envelope's source, the derived subject and key).  The
-- strings: every control character alone and between other bytes, quotes
-- and backslashes, multibyte UTF-8, long runs with and without escapes.
\set VERBOSITY terse
SET client_min_messages = warning;
SET TimeZone = 'UTC';

CREATE TABLE esc_strings (n integer PRIMARY KEY, s text NOT NULL);
INSERT INTO esc_strings
SELECT c, chr(c) FROM generate_series(1, 31) c
UNION ALL
SELECT 100 + c, 'a' || chr(c) || 'bc' || chr(c) || chr(c) || 'd' FROM generate_series(1, 31) c
UNION ALL
SELECT 200, string_agg(chr(c), '' ORDER BY c) FROM generate_series(1, 127) c
UNION ALL
VALUES (201, '"'), (202, '\'), (203, '\"\\"x'), (204, E'\\u0000 \\n \\t are not escapes'),
       (205, 'ü∑🙂 Größe ﬁ 中文'), (206, E'ü"\n🙂\\\t∑\x7f'), (207, ''),
       (208, repeat('abcdefghij', 1000)),
       (209, repeat('x', 5000) || E'\n' || repeat('y', 5000) || '"'),
       (210, repeat(E'\t', 300) || repeat(E'\x01', 300) || repeat('\', 300)),
       (211, repeat('🙂"', 2000)),
       (212, repeat('a', 3000) || chr(31) || repeat('ß', 3000) || chr(127));
SELECT count(*) AS strings, sum(length(s)) AS characters, sum(octet_length(s)) AS bytes FROM esc_strings;

-- The JSON text of member key of a rendered event, up to the member after
-- it, next: ,"next": cannot occur inside a JSON string (its quotes are
-- escaped), so the text between the two is the value, as rendered.
CREATE FUNCTION esc_member(event text, key text, next text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT split_part(split_part(event, ',"' || key || '":', 2), ',"' || next || '":', 1)
$$;

-- publish(): type, subject and partition key, escaped as the event is
-- written
SELECT ev_mark() AS mark \gset
SELECT count(taskevents.publish('esc', 'com.example.' || s, '{}', 'k' || s, s)) AS published
  FROM esc_strings;
SELECT count(*) AS events,
       array_agg(e.n) FILTER (WHERE esc_member(o.event::text, 'type', 'subject')
                                    IS DISTINCT FROM to_json('com.example.' || e.s)::text) AS type_differs,
       array_agg(e.n) FILTER (WHERE esc_member(o.event::text, 'subject', 'time')
                                    IS DISTINCT FROM to_json(e.s)::text) AS subject_differs,
       array_agg(e.n) FILTER (WHERE esc_member(o.event::text, 'partitionkey', 'topic')
                                    IS DISTINCT FROM to_json('k' || e.s)::text) AS key_differs
  FROM taskevents.outbox_events o JOIN esc_strings e ON o.partition_key = 'k' || e.s
 WHERE o.id > :mark;

-- a task row: its values (the title), its id and user id (the subject and
-- partition key, derived from the row when it is read) and the envelope's
-- source, against row_to_json() of the row
CREATE TABLE esc_tasks (id text NOT NULL, user_id text NOT NULL, completed boolean NOT NULL DEFAULT false,
                        title text);
SELECT taskevents.attach('esc_tasks', topic => 'esc', source => E'/src "a" \\ \t ü\x01',
                         due_date_column => NULL, is_recurring_column => NULL,
                         recurring_interval_column => NULL);
SELECT ev_mark() AS mark \gset
INSERT INTO esc_tasks (id, user_id, title) SELECT n || ':' || s, s, s FROM esc_strings;
SELECT count(*) AS events,
       array_agg(t.title_n) FILTER (WHERE (o.event->'data')::text
                                          IS DISTINCT FROM row_to_json(t.t)::text) AS data_differs,
       array_agg(t.title_n) FILTER (WHERE esc_member(o.event::text, 'subject', 'time')
                                          IS DISTINCT FROM to_json(t.id)::text) AS subject_differs,
       array_agg(t.title_n) FILTER (WHERE esc_member(o.event::text, 'partitionkey', 'topic')
                                          IS DISTINCT FROM to_json(t.user_id)::text) AS key_differs,
       array_agg(t.title_n) FILTER (WHERE esc_member(o.event::text, 'source', 'type')
                                          IS DISTINCT FROM to_json(E'/src "a" \\ \t ü\x01'::text)::text)
           AS source_differs
  FROM taskevents.outbox_events o
  JOIN (SELECT k.id, k.user_id, split_part(k.id, ':', 1)::integer AS title_n, k AS t FROM esc_tasks k) t
    ON o.event->>'subject' = t.id
 WHERE o.id > :mark;
-- the stored values left out the derived id and user id
SELECT count(*) AS rows_with_names_left_out
  FROM taskevents.outbox o JOIN taskevents.envelopes v ON v.envelope_id = o.envelope
 CROSS JOIN LATERAL taskevents._outbox_unpack(o.id, o.event_id, o.type, o.subject,
                                             o.partition_key, o.data, o.earlier) e
 WHERE e.id > :mark AND v.columns IS NOT NULL AND v.subject_at = 1 AND v.key_at = 2;

-- _event_json() with the table's whole-row envelope: every attribute the
-- reader escapes (type after the envelope's prefix, subject, partition key,
-- topic, traceparent)
SELECT v.envelope_id AS whole_envelope FROM taskevents.envelopes v
 WHERE v.source = E'/src "a" \\ \t ü\x01' AND v.type_prefix = 'task.' AND v.columns IS NULL \gset
SELECT count(*) AS events,
       array_agg(n) FILTER (WHERE esc_member(ev, 'type', 'subject') IS DISTINCT FROM to_json('task.' || s)::text)
           AS type_differs,
       array_agg(n) FILTER (WHERE esc_member(ev, 'subject', 'time') IS DISTINCT FROM to_json(s)::text)
           AS subject_differs,
       array_agg(n) FILTER (WHERE esc_member(ev, 'partitionkey', 'topic') IS DISTINCT FROM to_json(s)::text)
           AS key_differs,
       array_agg(n) FILTER (WHERE esc_member(ev, 'topic', 'pubsubname') IS DISTINCT FROM to_json('t' || s)::text)
           AS topic_differs,
       array_agg(n) FILTER (WHERE esc_member(ev, 'traceparent', 'data') IS DISTINCT FROM to_json('tp' || s)::text)
           AS traceparent_differs
  FROM (SELECT e.n, e.s,
               taskevents._event_json('018f0000-0000-7000-8000-000000000000', :whole_envelope, e.s, e.s,
                                      '2026-01-01 00:00:00+00', 't' || e.s, e.s, 'tp' || e.s, '{}') AS ev
          FROM esc_strings e) r;

SELECT taskevents.detach('esc_tasks', force => true);
DROP TABLE esc_tasks, esc_strings;
DROP FUNCTION esc_member(text, text, text);
