-- An event exists exactly when its transaction commits; every row of a
-- multi-row statement, INSERT ... SELECT and COPY gets its own event.
\set VERBOSITY terse
SET client_min_messages = warning;
SET TimeZone = 'UTC';
SELECT make_tasks('tx_tasks');
SELECT taskevents.attach('tx_tasks');

-- rollback leaves nothing
SELECT ev_mark() AS mark \gset
BEGIN;
INSERT INTO tx_tasks (id, user_id, title) VALUES (1, 'alice', 'rolled back');
ROLLBACK;
SELECT count(*) AS events_after_rollback FROM ev_since(:mark);

-- ROLLBACK TO SAVEPOINT removes exactly the events written after it
BEGIN;
INSERT INTO tx_tasks (id, user_id, title) VALUES (1, 'alice', 'kept');
SAVEPOINT s1;
INSERT INTO tx_tasks (id, user_id, title) VALUES (2, 'alice', 'undone');
UPDATE tx_tasks SET title = 'kept, then undone' WHERE id = 1;
ROLLBACK TO SAVEPOINT s1;
SAVEPOINT s2;
UPDATE tx_tasks SET title = 'kept too' WHERE id = 1;
RELEASE SAVEPOINT s2;
COMMIT;
SELECT event->>'type' AS type, event->>'subject' AS subject, event->'data'->>'title' AS title
  FROM ev_since(:mark);

-- an error inside a savepoint (here a NULL user id) does not lose the
-- transaction's other events
SELECT ev_mark() AS mark \gset
BEGIN;
INSERT INTO tx_tasks (id, user_id, title) VALUES (3, 'bob', 'before error');
SAVEPOINT s;
INSERT INTO tx_tasks (id, user_id, title) VALUES (4, NULL, 'fails');
ROLLBACK TO SAVEPOINT s;
INSERT INTO tx_tasks (id, user_id, title) VALUES (5, 'bob', 'after error');
COMMIT;
SELECT event->>'subject' AS subject FROM ev_since(:mark);

-- all events of one transaction share its txid; ids follow statement order
SELECT count(DISTINCT o.txid) AS transactions FROM taskevents.outbox o WHERE o.id > :mark;

-- multi-row VALUES, INSERT ... SELECT, multi-row UPDATE and DELETE
SELECT ev_mark() AS mark \gset
INSERT INTO tx_tasks (id, user_id, title) VALUES (10, 'u1', 'a'), (11, 'u2', 'b'), (12, 'u1', 'c');
INSERT INTO tx_tasks (id, user_id, title) SELECT 20 + g, 'u' || g, 'gen ' || g FROM generate_series(1, 3) g;
UPDATE tx_tasks SET priority = 'high' WHERE id >= 20;
DELETE FROM tx_tasks WHERE id IN (10, 11);
SELECT event->>'type' AS type, event->>'subject' AS subject, partition_key
  FROM ev_since(:mark);

-- COPY
SELECT ev_mark() AS mark \gset
COPY tx_tasks (id, user_id, title, tags) FROM stdin;
30	copy-user	first copied	{a,b}
31	copy-user	second copied	{}
32	other	third copied	\N
\.
SELECT event->>'type' AS type, event->>'subject' AS subject, partition_key,
       event->'data'->'tags' AS tags
  FROM ev_since(:mark);

-- a statement that fails half way leaves no event of its earlier rows
SELECT ev_mark() AS mark \gset
INSERT INTO tx_tasks (id, user_id, title) VALUES (40, 'z', 'ok'), (41, NULL, 'bad');
SELECT count(*) AS events_after_failed_statement FROM ev_since(:mark);

-- ON CONFLICT DO UPDATE: an update event; DO NOTHING: none
SELECT ev_mark() AS mark \gset
INSERT INTO tx_tasks (id, user_id, title) VALUES (30, 'copy-user', 'upserted')
    ON CONFLICT (id) DO UPDATE SET title = excluded.title;
INSERT INTO tx_tasks (id, user_id, title) VALUES (30, 'copy-user', 'ignored')
    ON CONFLICT (id) DO NOTHING;
SELECT event->>'type' AS type, event->'data'->>'title' AS title FROM ev_since(:mark);

-- two-phase commit: the event appears only with COMMIT PREPARED
SELECT ev_mark() AS mark \gset
BEGIN;
INSERT INTO tx_tasks (id, user_id, title) VALUES (50, 'p', 'prepared');
PREPARE TRANSACTION 'te_2pc';
SELECT count(*) AS visible_before_commit FROM ev_since(:mark);
COMMIT PREPARED 'te_2pc';
SELECT event->>'subject' AS subject FROM ev_since(:mark);
