-- publish(): one custom event in the caller's transaction.
\set VERBOSITY terse
SET client_min_messages = warning;
SET TimeZone = 'UTC';

SELECT ev_mark() AS mark \gset
SELECT taskevents.publish('audit', 'com.example.audit.login', '{"ip": "127.0.0.1"}', 'alice') IS NOT NULL AS published;
SELECT taskevents.publish('audit', 'com.example.audit.note', '"just a string"', NULL, 'subject-1') IS NOT NULL AS published;
SELECT taskevents.publish('audit', 'com.example.audit.empty', NULL, 'bob') IS NOT NULL AS published;
SELECT topic, partition_key, jsonb_pretty(event) FROM ev_since(:mark);

-- the returned id is the event's id
SELECT taskevents.publish('audit', 'x.y', '{}', 'carol') AS id \gset
SELECT event->>'id' = :'id' AS id_matches FROM taskevents.outbox_events WHERE id = (SELECT max(id) FROM taskevents.outbox_events);

-- rolled back: nothing
SELECT ev_mark() AS mark \gset
BEGIN;
SELECT taskevents.publish('audit', 'x.y', '{}', 'carol') IS NOT NULL AS published;
ROLLBACK;
SELECT count(*) AS events FROM ev_since(:mark);

-- bad input
SELECT try($$SELECT taskevents.publish(NULL, 'x.y', '{}', 'k')$$);
SELECT try($$SELECT taskevents.publish('', 'x.y', '{}', 'k')$$);
SELECT try($$SELECT taskevents.publish('audit', NULL, '{}', 'k')$$);
SELECT try($$SELECT taskevents.publish('audit', '', '{}', 'k')$$);
SELECT try($$SELECT taskevents.publish('bad/topic', 'x.y', '{}', 'k')$$);
SELECT try($$SELECT taskevents.publish('.', 'x.y', '{}', 'k')$$);
SELECT try(format($$SELECT taskevents.publish(%L, 'x.y', '{}', 'k')$$, repeat('a', 246)));
SELECT try(format($$SELECT taskevents.publish(%L, 'x.y', '{}', 'k')$$, repeat('a', 245)));
SELECT try($$SELECT taskevents.publish('audit', 'x.y', '{}', '')$$);
SELECT try($$SELECT taskevents.publish('tâches', 'x.y', '{}', 'k')$$);
