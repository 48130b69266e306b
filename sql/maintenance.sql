-- The maintenance list: each feature registers its periodic operations;
-- maintenance_operations() says what to run and how often, and
-- run_maintenance() runs one and reports its counts.  The relay's role may
-- run them, nobody else; 0.1.0's names still work.
\set VERBOSITY terse
SET client_min_messages = warning;
SET TimeZone = 'UTC';

SELECT operation, period, feature FROM taskevents.maintenance_operations();
-- operations that run inside another one
SELECT operation, feature, function, phase FROM taskevents.maintenance_registry
 WHERE phase <> 'periodic' ORDER BY operation;
-- every registered function exists with the shape its phase needs
SELECT m.operation, pg_get_function_result(m.function) AS result
  FROM taskevents.maintenance_registry m ORDER BY m.position, m.operation;

SELECT operation, (r).done >= 0 AS ran, (r).failed AS failed
  FROM (SELECT o.operation, taskevents.run_maintenance(o.operation) AS r
          FROM taskevents.maintenance_operations() o) x;
SELECT try($$SELECT * FROM taskevents.run_maintenance('vacuum_everything')$$);
SELECT try($$SELECT * FROM taskevents.run_maintenance(NULL)$$);

-- fire_reminders reports the reminders it fired, and when the next
-- scheduled one is due (NULL: none); the other operations never say
SELECT make_tasks('maint_tasks');
SELECT taskevents.attach('maint_tasks');
INSERT INTO maint_tasks (id, user_id, title, due_date) VALUES (1, 'ann', 'soon', now() + interval '1 hour');
SELECT * FROM taskevents.run_maintenance('fire_reminders');
SELECT * FROM taskevents.run_maintenance('fire_reminders');
INSERT INTO maint_tasks (id, user_id, title, due_date) VALUES (2, 'bob', 'later', now() + interval '3 days');
SELECT done, failed,
       next_at = (SELECT r.remind_at FROM taskevents.reminders r WHERE r.task_id = '2') AS next_at_is_bobs_reminder
  FROM taskevents.run_maintenance('fire_reminders');
SELECT operation, (r).next_at FROM (SELECT o.operation, taskevents.run_maintenance(o.operation) AS r
                                      FROM taskevents.maintenance_operations() o
                                     WHERE o.operation <> 'fire_reminders') x;

-- who may run them
CREATE ROLE regress_maint_relay;
CREATE ROLE regress_maint_other;
SELECT taskevents.grant_relay('regress_maint_relay');
SET ROLE regress_maint_relay;
SELECT count(*) AS operations FROM taskevents.maintenance_operations();
SELECT done >= 0 AS ran FROM taskevents.run_maintenance('prune_inbox');
SELECT try($$SELECT * FROM taskevents.maintenance_registry$$);
SELECT try($$UPDATE taskevents.maintenance_registry SET period = '1 ms'$$);
RESET ROLE;
SET ROLE regress_maint_other;
SELECT try($$SELECT * FROM taskevents.maintenance_operations()$$);
SELECT try($$SELECT * FROM taskevents.run_maintenance('rotate_outbox')$$);
RESET ROLE;

-- 0.1.0's names, kept for a release
SELECT taskevents.maintain() >= 0 AS maintain_runs;
SELECT taskevents.inbox_prune() >= 0 AS inbox_prune_runs;
SELECT taskevents.analytics_maintain();
SELECT p.oid::regprocedure AS deprecated, obj_description(p.oid, 'pg_proc') AS comment
  FROM pg_proc p WHERE p.pronamespace = 'taskevents'::regnamespace
   AND obj_description(p.oid, 'pg_proc') LIKE 'Deprecated%' ORDER BY 1::text;

SELECT taskevents.detach('maint_tasks', force => true);
DROP TABLE maint_tasks;
DROP OWNED BY regress_maint_relay;
DROP ROLE regress_maint_relay, regress_maint_other;
