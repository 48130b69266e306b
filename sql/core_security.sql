-- Least privilege: application roles write tasks without any grant on the
-- extension's tables; nobody else can read or change the outbox; a hostile
-- search_path cannot redirect events.
\set VERBOSITY terse
SET client_min_messages = warning;
SET TimeZone = 'UTC';
SELECT make_tasks('sec_tasks');
SELECT taskevents.attach('sec_tasks');

CREATE ROLE regress_app;
CREATE ROLE regress_relay;
GRANT SELECT, INSERT, UPDATE, DELETE ON sec_tasks TO regress_app;
SELECT taskevents.grant_relay('regress_relay');

-- the application writes tasks; its events arrive
SELECT ev_mark() AS mark \gset
SET ROLE regress_app;
INSERT INTO sec_tasks (id, user_id, title) VALUES (1, 'alice', 'by the app');
UPDATE sec_tasks SET completed = true WHERE id = 1;
DELETE FROM sec_tasks WHERE id = 1;
-- but cannot touch the extension's tables or call its privileged functions
SELECT try('SELECT * FROM taskevents.outbox');
SELECT try('SELECT * FROM taskevents.pending_events');
SELECT try($$INSERT INTO taskevents.outbox (slot, topic, data) VALUES (0, 'tasks', '{}')$$);
SELECT try('DELETE FROM taskevents.outbox_0');
SELECT try('TRUNCATE taskevents.outbox_0');
SELECT try('UPDATE taskevents.attached_tables SET topic = $$x$$');
SELECT try('SELECT * FROM taskevents.dead_letters');
SELECT try($$SELECT taskevents.publish('tasks', 'x.y', '{}', 'alice')$$);
SELECT try($$SELECT taskevents.attach('sec_tasks', topic => 'stolen')$$);
SELECT try($$SELECT taskevents.relay_lease('default', 'intruder', 0)$$);
SELECT try($$SELECT taskevents._enqueue_event('tasks', 'a', '{}')$$);
RESET ROLE;
SELECT event->>'type' AS type FROM ev_since(:mark);

-- publish() needs an explicit grant
GRANT EXECUTE ON FUNCTION taskevents.publish(text, text, jsonb, text, text) TO regress_app;
SET ROLE regress_app;
SELECT try($$SELECT taskevents.publish('tasks', 'x.y', '{}', 'alice')$$);
RESET ROLE;

-- the relay role can run the protocol, and nothing else
SET ROLE regress_relay;
SELECT taskevents.relay_lease('sec', 'relay-1', 0) AS epoch;
SELECT taskevents.relay_tick('sec', 1) IS NOT NULL AS ticked;
SELECT count(*) > 0 AS fetched FROM taskevents.relay_fetch('sec', 1, 0, 1000000);
SELECT try('SELECT * FROM taskevents.outbox');
SELECT try('INSERT INTO taskevents.relay_acks (consumer, epoch, tick_id, cursor_id, batch_done) VALUES ($$sec$$, 9, 9, 9, true)');
SELECT try($$SELECT taskevents.publish('tasks', 'x.y', '{}', 'alice')$$);
RESET ROLE;

-- hostile objects named like the extension's, and a changed search_path
CREATE SCHEMA evil;
CREATE TABLE evil.outbox (LIKE taskevents.outbox);
CREATE TABLE evil.attached_tables (LIKE taskevents.attached_tables);
CREATE FUNCTION evil.nextval(regclass) RETURNS bigint LANGUAGE sql AS 'SELECT -1::bigint';
CREATE FUNCTION evil.pg_current_xact_id() RETURNS xid8 LANGUAGE sql AS $$SELECT '1'::xid8$$;
CREATE TEMP TABLE outbox (LIKE taskevents.outbox);
GRANT USAGE ON SCHEMA evil TO regress_app;
GRANT ALL ON ALL TABLES IN SCHEMA evil TO regress_app;
SELECT ev_mark() AS mark \gset
SET search_path = evil, pg_temp, public, pg_catalog;
SET ROLE regress_app;
INSERT INTO sec_tasks (id, user_id, title) VALUES (2, 'bob', 'search_path is evil');
RESET ROLE;
RESET search_path;
SELECT event->>'type' AS type, event->>'subject' AS subject FROM ev_since(:mark);
SELECT bool_and(id > 0) AS real_ids FROM taskevents.outbox WHERE id > :mark;
SELECT (SELECT count(*) FROM evil.outbox) + (SELECT count(*) FROM pg_temp.outbox) AS rows_in_decoys;

-- every SECURITY DEFINER function pins search_path; PUBLIC can execute
-- none of the extension's functions
SELECT p.proname, p.proconfig FROM pg_proc p
 WHERE p.pronamespace = 'taskevents'::regnamespace AND p.prosecdef
   AND NOT coalesce(p.proconfig @> ARRAY['search_path=pg_catalog, pg_temp'], false);
SELECT p.proname FROM pg_proc p
 WHERE p.pronamespace = 'taskevents'::regnamespace
   AND has_function_privilege('public', p.oid, 'EXECUTE')
 ORDER BY 1;
SELECT c.relname FROM pg_class c
 WHERE c.relnamespace = 'taskevents'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'S')
   AND (has_table_privilege('public', c.oid, 'SELECT') OR has_table_privilege('public', c.oid, 'INSERT')
        OR has_table_privilege('public', c.oid, 'UPDATE') OR has_table_privilege('public', c.oid, 'DELETE'))
 ORDER BY 1;

DROP SCHEMA evil CASCADE;
REVOKE ALL ON sec_tasks FROM regress_app;
REVOKE EXECUTE ON FUNCTION taskevents.publish(text, text, jsonb, text, text) FROM regress_app;
DROP OWNED BY regress_relay;
DROP ROLE regress_app;
DROP ROLE regress_relay;
