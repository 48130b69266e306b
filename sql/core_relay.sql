-- The relay protocol in one session: leases and fencing, ticks, pages in
-- id order, acks, the backlog view, and truncation of delivered partitions.
\set VERBOSITY terse
SET client_min_messages = warning;
SET TimeZone = 'UTC';
SET taskevents.rotation_period = 86400;     -- one slot for the whole test
SELECT make_tasks('rp_tasks');
SELECT taskevents.attach('rp_tasks');
INSERT INTO rp_tasks (id, user_id, title) SELECT g, 'early', 'before the consumer' FROM generate_series(101, 105) g;

-- leases: first holder gets epoch 1, a second holder nothing, renewal keeps it
SELECT taskevents.relay_lease('rp', 'relay-a', 0) AS epoch_a;
SELECT taskevents.relay_lease('rp', 'relay-b', 0) AS epoch_b;
SELECT taskevents.relay_lease('rp', 'relay-a', 1) AS renewed;
SELECT try($$SELECT taskevents.relay_lease('', 'x', 0)$$);
SELECT try($$SELECT taskevents.relay_lease('rp', 'x', 0, '0 seconds')$$);

-- a new consumer starts before everything in the outbox
SELECT * FROM taskevents.relay_position('rp');
SELECT count(*) = (SELECT count(*) FROM taskevents.outbox_events) AS all_pending FROM taskevents.pending_events;

-- batch 1 is everything committed so far, read in pages in id order
SELECT taskevents.relay_tick('rp', 1) AS tick;
SELECT count(*) = (SELECT count(*) FROM taskevents.outbox_events) AS batch_is_everything
  FROM taskevents.relay_fetch('rp', 1, 0, 1000000);
SELECT bool_and(id > 0) AND count(*) = 2 AS first_page_of_two
  FROM taskevents.relay_fetch('rp', 1, 0, 2);
SELECT max(id) AS last FROM taskevents.outbox \gset
SELECT count(*) AS after_last FROM taskevents.relay_fetch('rp', 1, :last, 100);
SELECT try($$SELECT * FROM taskevents.relay_fetch('rp', 99, 0, 10)$$);
-- the relay's page (relay_fetch_page(), bytea chunks) holds exactly the
-- events consumers get; relay_fetch() reads it back
SELECT count(*) = (SELECT count(*) FROM taskevents.outbox_events)
       AND bool_and(f.event = e.event::text AND f.topic = e.topic
                    AND f.partition_key IS NOT DISTINCT FROM e.partition_key
                    AND f.created_at = e.created_at) AS page_is_the_events
  FROM taskevents.relay_fetch('rp', 1, 0, 1000000) f JOIN taskevents.outbox_events e USING (id);
SELECT count(*) AS empty_page_chunks FROM taskevents.relay_fetch_page('rp', 1, :last, 100);
-- bad arguments: a clear error, nothing read
SELECT try($$SELECT taskevents.relay_fetch_page(NULL, 1, 0, 10)$$);
SELECT try($$SELECT taskevents.relay_fetch_page('rp', 1, 0, -1)$$);
-- a chunk cut short is refused, not read past its end
SELECT try($$SELECT * FROM taskevents._relay_page_rows(
                (SELECT substr(c, 1, 30) FROM taskevents.relay_fetch_page('rp', 1, 0, 2) c))$$);

-- ack half way: pending shrinks by exactly the acked prefix
SELECT id AS mid FROM taskevents.outbox_events ORDER BY id OFFSET 2 LIMIT 1 \gset
SELECT taskevents.relay_ack('rp', 1, 1, :mid, false);
SELECT count(*) = (SELECT count(*) FROM taskevents.outbox_events WHERE id > :mid) AS pending_after_partial_ack
  FROM taskevents.pending_events;
SELECT taskevents.relay_ack('rp', 1, 1, :last, true);
SELECT count(*) AS pending FROM taskevents.pending_events;
SELECT tick_id, cursor_id = :last AS cursor_at_last, batch_done FROM taskevents.relay_position('rp');

