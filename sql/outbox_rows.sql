-- The events of one statement share outbox rows (extension/outbox.c, "The
-- events of a statement"): the same events, ids and order as one row per
-- event, in far fewer rows, and every reader shows them one by one.
\set VERBOSITY terse
SET client_min_messages = warning;
SET TimeZone = 'UTC';
SELECT make_tasks('rows_bulk');
SELECT make_tasks('rows_single');
SELECT taskevents.attach('rows_bulk');
SELECT taskevents.attach('rows_single');

-- 300 rows in one statement, then the same 300 one statement each
SELECT ev_mark() AS mark \gset
INSERT INTO rows_bulk (id, user_id, title, tags)
SELECT g, 'u' || (g % 7), 'task ' || g, ARRAY['t' || g] FROM generate_series(1, 300) g;
SELECT ev_mark() AS mid \gset
DO $$
BEGIN
    FOR g IN 1..300 LOOP
        INSERT INTO rows_single (id, user_id, title, tags) VALUES (g, 'u' || (g % 7), 'task ' || g, ARRAY['t' || g]);
    END LOOP;
END;
$$;

-- the same events but for id, time and source (the table), in the same order
CREATE TEMP VIEW rows_pairs AS
SELECT b.id AS bulk_id, b.event::jsonb AS bulk, b.partition_key AS bulk_key,
       s.id AS single_id, s.event::jsonb AS single, s.partition_key AS single_key
  FROM (SELECT e.*, row_number() OVER (ORDER BY e.id) AS n FROM taskevents.outbox_events e
         WHERE e.id > :mark AND e.id <= :mid) b
  FULL JOIN (SELECT e.*, row_number() OVER (ORDER BY e.id) AS n FROM taskevents.outbox_events e
              WHERE e.id > :mid) s USING (n);
SELECT count(*) AS pairs,
       bool_and(bulk - 'id' - 'time' - 'source' = single - 'id' - 'time' - 'source') AS same_events,
       bool_and(bulk_key = single_key) AS same_keys,
       bool_and(bulk->>'subject' = (bulk->'data'->>'id')) AS subjects_in_order
  FROM rows_pairs;
SELECT jsonb_pretty(bulk - 'id' - 'time') AS event_150 FROM rows_pairs WHERE bulk->>'subject' = '150';

-- consecutive ids, a distinct UUIDv7 each, the statement's time
SELECT max(e.id) - min(e.id) + 1 = count(*) AS consecutive_ids,
       count(DISTINCT e.event->>'id') AS distinct_event_ids,
       bool_and(e.event->>'id' ~ '^[0-9a-f]{8}-[0-9a-f]{4}-7') AS uuidv7,
       count(DISTINCT e.event->>'time') AS times
  FROM taskevents.outbox_events e WHERE e.id > :mark AND e.id <= :mid;

-- stored in a few rows (a row takes up to about 7 kB of events), where
-- the statements of one row each took a row per event
SELECT count(*) BETWEEN 2 AND 15 AS few_rows,
       sum(1 + taskevents._outbox_earlier(o.earlier)) AS events_in_them,
       bool_and(o.earlier <> '') AS all_shared
  FROM taskevents.outbox o WHERE o.id > :mark AND o.id <= :mid;
-- filled up to the limit, and kept in the row as they are: not compressed
-- (nor moved to TOAST, which only a compressed or larger value would be)
SELECT max(octet_length(o.earlier)) BETWEEN 7000 AND 7700 AS rows_filled,
       bool_and(pg_column_compression(o.earlier) IS NULL) AS not_compressed,
       max(pg_column_size(o.*)) < 8160 AS within_a_page
  FROM taskevents.outbox o WHERE o.id > :mark AND o.id <= :mid;
SELECT count(*) AS rows_of_single_statements, bool_and(o.earlier = '') AS none_shared
  FROM taskevents.outbox o WHERE o.id > :mid;

-- UPDATE and DELETE of many rows, and a no-op UPDATE of some (no events)
SELECT ev_mark() AS mark \gset
UPDATE rows_bulk SET title = title || '!' WHERE id <= 200;
UPDATE rows_bulk SET title = title WHERE id > 200;
DELETE FROM rows_bulk WHERE id > 250;
SELECT event->>'type' AS type, count(*) AS events,
       min((event->>'subject')::int) AS first, max((event->>'subject')::int) AS last,
       bool_and(event->>'type' = 'task.deleted' OR event->'data'->>'title' LIKE '%!') AS new_titles
  FROM taskevents.outbox_events WHERE id > :mark GROUP BY 1 ORDER BY 1;
SELECT count(*) < 20 AS few_rows FROM taskevents.outbox o WHERE o.id > :mark;

-- A subtransaction that starts and fails while the statement's events are
-- still to be written (an AFTER trigger of the app, after taskevents_emit,
-- with an EXCEPTION block): none of them is lost.
CREATE FUNCTION rows_fragile() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        PERFORM 1 / (NEW.id % 2);   -- fails for even ids
    EXCEPTION WHEN division_by_zero THEN
        NULL;
    END;
    RETURN NULL;
END;
$$;
CREATE TRIGGER zz_fragile AFTER INSERT ON rows_bulk FOR EACH ROW EXECUTE FUNCTION rows_fragile();
SELECT ev_mark() AS mark \gset
INSERT INTO rows_bulk (id, user_id, title) SELECT 1000 + g, 'sub', 'sub ' || g FROM generate_series(1, 40) g;
SELECT count(*) AS events, max(id) - min(id) + 1 AS id_span,
       array_agg((event->>'subject')::int ORDER BY id) = array(SELECT 1000 + g FROM generate_series(1, 40) g) AS in_order
  FROM taskevents.outbox_events WHERE id > :mark;
DROP TRIGGER zz_fragile ON rows_bulk;

-- Events written inside a subtransaction go with it: rolled back, they
-- are gone; released, they stay; the statement's own stay either way.
CREATE FUNCTION rows_nested(n integer, fail boolean) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        INSERT INTO rows_single (id, user_id, title)
        SELECT 2000 + n * 10 + g, 'nested', 'nested ' || n FROM generate_series(1, 3) g;
        IF fail THEN
            RAISE EXCEPTION 'undo';
        END IF;
    EXCEPTION WHEN raise_exception THEN
        NULL;
    END;
END;
$$;
CREATE FUNCTION rows_calls_nested() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM rows_nested((NEW.id - 3000)::integer, NEW.id % 2 = 0);
    RETURN NULL;
END;
$$;
CREATE TRIGGER zz_nested AFTER INSERT ON rows_bulk FOR EACH ROW EXECUTE FUNCTION rows_calls_nested();
SELECT ev_mark() AS mark \gset
INSERT INTO rows_bulk (id, user_id, title) SELECT 3000 + g, 'outer', 'outer ' || g FROM generate_series(1, 4) g;
SELECT event->>'subject' AS subject, partition_key FROM ev_since(:mark);
DROP TRIGGER zz_nested ON rows_bulk;

-- the same in a transaction that rolls back to a savepoint between
-- statements, and one whose statement fails half way
SELECT ev_mark() AS mark \gset
BEGIN;
INSERT INTO rows_single (id, user_id, title) SELECT 4000 + g, 'sp', 'kept ' || g FROM generate_series(1, 5) g;
SAVEPOINT s;
INSERT INTO rows_single (id, user_id, title) SELECT 4100 + g, 'sp', 'undone ' || g FROM generate_series(1, 5) g;
ROLLBACK TO SAVEPOINT s;
INSERT INTO rows_single (id, user_id, title) SELECT 4200 + g, CASE WHEN g = 5 THEN NULL ELSE 'sp' END, 'fails'
  FROM generate_series(1, 5) g;
ROLLBACK TO SAVEPOINT s;
INSERT INTO rows_single (id, user_id, title) SELECT 4300 + g, 'sp', 'kept too ' || g FROM generate_series(1, 2) g;
COMMIT;
SELECT string_agg(event->>'subject', ' ' ORDER BY (event->>'subject')::int) AS subjects FROM ev_since(:mark);

-- a statement's events are in the outbox when it ends, seen by the next
-- statement of the transaction, and by none before it commits
SELECT ev_mark() AS mark \gset
BEGIN;
INSERT INTO rows_single (id, user_id, title) SELECT 5000 + g, 'vis', 'v' FROM generate_series(1, 10) g;
SELECT count(*) AS seen_in_own_transaction FROM taskevents.outbox_events WHERE id > :mark;
COMMIT;

-- a value all rows of a statement share is rendered once (rowjson.c keeps
-- the last date/time), in the session's time zone of the moment
SELECT ev_mark() AS mark \gset
INSERT INTO rows_single (id, user_id, title, due_date)
SELECT 7000 + g, 'tz', 'tz', '2020-03-01 12:00+00' FROM generate_series(1, 3) g;
SET TimeZone = 'Asia/Tokyo';
INSERT INTO rows_single (id, user_id, title, due_date)
SELECT 7100 + g, 'tz', 'tz', '2020-03-01 12:00+00' FROM generate_series(1, 3) g;
SET TimeZone = 'UTC';
SELECT event->'data'->>'due_date' AS due_date, count(*) FROM ev_since(:mark) GROUP BY 1 ORDER BY 1;

-- The relay's pages cut rows anywhere: pages of 7 over a batch of 300
-- bulk events return each exactly once, in order; pending_events and
-- relay_backlog() count events, also with an ack that ends inside a row.
SELECT ev_mark() AS mark \gset
DELETE FROM taskevents.relay_consumers;   -- the earlier files' consumers: pending_events is over all
DO $$ BEGIN
    PERFORM taskevents.relay_lease('rowpages', 'relay', 0);
    PERFORM taskevents.relay_tick('rowpages', 1);
END $$;
DO $$ BEGIN
    PERFORM taskevents.relay_ack('rowpages', 1, taskevents.relay_last_tick('rowpages'), 0, true);
END $$;
INSERT INTO rows_bulk (id, user_id, title) SELECT 6000 + g, 'page', 'page ' || g FROM generate_series(1, 300) g;
SELECT taskevents.relay_tick('rowpages', 1) IS NOT NULL AS new_batch;
SELECT pending AS backlog_before FROM taskevents.relay_backlog('rowpages');
CREATE TEMP TABLE rows_paged (n serial, id bigint, event text);
DO $$
DECLARE
    after bigint := 0;
    got integer;
BEGIN
    FOR page IN 1..100 LOOP     -- 43 pages; a page that does not advance must not loop forever
        INSERT INTO rows_paged (id, event)
        SELECT f.id, f.event FROM taskevents.relay_fetch('rowpages', taskevents.relay_last_tick('rowpages'), after, 7) f
         ORDER BY f.id;
        GET DIAGNOSTICS got = ROW_COUNT;
        EXIT WHEN got = 0;
        SELECT max(id) INTO after FROM rows_paged;
    END LOOP;
END $$;
SELECT count(*) AS paged, count(DISTINCT id) AS distinct_ids,
       bool_and(p.event::jsonb = e.event::jsonb) AS same_as_outbox_events,
       array_agg(p.id ORDER BY p.n) = array_agg(p.id ORDER BY p.id) AS in_id_order
  FROM rows_paged p JOIN taskevents.outbox_events e USING (id);
-- acked up to the 100th event, inside a row: pending starts right after it
SELECT p.id AS acked FROM rows_paged p ORDER BY p.id OFFSET 99 LIMIT 1 \gset
SELECT EXISTS (SELECT 1 FROM taskevents.outbox o
                WHERE o.id - taskevents._outbox_earlier(o.earlier) < :acked AND o.id > :acked) AS ack_inside_a_row;
SELECT taskevents.relay_ack('rowpages', 1, taskevents.relay_last_tick('rowpages'), :acked, false);
SELECT count(*) AS pending_after_ack_in_a_row,
       min(id) = (SELECT p.id FROM rows_paged p ORDER BY p.id OFFSET 100 LIMIT 1) AS starts_after_it
  FROM taskevents.pending_events;
SELECT pending AS backlog_after_ack_in_a_row FROM taskevents.relay_backlog('rowpages');
DELETE FROM taskevents.relay_consumers WHERE consumer = 'rowpages';

-- a malformed row: a clear error, not a wrong event
SELECT try($$SELECT * FROM taskevents._outbox_unpack(10, gen_random_uuid(), 'created', '1', 'u', '1', '\x0000000500'::bytea)$$);
SELECT try($$SELECT * FROM taskevents._outbox_unpack(10, gen_random_uuid(), 'created', '1', 'u', '1', '\x00'::bytea)$$);
SELECT taskevents._outbox_earlier('') AS none_earlier, taskevents._outbox_earlier(NULL) AS null_earlier;
