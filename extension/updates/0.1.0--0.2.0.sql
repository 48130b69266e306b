-- ALTER EXTENSION pg_taskevents UPDATE from 0.1.0 (git tag v0.1.0) to 0.2.0.
--
-- The Makefile builds pg_taskevents--0.1.0--0.2.0.sql from this file and the
-- 0.2.0 install script (extension/updates/build.awk): "--@rerunnable"
-- becomes every function, procedure, view, trigger, comment, privilege and
-- config-dump entry of the install script, "--@install-statement TEXT" the
-- install script's statement that contains TEXT.  What is written here is
-- only what an update alone has to do: rename, rebuild tables whose layout
-- changed without losing a row, drop what 0.2.0 no longer has.
--
-- After it, a database upgraded from 0.1.0 has exactly the catalog of a
-- fresh 0.2.0 install (test/0910 compares members, tables, views,
-- functions, privileges, config-dump entries and comments), and an upgrade
-- in service delivers every pending event exactly once with its CloudEvent
-- id (test/0900).  Once 0.2.0 is released, the built update script is kept
-- in extension/ as it is and this file is removed: 0.2.0 -> 0.3.0 gets its
-- own.
--
-- The 0.2.0 library keeps every C symbol 0.1.0's SQL names (previous.c), so
-- between the package upgrade and this script the old objects still
-- resolve; the row trigger refuses to write (SQLSTATE 55000) until the
-- outbox has its 0.2.0 layout, so no event is written in a layout the
-- relay would misread.  Everything below is qualified: this runs with the
-- updating role's rights.

\echo Use "ALTER EXTENSION pg_taskevents UPDATE TO '0.2.0'" to load this file. \quit

-------------------------------------------------------------------------------
-- Internal helpers are named with a leading underscore in 0.2.0.  A rename
-- keeps the privileges and what depends on the function (the settings
-- triggers, the event trigger); the definitions follow below.
-------------------------------------------------------------------------------

ALTER FUNCTION @extschema@.current_slot() RENAME TO _current_slot;
ALTER FUNCTION @extschema@.is_delivered(pg_catalog.xid8) RENAME TO _is_delivered;
ALTER FUNCTION @extschema@.check_column(regclass, text, name, regtype[], boolean) RENAME TO _check_column;
ALTER FUNCTION @extschema@.enqueue_event(text, text, jsonb) RENAME TO _enqueue_event;
ALTER FUNCTION @extschema@.forget_dropped_tables() RENAME TO _forget_dropped_tables;
ALTER FUNCTION @extschema@.batch_query(pg_catalog.pg_snapshot, pg_catalog.pg_snapshot, text) RENAME TO _batch_query;
ALTER FUNCTION @extschema@.init_consumer(text) RENAME TO _init_consumer;
ALTER FUNCTION @extschema@.check_epoch(text, bigint) RENAME TO _check_epoch;
ALTER FUNCTION @extschema@.consumer_positions() RENAME TO _consumer_positions;
ALTER FUNCTION @extschema@.settings_replace() RENAME TO _settings_replace;
ALTER FUNCTION @extschema@.inbox_slot(date) RENAME TO _inbox_slot;
ALTER FUNCTION @extschema@.inbox_slots(date, date) RENAME TO _inbox_slots;
ALTER FUNCTION @extschema@.inbox_seen(integer, text, text) RENAME TO _inbox_seen;
ALTER FUNCTION @extschema@.analytics_capture(regclass) RENAME TO _capture_analytics;
ALTER FUNCTION @extschema@.analytics_partition_name(date) RENAME TO _analytics_partition_name;

-- Gone in 0.2.0: the reminder firing is in C and writes as the table's
-- owner itself; detach() has a force argument.
DROP FUNCTION @extschema@.emit_event(regclass, text, text, text, text, jsonb);
DROP FUNCTION @extschema@.reminder_task(regclass, text, timestamptz);
DROP FUNCTION @extschema@.detach(regclass);

