-- attach() validates the table and installs the triggers once; detach()
-- undoes it; every refusal names what is wrong, with its SQLSTATE.
\set VERBOSITY terse
SET client_min_messages = warning;
SET TimeZone = 'UTC';
SELECT make_tasks('at_tasks');

SELECT taskevents.attach('at_tasks');
SELECT taskevents.attach('at_tasks');    -- twice: still one trigger of each kind
SELECT tgname, tgenabled, pg_get_triggerdef(oid) FROM pg_trigger
 WHERE tgrelid = 'at_tasks'::regclass ORDER BY tgname;
SELECT task_table, topic, source, pubsubname, id_column, user_id_column, completed_column,
       due_date_column, is_recurring_column, recurring_interval_column, reminder_sent_at_column
  FROM taskevents.attached_tables WHERE task_table = 'at_tasks'::regclass;

SELECT ev_mark() AS mark \gset
INSERT INTO at_tasks (id, user_id, title) VALUES (1, 'a', 'one event, not two');
SELECT count(*) AS events FROM ev_since(:mark);

-- re-attach with another topic and source: new writes follow at once
SELECT taskevents.attach('at_tasks', topic => 'team-tasks', source => 'https://example.com/todo');
SELECT ev_mark() AS mark \gset
UPDATE at_tasks SET title = 'moved' WHERE id = 1;
SELECT topic, event->>'topic' AS event_topic, event->>'source' AS source FROM ev_since(:mark);

-- detach: refused while the table's events are undelivered (no relay runs
-- here), unless forced; then no more events, triggers gone, TRUNCATE
-- allowed again
SELECT try($$SELECT taskevents.detach('at_tasks')$$);
SELECT count(*) AS triggers_kept FROM pg_trigger WHERE tgrelid = 'at_tasks'::regclass;
SELECT taskevents.detach('at_tasks', force => true);
SELECT ev_mark() AS mark \gset
UPDATE at_tasks SET title = 'silent' WHERE id = 1;
SELECT count(*) AS events_after_detach FROM ev_since(:mark);
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'at_tasks'::regclass;
SELECT try($$SELECT taskevents.detach('at_tasks')$$);
TRUNCATE at_tasks;

-- re-attach after detach works
SELECT taskevents.attach('at_tasks');
INSERT INTO at_tasks (id, user_id, title) VALUES (2, 'a', 'back');
SELECT event->>'type' AS type FROM ev_since(:mark);

-- custom column names
CREATE TABLE at_custom (todo_id int PRIMARY KEY, owner uuid NOT NULL, done boolean,
                        deadline timestamptz, repeats boolean, every varchar(10), label text);
SELECT try($$SELECT taskevents.attach('at_custom')$$);
SELECT taskevents.attach('at_custom', id_column => 'todo_id', user_id_column => 'owner',
                         completed_column => 'done', due_date_column => 'deadline',
                         is_recurring_column => 'repeats', recurring_interval_column => 'every');
SELECT ev_mark() AS mark \gset
INSERT INTO at_custom VALUES (7, 'd3b07384-d113-4ec4-8f3c-1d2c3b4a5e6f', false, NULL, false, NULL, 'x');
UPDATE at_custom SET done = true;
SELECT event->>'type' AS type, event->>'subject' AS subject, partition_key FROM ev_since(:mark);

-- without reminders and recurrence: pass NULL for their columns
CREATE TABLE at_minimal (id text PRIMARY KEY, user_id text, completed boolean);
SELECT try($$SELECT taskevents.attach('at_minimal')$$);
SELECT taskevents.attach('at_minimal', due_date_column => NULL, is_recurring_column => NULL,
                         recurring_interval_column => NULL);

-- bad input
SELECT try($$SELECT taskevents.attach(NULL)$$);
SELECT try($$SELECT taskevents.attach('no_such_table')$$);
CREATE VIEW at_view AS SELECT * FROM at_tasks;
SELECT try($$SELECT taskevents.attach('at_view')$$);
SELECT try($$SELECT taskevents.attach('taskevents.outbox_0')$$);
SELECT try($$SELECT taskevents.attach('at_tasks', topic => '')$$);
SELECT try($$SELECT taskevents.attach('at_tasks', topic => 'has space')$$);
SELECT try($$SELECT taskevents.attach('at_tasks', topic => '..')$$);
SELECT left(try(format($$SELECT taskevents.attach('at_tasks', topic => %L)$$, repeat('t', 246))), 40);
SELECT try($$SELECT taskevents.attach('at_tasks', source => '')$$);
SELECT try($$SELECT taskevents.attach('at_tasks', user_id_column => 'owner')$$);
SELECT try($$SELECT taskevents.attach('at_tasks', completed_column => 'title')$$);
SELECT try($$SELECT taskevents.attach('at_tasks', due_date_column => 'title')$$);
SELECT try($$SELECT taskevents.attach('at_tasks', user_id_column => 'tags')$$);
SELECT try($$SELECT taskevents.attach('at_tasks', is_recurring_column => NULL)$$);
SELECT try($$SELECT taskevents.attach('at_tasks', reminder_sent_at_column => 'sent')$$);
SELECT try($$SELECT taskevents.attach('at_tasks', reminder_lead => '-1 hour')$$);
-- a failed attach changed nothing
SELECT topic FROM taskevents.attached_tables WHERE task_table = 'at_tasks'::regclass;

-- a configured column renamed later: clear error at write time
ALTER TABLE at_custom RENAME COLUMN owner TO owner_id;
SELECT try($$UPDATE at_custom SET label = 'y'$$);
ALTER TABLE at_custom RENAME COLUMN owner_id TO owner;

-- dropping an attached table forgets it
DROP TABLE at_custom;
SELECT count(*) AS registry_rows FROM taskevents.attached_tables WHERE task_table::text = 'at_custom';
SELECT count(*) AS dangling FROM taskevents.attached_tables a
 WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = a.task_table);
