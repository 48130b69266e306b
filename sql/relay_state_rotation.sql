-- The relay's leases, ticks and acks are rotated like the outbox: the
-- partitions of past slots are truncated, not vacuumed, after what is still
-- needed (each consumer's newest lease and ack, and the ticks from its
-- position on) is carried into the current slot; the relay then goes on as
-- if nothing happened.  Rows of "past" slots are written here by hand.
\set VERBOSITY terse
SET client_min_messages = warning;
SET TimeZone = 'UTC';

SELECT make_tasks('rot_tasks');
SELECT taskevents.attach('rot_tasks');
SELECT taskevents.relay_lease('rot', 'relay-1', 0) AS epoch;
INSERT INTO rot_tasks (id, user_id, title) VALUES (1, 'ann', 'one');
SELECT taskevents.relay_tick('rot', 1) AS tick;
INSERT INTO rot_tasks (id, user_id, title) VALUES (2, 'ann', 'two');
SELECT taskevents.relay_tick('rot', 1) AS tick;
SELECT taskevents.relay_ack('rot', 1, 1, 0, true);
SELECT taskevents.relay_lease('rot', 'relay-1', 1) AS renewed;

-- move everything of consumer rot into a slot that is not the current one,
-- and add history that is no longer needed
SELECT (taskevents._current_slot() + 1) % 3 AS old \gset
UPDATE taskevents.relay_ticks SET slot = :old WHERE consumer = 'rot';
UPDATE taskevents.relay_acks SET slot = :old WHERE consumer = 'rot';
UPDATE taskevents.relay_leases SET slot = :old WHERE consumer = 'rot';
INSERT INTO taskevents.relay_ticks (consumer, tick_id, snapshot, last_id, slot)
SELECT 'rot', -t, '1:1:', 0, :old FROM generate_series(1, 5) t;
SELECT count(*) AS ticks, count(*) FILTER (WHERE slot = :old) AS in_old_slot
  FROM taskevents.relay_ticks WHERE consumer = 'rot';
SELECT * FROM taskevents.relay_position('rot');

SELECT done >= 3 AS rotated FROM taskevents.run_maintenance('rotate_relay_state');

-- the old slot is empty; what is needed is in the current slot
SELECT (SELECT count(*) FROM taskevents.relay_ticks WHERE slot = :old)
     + (SELECT count(*) FROM taskevents.relay_acks WHERE slot = :old)
     + (SELECT count(*) FROM taskevents.relay_leases WHERE slot = :old) AS rows_left_in_old_slot;
SELECT tick_id FROM taskevents.relay_ticks WHERE consumer = 'rot' ORDER BY tick_id;
SELECT tick_id, batch_done FROM taskevents.relay_acks WHERE consumer = 'rot';
SELECT consumer, epoch, holder, lease_until > now() AS leased, tick_id, cursor_id, batch_done
  FROM taskevents.relay_status WHERE consumer = 'rot';
SELECT pending AS rot_backlog FROM taskevents.relay_backlog('rot');

-- the relay goes on: fetch batch 2, ack it, renew its lease, updating and
-- deleting nothing (no dead tuples); then a new batch
CREATE FUNCTION rot_changes() RETURNS bigint LANGUAGE sql AS $$
    SELECT sum(n_tup_upd + n_tup_del)::bigint FROM pg_stat_user_tables
     WHERE schemaname = 'taskevents' AND relname LIKE 'relay\_%'
$$;
SELECT pg_stat_force_next_flush();
SELECT pg_stat_clear_snapshot(), rot_changes() AS before \gset
BEGIN;
SELECT partition_key, (event::jsonb)->>'subject' AS subject FROM taskevents.relay_fetch('rot', 2, 0, 10);
SELECT taskevents.relay_ack('rot', 1, 2, 0, true);
SELECT taskevents.relay_lease('rot', 'relay-1', 1) AS renewed;
SELECT pg_stat_force_next_flush();
COMMIT;
SELECT pg_stat_clear_snapshot(), rot_changes() - :before AS updated_or_deleted;
INSERT INTO rot_tasks (id, user_id, title) VALUES (3, 'ann', 'three');
SELECT taskevents.relay_tick('rot', 1) AS tick;
SELECT partition_key, (event::jsonb)->>'subject' AS subject FROM taskevents.relay_fetch('rot', 3, 0, 10);

DELETE FROM taskevents.relay_consumers WHERE consumer = 'rot';
SELECT taskevents.detach('rot_tasks', force => true);
DROP TABLE rot_tasks;
DROP FUNCTION rot_changes();
