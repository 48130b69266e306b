-- The reference subscriber's table and its role's privileges.
--
--   psql -v role=taskevents_subscriber -f examples/subscriber/schema.sql app
--
-- Run it as the database owner (or a superuser) in the database where
-- pg_taskevents is installed: the process-once inbox (taskevents.receive)
-- lives there, and the mark has to commit in the same transaction as the
-- subscriber's own write.  The role must exist (CREATE ROLE ... LOGIN).

\set ON_ERROR_STOP on

CREATE SCHEMA IF NOT EXISTS feed;

-- The user's activity feed: one row per event applied, in the order the
-- subscriber applied them (id), which is the order the user's events were
-- committed: Dapr delivers a Kafka partition one event at a time and one
-- user's events share a partition.
CREATE TABLE IF NOT EXISTS feed.activity (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    route       text NOT NULL,          -- the handler that applied it: tasks or reminders
    source      text NOT NULL,          -- CloudEvent source and id: the inbox key
    event_id    text NOT NULL,
    type        text NOT NULL,
    user_id     text NOT NULL,          -- partitionkey
    task_id     text NOT NULL,          -- subject
    occurred_at timestamptz NOT NULL,   -- the event's time: when the write happened
    applied_at  timestamptz NOT NULL DEFAULT now(),
    event       jsonb NOT NULL          -- the whole CloudEvent as delivered
);

CREATE INDEX IF NOT EXISTS activity_user_idx ON feed.activity (user_id, id);

-- EXECUTE on taskevents.receive() and process_once(), nothing else of the
-- extension; and only INSERT on the feed.
SELECT taskevents.grant_consumer(:'role');
GRANT USAGE ON SCHEMA feed TO :"role";
GRANT INSERT ON feed.activity TO :"role";
