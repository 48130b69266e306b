-- Three identical task tables (test/lib/tasks.sql) for the write-cost
-- benchmark:
--   bench_plain     no trigger
--   bench_attached  taskevents.attach() (the C trigger)
--   bench_plpgsql   a hand-written PL/pgSQL trigger writing an equivalent
--                   CloudEvent into its own outbox table
CREATE EXTENSION IF NOT EXISTS pg_taskevents;

DROP TABLE IF EXISTS bench_plain, bench_attached, bench_plpgsql;
\set attach off
\set tasks bench_plain
\ir ../../test/lib/tasks.sql
\set tasks bench_attached
\ir ../../test/lib/tasks.sql
\set tasks bench_plpgsql
\ir ../../test/lib/tasks.sql

-- what an application team would write by hand: same envelope, same data,
-- stored as json text like taskevents.outbox (json_build_object and
-- row_to_json are also the cheaper choice in PL/pgSQL)
DROP TABLE IF EXISTS bench_outbox;
CREATE TABLE bench_outbox (
    id bigserial PRIMARY KEY,
    txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    created_at timestamptz NOT NULL DEFAULT statement_timestamp(),
    topic text NOT NULL,
    partition_key text,
    event json NOT NULL);
CREATE INDEX ON bench_outbox (txid);

CREATE OR REPLACE FUNCTION bench_plpgsql_outbox() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    typ text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        r := OLD; typ := 'task.deleted';
    ELSIF TG_OP = 'INSERT' THEN
        r := NEW; typ := 'task.created';
    ELSE
        IF NEW IS NOT DISTINCT FROM OLD THEN RETURN NULL; END IF;
        r := NEW;
        typ := CASE WHEN NEW.completed AND NOT OLD.completed THEN 'task.completed' ELSE 'task.updated' END;
    END IF;
    INSERT INTO bench_outbox (topic, partition_key, event)
    VALUES ('tasks', r.user_id, json_build_object(
        'specversion', '1.0',
        'id', gen_random_uuid(),
        'source', '/pg_taskevents/' || current_database() || '/public/' || TG_TABLE_NAME,
        'type', typ,
        'time', statement_timestamp(),
        'datacontenttype', 'application/json',
        'subject', r.id::text,
        'partitionkey', r.user_id,
        'topic', 'tasks',
        'pubsubname', 'pubsub',
        'data', row_to_json(r)));
    RETURN NULL;
END $$;

CREATE TRIGGER bench_outbox AFTER INSERT OR UPDATE OR DELETE ON bench_plpgsql
    FOR EACH ROW EXECUTE FUNCTION bench_plpgsql_outbox();
SELECT taskevents.attach('bench_attached', due_date_column => 'due_date');