-------------------------------------------------------------------------------
-- 00_outbox.sql: the outbox keeps the facts of each event instead of its
-- JSON text.  The table is rebuilt with every row (delivered or not: the
-- relays' positions refer to their ids and transaction ids), each 0.1.0
-- event kept whole as the data of an envelope-less row, as a replayed dead
-- letter is: the relay sends exactly the text 0.1.0 wrote, with its id.
-------------------------------------------------------------------------------

--@install-statement CREATE TABLE @extschema@.envelopes (
--@install-statement CREATE UNIQUE INDEX envelopes_key_idx

CREATE TABLE @extschema@.outbox_upgrade AS
SELECT o.txid, o.id, o.created_at,
       CASE WHEN (o.event OPERATOR(pg_catalog.->>) 'id')
                 OPERATOR(pg_catalog.~) '^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$'
            THEN (o.event OPERATOR(pg_catalog.->>) 'id')::pg_catalog.uuid
            ELSE pg_catalog.gen_random_uuid() END AS event_id,
       o.slot, o.topic, o.partition_key,
       coalesce(o.event OPERATOR(pg_catalog.->>) 'type', '') AS type,
       o.event OPERATOR(pg_catalog.->>) 'subject' AS subject,
       o.event::pg_catalog.text AS data
  FROM @extschema@.outbox o;

DROP VIEW @extschema@.pending_events;
DROP FUNCTION @extschema@.batch_events(pg_catalog.pg_snapshot, bigint, pg_catalog.pg_snapshot, bigint, integer);
ALTER SEQUENCE @extschema@.outbox_id_seq OWNED BY NONE;
-- (leaving the extension first takes the partitions' config-dump entries
-- with them; DROP TABLE alone would leave them behind)
ALTER EXTENSION pg_taskevents DROP TABLE @extschema@.outbox_0;
ALTER EXTENSION pg_taskevents DROP TABLE @extschema@.outbox_1;
ALTER EXTENSION pg_taskevents DROP TABLE @extschema@.outbox_2;
DROP TABLE @extschema@.outbox;

--@install-statement CREATE TABLE @extschema@.outbox (
ALTER SEQUENCE @extschema@.outbox_id_seq OWNED BY @extschema@.outbox.id;
--@install-statement ALTER COLUMN id SET DEFAULT
--@install-statement CREATE TABLE @extschema@.outbox_0 PARTITION
--@install-statement CREATE TABLE @extschema@.outbox_1 PARTITION
--@install-statement CREATE TABLE @extschema@.outbox_2 PARTITION
--@install-statement CREATE INDEX outbox_id_idx
--@install-statement CREATE INDEX outbox_txid_idx

INSERT INTO @extschema@.outbox
       (txid, id, created_at, event_id, envelope, slot, topic, partition_key, type, subject, traceparent, data)
SELECT u.txid, u.id, u.created_at, u.event_id, NULL, u.slot, u.topic, u.partition_key, u.type, u.subject, '', u.data
  FROM @extschema@.outbox_upgrade u
 ORDER BY u.id;
DROP TABLE @extschema@.outbox_upgrade;

-- Relay state: the lease moves from relay_consumers to relay_leases, and
-- leases, ticks and acks are partitioned by slot.  Every row is carried
-- over (rotate_relay_state keeps only what is needed from then on); ack ids
-- continue above the carried ones, since the newest ack is the one with the
-- highest id.
CREATE TABLE @extschema@.relay_consumers_upgrade AS SELECT * FROM @extschema@.relay_consumers;
CREATE TABLE @extschema@.relay_ticks_upgrade AS SELECT * FROM @extschema@.relay_ticks;
CREATE TABLE @extschema@.relay_acks_upgrade AS SELECT * FROM @extschema@.relay_acks;
DROP TABLE @extschema@.relay_acks, @extschema@.relay_ticks, @extschema@.relay_consumers;

--@install-statement CREATE TABLE @extschema@.relay_consumers (
--@install-statement CREATE TABLE @extschema@.relay_leases (
--@install-statement CREATE TABLE @extschema@.relay_ticks (
--@install-statement CREATE TABLE @extschema@.relay_acks (
--@install-statement relay_leases_%s PARTITION OF

INSERT INTO @extschema@.relay_consumers (consumer, epoch, holder, created_at)
SELECT c.consumer, c.epoch, c.holder, c.created_at FROM @extschema@.relay_consumers_upgrade c;
INSERT INTO @extschema@.relay_leases (consumer, epoch, holder, lease_until, slot)
SELECT c.consumer, c.epoch, c.holder, c.lease_until, @extschema@._current_slot()
  FROM @extschema@.relay_consumers_upgrade c
 WHERE c.holder IS NOT NULL AND c.lease_until IS NOT NULL;
INSERT INTO @extschema@.relay_ticks (consumer, tick_id, snapshot, last_id, created_at, slot)
SELECT t.consumer, t.tick_id, t.snapshot, t.last_id, t.created_at, @extschema@._current_slot()
  FROM @extschema@.relay_ticks_upgrade t;
INSERT INTO @extschema@.relay_acks (consumer, ack_id, epoch, tick_id, cursor_id, batch_done, acked_at, slot)
OVERRIDING SYSTEM VALUE
SELECT a.consumer, a.ack_id, a.epoch, a.tick_id, a.cursor_id, a.batch_done, a.acked_at, @extschema@._current_slot()
  FROM @extschema@.relay_acks_upgrade a;
SELECT pg_catalog.setval(pg_catalog.pg_get_serial_sequence('@extschema@.relay_acks', 'ack_id'), m.last)
  FROM (SELECT pg_catalog.max(a.ack_id) AS last FROM @extschema@.relay_acks_upgrade a) m
 WHERE m.last IS NOT NULL;
DROP TABLE @extschema@.relay_consumers_upgrade, @extschema@.relay_ticks_upgrade, @extschema@.relay_acks_upgrade;

-------------------------------------------------------------------------------
-- 05_maintenance.sql: the maintenance list (its rows are written below, by
-- the part of each feature).
-------------------------------------------------------------------------------

--@install-statement CREATE TABLE @extschema@.maintenance_registry (
TRUNCATE @extschema@.maintenance_registry;

-------------------------------------------------------------------------------
-- 40_reminders.sql: reminders.state is written by the extension alone; the
-- CHECK every write re-parsed is gone.  The due index has reminder_id too.
-------------------------------------------------------------------------------

ALTER TABLE @extschema@.reminders DROP CONSTRAINT reminders_state_check;

-- the due index in the order a run claims reminders
DROP INDEX @extschema@.reminders_due_idx;
--@install-statement CREATE INDEX reminders_due_idx

-- the next-instance index led by next_task_id (never taken for a lookup by
-- task_id)
DROP INDEX @extschema@.recurrence_spawned_next_idx;
--@install-statement CREATE INDEX recurrence_spawned_next_idx

-------------------------------------------------------------------------------
-- Every function, view, trigger, comment, privilege and config-dump entry,
-- as the install script has them.
-------------------------------------------------------------------------------

--@rerunnable

-------------------------------------------------------------------------------
-- New in 0.2.0, after the functions they call.
-------------------------------------------------------------------------------

--@install-statement CREATE EVENT TRIGGER taskevents_track_table_changes
--@install-statement CREATE EVENT TRIGGER taskevents_guard_drop

-- The envelopes of the tables attached under 0.1.0.
SELECT @extschema@._register_envelopes(a.task_table) FROM @extschema@.attached_tables a;

-- Roles given the relay's, a consumer's or an analyst's rights under 0.1.0
-- get what 0.2.0's grant functions give (the maintenance list and
-- relay_wait() for a relay, say).  A role holds them if it may run
-- relay_lease() (process_once(), read analytics_events_per_day).
SELECT @extschema@.grant_relay(a.grantee::pg_catalog.regrole)
  FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
 WHERE p.oid OPERATOR(pg_catalog.=) '@extschema@.relay_lease(text, text, bigint, interval)'::pg_catalog.regprocedure
   AND a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE' AND a.grantee OPERATOR(pg_catalog.<>) p.proowner
   AND a.grantee OPERATOR(pg_catalog.<>) 0;
SELECT @extschema@.grant_consumer(a.grantee::pg_catalog.regrole)
  FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
 WHERE p.oid OPERATOR(pg_catalog.=) '@extschema@.process_once(text, text)'::pg_catalog.regprocedure
   AND a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE' AND a.grantee OPERATOR(pg_catalog.<>) p.proowner
   AND a.grantee OPERATOR(pg_catalog.<>) 0;
SELECT @extschema@.grant_analytics(a.grantee::pg_catalog.regrole)
  FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
 WHERE c.oid OPERATOR(pg_catalog.=) '@extschema@.analytics_events_per_day'::pg_catalog.regclass
   AND a.privilege_type OPERATOR(pg_catalog.=) 'SELECT' AND a.grantee OPERATOR(pg_catalog.<>) c.relowner
   AND a.grantee OPERATOR(pg_catalog.<>) 0;
