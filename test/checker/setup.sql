-- test/checker/setup.sql: the history checker's record of what committed.
--
-- Run in a test database after the tasks table is attached.  Independently
-- of the extension, two triggers on public.tasks write one row per event the
-- extension must emit into chk.committed, in the same transaction as the
-- write: a rolled-back write (or ROLLBACK TO SAVEPOINT) leaves no row, a
-- committed one always does, whatever happens to the outbox afterwards.
--
-- Every row version carries a unique number in the extra column wseq (a new
-- one on every UPDATE, so no UPDATE is a no-op).  The event of an INSERT or
-- UPDATE is named "w:<new wseq>", the event of a DELETE "d:<old wseq>"; the
-- checker reads the same name back from the CloudEvent's data.  ord numbers
-- the events in the order they were written: an AFTER ROW trigger runs while
-- the writer holds the row lock, so it orders a session's writes and the
-- writes of one task.
CREATE SCHEMA chk;
CREATE SEQUENCE chk.wseq;
CREATE SEQUENCE chk.ord;
CREATE TABLE chk.committed (
    ekey     text PRIMARY KEY,          -- w:<wseq> / d:<wseq> / any name a test gives
    user_id  text NOT NULL,             -- expected Kafka key
    task_id  text,                      -- expected subject (per-task order)
    pid      integer NOT NULL DEFAULT pg_backend_pid(),        -- session: its
    txid     xid8 NOT NULL DEFAULT pg_current_xact_id(),       -- transactions are sequential
    wseq     bigint NOT NULL,           -- the row version the event carries
    ord      bigint NOT NULL DEFAULT nextval('chk.ord'),       -- order of the writes in the
                                        -- session; per task too (row locks serialise them)
    expect   text NOT NULL DEFAULT 'deliver' CHECK (expect IN ('deliver', 'dlq')),
    at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
ALTER TABLE public.tasks ADD COLUMN wseq bigint NOT NULL DEFAULT nextval('chk.wseq');
CREATE INDEX ON public.tasks (user_id, id);

CREATE FUNCTION chk.bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.wseq := nextval('chk.wseq');
    RETURN NEW;
END $$;

CREATE FUNCTION chk.record() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO chk.committed (ekey, user_id, task_id, wseq, expect)
        VALUES ('d:' || OLD.wseq, OLD.user_id::text, OLD.id::text, OLD.wseq,
                CASE WHEN octet_length(to_jsonb(OLD.*)::text) > 900000 THEN 'dlq' ELSE 'deliver' END);
        RETURN OLD;
    END IF;
    INSERT INTO chk.committed (ekey, user_id, task_id, wseq, expect)
    VALUES ('w:' || NEW.wseq, NEW.user_id::text, NEW.id::text, NEW.wseq,
            -- an event larger than the broker's message.max.bytes must be dead-lettered
            CASE WHEN octet_length(to_jsonb(NEW.*)::text) > 900000 THEN 'dlq' ELSE 'deliver' END);
    RETURN NEW;
END $$;

CREATE TRIGGER chk_bump BEFORE UPDATE ON public.tasks FOR EACH ROW EXECUTE FUNCTION chk.bump();
CREATE TRIGGER chk_record AFTER INSERT OR UPDATE OR DELETE ON public.tasks
    FOR EACH ROW EXECUTE FUNCTION chk.record();
