-- pg_taskevents install script.  Built by concatenating extension/sql/*.sql;
-- each part keeps one concern.  See "Architecture" in README.md.

\echo Use "CREATE EXTENSION pg_taskevents" to load this file. \quit

-------------------------------------------------------------------------------
-- Refuse a schema prepared by someone else.  CREATE EXTENSION uses an
-- existing schema "@extschema@" as it finds it, and everything below runs
-- with that schema first in search_path and with the installing role's
-- rights: a function planted there by its owner (say a format(text, text)
-- that is a better match than pg_catalog's) would run as the installer, a
-- superuser.  So the schema must belong to the installing role and be
-- empty.  This block is the first statement of the script and calls nothing
-- that is not schema-qualified.
-------------------------------------------------------------------------------

DO $$
DECLARE
    nsp pg_catalog.oid;
    owner_name pg_catalog.name;
BEGIN
    SELECT n.oid, r.rolname INTO nsp, owner_name
      FROM pg_catalog.pg_namespace n
      JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) n.nspowner
     WHERE n.nspname OPERATOR(pg_catalog.=) '@extschema@';
    IF owner_name OPERATOR(pg_catalog.<>) CURRENT_USER THEN
        RAISE EXCEPTION 'schema "@extschema@" already exists and is owned by role "%"', owner_name
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'Objects in a schema prepared by another role would run with the installing role''s rights during CREATE EXTENSION and afterwards.',
                  HINT = 'Drop or rename the schema, then run CREATE EXTENSION pg_taskevents again.';
    END IF;
    IF EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.relnamespace OPERATOR(pg_catalog.=) nsp)
       OR EXISTS (SELECT FROM pg_catalog.pg_proc p WHERE p.pronamespace OPERATOR(pg_catalog.=) nsp)
       OR EXISTS (SELECT FROM pg_catalog.pg_type t WHERE t.typnamespace OPERATOR(pg_catalog.=) nsp)
       OR EXISTS (SELECT FROM pg_catalog.pg_operator o WHERE o.oprnamespace OPERATOR(pg_catalog.=) nsp)
       OR EXISTS (SELECT FROM pg_catalog.pg_collation c WHERE c.collnamespace OPERATOR(pg_catalog.=) nsp)
       OR EXISTS (SELECT FROM pg_catalog.pg_conversion c WHERE c.connamespace OPERATOR(pg_catalog.=) nsp)
       OR EXISTS (SELECT FROM pg_catalog.pg_namespace n, pg_catalog.aclexplode(n.nspacl) a
                   WHERE n.oid OPERATOR(pg_catalog.=) nsp
                     AND a.privilege_type OPERATOR(pg_catalog.=) 'CREATE'
                     AND a.grantee OPERATOR(pg_catalog.<>) n.nspowner) THEN
        RAISE EXCEPTION 'schema "@extschema@" already exists and is not empty, or others may create objects in it'
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'pg_taskevents installs into a schema of its own; objects already there could capture its names.',
                  HINT = 'Drop or rename the schema, then run CREATE EXTENSION pg_taskevents again.';
    END IF;
END;
$$;

-------------------------------------------------------------------------------
-- The outbox: one row per event, written once, never updated or deleted.
-- Partitions take turns by time and are truncated once fully delivered.
-------------------------------------------------------------------------------

-- What the events of one sender share, stored once: the CloudEvent
-- attributes source and pubsubname, the topic, and, for the task.* events of
-- a table, the names of the table's columns (then the outbox row keeps only
-- the values of the row, and the reader puts the names back).  Written by
-- attach() and, when an attached table's columns change, by the event
-- trigger _track_table_changes(); never updated or deleted, so that every
-- event can always be rendered as it was written.
CREATE TABLE @extschema@.envelopes (
    envelope_id  integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source       text NOT NULL,
    pubsubname   text NOT NULL,
    topic        text NOT NULL,
    -- the events' type is type_prefix || outbox.type ('task.', 'reminder.')
    type_prefix  text NOT NULL DEFAULT '',
    -- the names of the columns whose values outbox.data holds, in order
    columns      name[],
    -- the value of column number subject_at (key_at) of columns is the
    -- event's subject (partition key) and is left out of data: 's' it is
    -- rendered as a JSON string, 'n' as a number (0, ' ': not left out)
    subject_at   smallint NOT NULL DEFAULT 0,
    subject_json "char" NOT NULL DEFAULT ' ',
    key_at       smallint NOT NULL DEFAULT 0,
    key_json     "char" NOT NULL DEFAULT ' ',
    created_at   timestamptz NOT NULL DEFAULT pg_catalog.now()
);

CREATE UNIQUE INDEX envelopes_key_idx ON @extschema@.envelopes
    (source, pubsubname, topic, type_prefix, (coalesce(columns, '{}'::pg_catalog.name[])),
     subject_at, subject_json, key_at, key_json);

COMMENT ON TABLE @extschema@.envelopes IS
    'What the events of one table share (source, pubsubname, topic, column names), stored once and referenced by outbox.envelope.';

-- The columns are in the order of the row layout (fixed width first, then
-- the short texts, data last), so that a task event takes no more room
-- than its facts: about 290 bytes for a 300-byte row of the brief's table.
-- A row holds one event, or several consecutive ones of one statement
-- (outbox.c, "The events of a statement"): then the columns are the last
-- event's, id is its id, and earlier holds the events before it, ids
-- id - n .. id - 1.  taskevents._outbox_unpack() gives a row's events; the
-- views and the relay's pages show each event on its own.  The partitions
-- take rows up to a page whole (toast_tuple_target): a row of a bulk
-- statement's events is neither compressed nor moved out of line.
-- The topic of an event with an envelope is the envelope's and is stored
-- as '' (taskevents._event_topic() reads it; views and the relay get it
-- whole).
-- (The defaults serve an INSERT by hand, a test's malformed row say; the
-- triggers set every column themselves.  txid comes first: its default
-- assigns the transaction id before the default of id draws from the
-- sequence, as the batching needs.)
CREATE TABLE @extschema@.outbox (
    txid          pg_catalog.xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id(),
    id            bigint NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT pg_catalog.statement_timestamp(),
    event_id      uuid NOT NULL DEFAULT pg_catalog.gen_random_uuid(),
    envelope      integer,
    slot          smallint NOT NULL,
    topic         text NOT NULL,
    partition_key text,
    type          text NOT NULL DEFAULT '',
    subject       text,
    traceparent   text NOT NULL DEFAULT '',
    data          text NOT NULL,
    earlier       bytea NOT NULL DEFAULT ''
) PARTITION BY LIST (slot);

-- CACHE 1: ids are drawn in the order events are written, across
-- sessions (the batching relies on it, see "The outbox" in README.md).
CREATE SEQUENCE @extschema@.outbox_id_seq AS bigint CACHE 1 OWNED BY @extschema@.outbox.id;
ALTER TABLE @extschema@.outbox
    ALTER COLUMN id SET DEFAULT pg_catalog.nextval('@extschema@.outbox_id_seq'::pg_catalog.regclass);

CREATE TABLE @extschema@.outbox_0 PARTITION OF @extschema@.outbox FOR VALUES IN (0) WITH (toast_tuple_target = 8160);
CREATE TABLE @extschema@.outbox_1 PARTITION OF @extschema@.outbox FOR VALUES IN (1) WITH (toast_tuple_target = 8160);
CREATE TABLE @extschema@.outbox_2 PARTITION OF @extschema@.outbox FOR VALUES IN (2) WITH (toast_tuple_target = 8160);

-- Neither index ever holds two equal keys (ids come from the sequence), so
-- B-tree deduplication would only cost a useless pass over a full leaf page
-- before each of its splits: turned off.
CREATE INDEX outbox_id_idx ON @extschema@.outbox (id) WITH (deduplicate_items = off);
-- (txid, id): the rows of one transaction in id order (_batch_query)
CREATE INDEX outbox_txid_idx ON @extschema@.outbox (txid, id) WITH (deduplicate_items = off);

COMMENT ON TABLE @extschema@.outbox IS
    'Transactional outbox: the facts of one CloudEvent per row, delivered by taskevents-relay in batches cut by snapshots; outbox_events shows them as the events consumers receive.';
COMMENT ON COLUMN @extschema@.outbox.txid IS
    'Top-level transaction id of the writer, assigned before id was drawn.';
COMMENT ON COLUMN @extschema@.outbox.created_at IS
    'Statement time of the write: the CloudEvent time.';
COMMENT ON COLUMN @extschema@.outbox.topic IS
    'The Kafka topic; empty when it is the envelope''s (every event with an envelope): taskevents._event_topic(envelope, topic) gives it.';
COMMENT ON COLUMN @extschema@.outbox.envelope IS
    'The envelope (source, pubsubname, column names) of a table''s event; NULL when data is the complete CloudEvent (publish(), a replayed dead letter).';
COMMENT ON COLUMN @extschema@.outbox.type IS
    'The event type, without its envelope''s type_prefix (created, for task.created).';
COMMENT ON COLUMN @extschema@.outbox.data IS
    'JSON: the CloudEvent data; the row''s values alone (comma-separated JSON values, in column order, without the subject and partition key the envelope derives) when the envelope has column names; the complete CloudEvent when envelope is NULL.';
COMMENT ON COLUMN @extschema@.outbox.earlier IS
    'Empty, or the events of the same statement before this row''s own (ids id - n .. id - 1), packed: taskevents._outbox_unpack() reads them.';

-- How a value of type typ appears in row_to_json(): 'n' a JSON number when
-- it is one, else a string (the numeric types), 's' a JSON string of its
-- text (text, uuid, ...), NULL anything else.  The first two can be derived
-- from the subject or partition key instead of being stored twice.
CREATE FUNCTION @extschema@._json_derivable(typ regtype) RETURNS "char"
LANGUAGE C STABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'json_derivable';

-- The time slot written to now: the outbox partition the triggers write
-- to, and the relay state's.
CREATE FUNCTION @extschema@._current_slot() RETURNS smallint
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'current_slot';

-- The CloudEvent of an outbox row as JSON text, exactly as consumers get it
-- (extension/cloudevent.c).
CREATE FUNCTION @extschema@._event_json(event_id uuid, envelope integer, type text, subject text,
                                        created_at timestamptz, topic text, partition_key text,
                                        traceparent text, data text)
RETURNS text
LANGUAGE C STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'event_json';

-- The topic of an outbox row: its own, or its envelope's when it stores ''.
CREATE FUNCTION @extschema@._event_topic(envelope integer, topic text)
RETURNS text
LANGUAGE C STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'event_topic';

-- The events of an outbox row, in id order: the row's own when earlier is
-- empty, else those of earlier, then the row's own.
CREATE FUNCTION @extschema@._outbox_unpack(id bigint, event_id uuid, type text, subject text,
                                          partition_key text, data text, earlier bytea)
RETURNS TABLE (id bigint, event_id uuid, type text, subject text, partition_key text, data text)
LANGUAGE C IMMUTABLE PARALLEL SAFE ROWS 1
AS 'MODULE_PATHNAME', 'outbox_unpack';

-- How many events an outbox row holds before its own (0 when earlier is
-- empty): its events' ids are id - this .. id.
CREATE FUNCTION @extschema@._outbox_earlier(earlier bytea) RETURNS integer
LANGUAGE C IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'outbox_earlier';

-- Every event in the outbox as consumers get it (delivered or not).
CREATE VIEW @extschema@.outbox_events AS
SELECT e.id, o.txid, o.created_at, @extschema@._event_topic(o.envelope, o.topic) AS topic, e.partition_key,
       @extschema@._event_json(e.event_id, o.envelope, e.type, e.subject, o.created_at, o.topic,
                               e.partition_key, o.traceparent, e.data)::pg_catalog.json AS event
  FROM @extschema@.outbox o
 CROSS JOIN LATERAL @extschema@._outbox_unpack(o.id, o.event_id, o.type, o.subject,
                                              o.partition_key, o.data, o.earlier) e;

COMMENT ON VIEW @extschema@.outbox_events IS
    'Every event in the outbox, delivered or not, as the CloudEvent consumers receive (taskevents.pending_events: the undelivered ones).';

-------------------------------------------------------------------------------
-- The registry of attached tables.
-------------------------------------------------------------------------------

CREATE TABLE @extschema@.attached_tables (
    task_table                regclass PRIMARY KEY,
    topic                     text NOT NULL,
    source                    text NOT NULL,
    pubsubname                text NOT NULL,
    id_column                 name NOT NULL,
    user_id_column            name NOT NULL,
    completed_column          name NOT NULL,
    due_date_column           name,
    is_recurring_column       name,
    recurring_interval_column name,
    reminder_sent_at_column   name,
    reminder_lead             interval,
    attached_at               timestamptz NOT NULL DEFAULT pg_catalog.now()
);

COMMENT ON TABLE @extschema@.attached_tables IS
    'Tables attached with taskevents.attach(): which column plays which role, and where their events go.';

-------------------------------------------------------------------------------
-- Relay state: consumers, leases, ticks (batch boundaries) and acks
-- (progress).  Leases, ticks and acks are insert-only and read newest-first
-- through their primary keys, so a long transaction elsewhere cannot make
-- them slow; like the outbox they are partitioned by a time slot and
-- rotated by TRUNCATE (the rotate_relay_state maintenance operation carries
-- the few rows still needed into the current slot first), so they leave no
-- dead tuples for a held snapshot to keep.  A consumer's row changes only
-- when a relay takes over (its fencing epoch).
--
-- TRUNCATE is not MVCC-safe: a statement whose snapshot is older than the
-- rotation's commit finds the old partition empty and the carried rows
-- not yet visible.  So every function that reads these tables is VOLATILE
-- (never STABLE): each of its statements takes its snapshot after its
-- locks, that is after a rotation it waited for has committed
-- (specs/relay_state_rotation_race.spec).  A STABLE one would read with the
-- snapshot of its caller, taken before the wait: "batch N does not exist",
-- or a position of (0, 0).
-------------------------------------------------------------------------------

CREATE TABLE @extschema@.relay_consumers (
    consumer    text PRIMARY KEY,
    epoch       bigint NOT NULL DEFAULT 0,
    holder      text,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
);

COMMENT ON TABLE @extschema@.relay_consumers IS
    'Relay consumers: the fencing epoch and the relay that took it; leases, ticks and acks are in relay_leases, relay_ticks and relay_acks (relay_status shows them together).';

CREATE TABLE @extschema@.relay_leases (
    consumer    text NOT NULL REFERENCES @extschema@.relay_consumers ON DELETE CASCADE,
    renewal_id  bigint GENERATED ALWAYS AS IDENTITY,
    epoch       bigint NOT NULL,
    holder      text NOT NULL,
    lease_until timestamptz NOT NULL,
    renewed_at  timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    slot        smallint NOT NULL,
    PRIMARY KEY (consumer, renewal_id, slot)
) PARTITION BY LIST (slot);

COMMENT ON TABLE @extschema@.relay_leases IS
    'Relay leases: one row per take-over, renewal or release; the newest row of a consumer is its lease.';

CREATE TABLE @extschema@.relay_ticks (
    consumer   text NOT NULL REFERENCES @extschema@.relay_consumers ON DELETE CASCADE,
    tick_id    bigint NOT NULL,
    snapshot   pg_catalog.pg_snapshot NOT NULL,
    last_id    bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    slot       smallint NOT NULL,
    PRIMARY KEY (consumer, tick_id, slot)
) PARTITION BY LIST (slot);

CREATE TABLE @extschema@.relay_acks (
    consumer   text NOT NULL REFERENCES @extschema@.relay_consumers ON DELETE CASCADE,
    ack_id     bigint GENERATED ALWAYS AS IDENTITY,
    epoch      bigint NOT NULL,
    tick_id    bigint NOT NULL,
    cursor_id  bigint NOT NULL,
    batch_done boolean NOT NULL,
    acked_at   timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    slot       smallint NOT NULL,
    PRIMARY KEY (consumer, ack_id, slot)
) PARTITION BY LIST (slot);

COMMENT ON TABLE @extschema@.relay_acks IS
    'Relay progress: batches up to tick_id-1 are resolved, and in batch tick_id every event with id <= cursor_id (all of it when batch_done).';

DO $$
BEGIN
    FOR s IN 0..2 LOOP
        EXECUTE pg_catalog.format('CREATE TABLE @extschema@.relay_leases_%s PARTITION OF @extschema@.relay_leases FOR VALUES IN (%s)', s, s);
        EXECUTE pg_catalog.format('CREATE TABLE @extschema@.relay_ticks_%s PARTITION OF @extschema@.relay_ticks FOR VALUES IN (%s)', s, s);
        EXECUTE pg_catalog.format('CREATE TABLE @extschema@.relay_acks_%s PARTITION OF @extschema@.relay_acks FOR VALUES IN (%s)', s, s);
    END LOOP;
END;
$$;

-------------------------------------------------------------------------------
-- Dead letters: events the relay gave up on, kept for review and replay.
-------------------------------------------------------------------------------

CREATE TABLE @extschema@.dead_letters (
    dead_letter_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    consumer         text NOT NULL,
    outbox_id        bigint NOT NULL,
    event_id         text,
    topic            text NOT NULL,
    dlq_topic        text NOT NULL,
    partition_key    text,
    event            jsonb NOT NULL,
    reason           text NOT NULL,
    attempts         integer NOT NULL,
    first_failed_at  timestamptz,
    dead_lettered_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    replayed_at      timestamptz
);

CREATE INDEX dead_letters_event_id_idx ON @extschema@.dead_letters (event_id);
