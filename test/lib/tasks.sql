-- The brief's tasks table: the one definition the integration tests, the
-- benchmarks, the demo and the pg_regress suites create (test/lib/pg.sh
-- make_tasks_table, bench/*/setup.sql, scripts/demo, sql/00_setup.sql).  A
-- psql script:
--
--   psql -v tasks=public.tasks -f test/lib/tasks.sql       created and attached
--   psql -v tasks=bench_plain -v attach=off -f ...         created only
--
-- From another script: \set tasks NAME, then \ir (or \i) this file.
-- The pg_regress suites read it once, with echo off (sql/00_setup.sql:
-- tasks_brief, unattached, and make_tasks() for a smaller copy), and copy
-- it with CREATE TABLE ... (LIKE ...).  The isolation specs (specs/) keep
-- their own tables: they have no way to include a file.
\if :{?tasks}
\else
\set tasks public.tasks
\endif
\if :{?attach}
\else
\set attach on
\endif

CREATE TABLE :tasks (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  user_id text NOT NULL,
  title text NOT NULL,
  description text,
  priority text DEFAULT 'medium',
  tags text[] DEFAULT '{}',
  due_date timestamptz,
  is_recurring boolean NOT NULL DEFAULT false,
  recurring_interval text,
  completed boolean NOT NULL DEFAULT false,
  reminder_sent_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now()
);
\if :attach
SELECT taskevents.attach(:'tasks');
\endif