-- nothing new: no tick, nothing written
SELECT taskevents.relay_tick('rp', 1) AS tick_when_idle;
SELECT count(*) AS ticks FROM taskevents.relay_ticks WHERE consumer = 'rp';

-- new writes: batch 2 holds exactly them, in commit order
INSERT INTO rp_tasks (id, user_id, title) VALUES (1, 'alice', 'one'), (2, 'bob', 'two');
UPDATE rp_tasks SET completed = true WHERE id = 1;
SELECT taskevents.relay_tick('rp', 1) AS tick;
SELECT partition_key, (event::jsonb)->>'type' AS type, (event::jsonb)->>'subject' AS subject
  FROM taskevents.relay_fetch('rp', 2, 0, 100);
SELECT partition_key, event->>'type' AS type FROM taskevents.pending_events;

-- positions never go back; a stale epoch is fenced off
SELECT regexp_replace(try($$SELECT taskevents.relay_ack('rp', 1, 1, 0, false)$$), '\(1, \d+, t\)', '(1, <last>, t)');
-- (the lease runs out: a relay that stopped renewing it)
INSERT INTO taskevents.relay_leases (consumer, epoch, holder, lease_until, slot)
SELECT consumer, epoch, holder, now() - interval '1 second', taskevents._current_slot()
  FROM taskevents.relay_consumers WHERE consumer = 'rp';
SELECT taskevents.relay_lease('rp', 'relay-b', 0) AS epoch_b_after_expiry;
SELECT try($$SELECT taskevents.relay_ack('rp', 1, 2, 0, true)$$);
SELECT try($$SELECT taskevents.relay_tick('rp', 1)$$);
SELECT taskevents.relay_lease('rp', 'relay-a', 1) AS old_leader_gets_nothing;
SELECT taskevents.relay_ack('rp', 2, 2, 0, true);
SELECT taskevents.relay_release('rp', 2) AS released;
SELECT taskevents.relay_lease('rp', 'relay-a', 1) AS taken_after_release;

-- dead letters are kept and can be replayed with the same id
SELECT id AS dl_outbox_id, event->>'id' AS dl_event_id FROM taskevents.outbox_events ORDER BY id DESC LIMIT 1 \gset
SELECT taskevents.relay_dead_letter('rp', 3, :dl_outbox_id, 'tasks', 'tasks-dlq', 'alice',
           (SELECT event::text FROM taskevents.outbox_events WHERE id = :dl_outbox_id),
           'Broker: Message size too large', 4, now()) AS dead_letter_id \gset
SELECT topic, dlq_topic, partition_key, reason, attempts, event_id = :'dl_event_id' AS same_id
  FROM taskevents.dead_letters WHERE dead_letter_id = :dead_letter_id;
SELECT ev_mark() AS mark \gset
SELECT taskevents.replay_dead_letter(:dead_letter_id) = :'dl_event_id' AS replayed_same_id;
SELECT topic, event->>'type' AS type FROM ev_since(:mark);
SELECT replayed_at IS NOT NULL AS marked_replayed FROM taskevents.dead_letters WHERE dead_letter_id = :dead_letter_id;
SELECT try($$SELECT taskevents.replay_dead_letter(-1)$$);

-- maintain(): a delivered partition other than the current one is
-- truncated; the current one and undelivered rows are kept
SELECT taskevents.relay_tick('rp', 3) AS tick;
SELECT taskevents.relay_ack('rp', 3, 3, 0, true);
INSERT INTO taskevents.outbox (slot, topic, partition_key, data)
VALUES ((taskevents._current_slot() + 1) % 3, 'tasks', 'x', '{"specversion": "1.0"}');
SELECT count(*) AS pending FROM taskevents.pending_events;
SELECT taskevents.maintain() >= 0 AS maintained;
SELECT count(*) AS test_rows_in_next_slot FROM taskevents.outbox WHERE slot = (taskevents._current_slot() + 1) % 3 AND partition_key = 'x';
SELECT taskevents.relay_tick('rp', 3) AS tick \gset
SELECT taskevents.relay_ack('rp', 3, :tick, 0, true);
SELECT taskevents.maintain() > 0 AS truncated_when_delivered;
SELECT count(*) AS test_rows_in_next_slot FROM taskevents.outbox WHERE slot = (taskevents._current_slot() + 1) % 3 AND partition_key = 'x';
SELECT count(*) > 0 AS current_slot_kept FROM taskevents.outbox WHERE slot = taskevents._current_slot();
SELECT * FROM taskevents.relay_backlog('rp');

-- Before it truncates a delivered partition, rotate_outbox checks that
-- nothing in it is pending by a range of the txid index, under the
-- partition's ACCESS EXCLUSIVE lock: it must not read the partition's rows
-- (5,000 here, never analyzed; a whole-partition read held the relay's
-- fetch back for 103 ms at 400,000 rows).  Rows read = rows returned by
-- sequential scans plus rows fetched by index scans, a difference inside
-- one transaction (pg_stat_xact_* also holds this backend's earlier, not
-- yet reported counts); the "is it empty" probe reads 1.
INSERT INTO taskevents.outbox (slot, topic, partition_key, data)
SELECT (taskevents._current_slot() + 1) % 3, 'tasks', 'x', '{"specversion": "1.0"}'
  FROM generate_series(1, 5000);
SELECT taskevents.relay_tick('rp', 3) AS tick \gset
SELECT taskevents.relay_ack('rp', 3, :tick, 0, true);
CREATE FUNCTION pg_temp.rows_read(part regclass) RETURNS bigint LANGUAGE sql AS $$
    SELECT coalesce(t.seq_tup_read, 0) + coalesce(t.idx_tup_fetch, 0)
      FROM pg_stat_xact_user_tables t WHERE t.relid = part
$$;
BEGIN;
SELECT format('taskevents.outbox_%s', (taskevents._current_slot() + 1) % 3) AS next_part \gset
SELECT pg_temp.rows_read(:'next_part') AS read_before \gset
SELECT taskevents.maintain() > 0 AS truncated_when_delivered;
SELECT pg_temp.rows_read(:'next_part') - :read_before AS rows_read_by_rotation;
COMMIT;
SELECT count(*) AS test_rows_in_next_slot FROM taskevents.outbox WHERE slot = (taskevents._current_slot() + 1) % 3;

-- relay_tick() refuses a transaction snapshot that would break batching
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT try($$SELECT taskevents.relay_tick('rp', 3)$$);
COMMIT;

-- a page larger than a chunk (32 kB) comes in several, each event whole in
-- one, and reads back as the same events in id order
SELECT make_tasks('rp_big');
SELECT taskevents.attach('rp_big');
INSERT INTO rp_big (id, user_id, title)
SELECT g, 'big', string_agg(md5(g::text || i::text), '') FROM generate_series(1, 8) g, generate_series(1, 500) i GROUP BY g;
SELECT taskevents.relay_lease('rpchunk', 'relay', 0) AS epoch;
SELECT taskevents.relay_tick('rpchunk', 1) AS tick;
SELECT count(*) > 2 AS several_chunks, bool_and(length(c) < 65536) AS each_under_64k
  FROM taskevents.relay_fetch_page('rpchunk', 1, 0, 1000000) c;
SELECT count(*) = (SELECT count(*) FROM taskevents.outbox_events)
       AND bool_and(f.event = e.event::text) AS chunks_are_the_events
  FROM taskevents.relay_fetch('rpchunk', 1, 0, 1000000) f JOIN taskevents.outbox_events e USING (id);
SELECT bool_and(s.id > s.prev) AS chunks_in_id_order
  FROM (SELECT r.id, lag(r.id, 1, 0::bigint) OVER (ORDER BY c.n, r.n) AS prev
          FROM taskevents.relay_fetch_page('rpchunk', 1, 0, 1000000) WITH ORDINALITY c (chunk, n),
               LATERAL taskevents._relay_page_rows(c.chunk) WITH ORDINALITY r (id, topic, partition_key, event, created_at, n)) s;
SELECT count(*) AS big_events FROM taskevents.relay_fetch('rpchunk', 1, 0, 1000000) WHERE length(event) > 16000;
DELETE FROM taskevents.relay_consumers WHERE consumer = 'rpchunk';
