#!/usr/bin/env bash
# Fault matrix 10: hostile schema.  Objects named like the extension's and
# like the catalog functions its triggers use sit in public and in the
# session's temp schema, the search_path puts them first, and they raise if
# ever called; an unprivileged application role writes tasks through them.
# Its events must still reach taskevents.outbox (intact), nothing reaches the
# impostors; that role can neither read nor change the outbox or the relay
# state.  No broker needed.
set -euo pipefail
source "$(dirname "$0")/lib/faults.sh"
rl_setup hostile nokafka
q -d postgres -c "DROP ROLE IF EXISTS chk_app" >/dev/null   # left by an earlier run

q -d "$DB" <<'SQL'
CREATE ROLE chk_app LOGIN;
GRANT USAGE ON SCHEMA public TO chk_app;
GRANT CREATE ON SCHEMA public TO chk_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.tasks TO chk_app;
GRANT TEMPORARY ON DATABASE relay_hostile TO chk_app;
-- impostors in public: same names as the extension's objects and as the
-- catalog functions the trigger path uses; each raises when called
CREATE TABLE public.outbox (LIKE taskevents.outbox);
CREATE SEQUENCE public.outbox_id_seq;
CREATE FUNCTION public.raise_impostor() RETURNS text LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'impostor called'; END $$;
CREATE FUNCTION public.current_slot() RETURNS smallint LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'impostor current_slot'; END $$;
CREATE FUNCTION public.nextval(regclass) RETURNS bigint LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'impostor nextval'; END $$;
CREATE FUNCTION public.pg_current_xact_id() RETURNS xid8 LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'impostor xact id'; END $$;
CREATE FUNCTION public.statement_timestamp() RETURNS timestamptz LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'impostor timestamp'; END $$;
CREATE FUNCTION public.to_jsonb(anyelement) RETURNS jsonb LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'impostor to_jsonb'; END $$;
CREATE FUNCTION public.to_json(anyelement) RETURNS json LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'impostor to_json'; END $$;
CREATE FUNCTION public.gen_random_uuid() RETURNS uuid LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'impostor uuid'; END $$;
CREATE FUNCTION public.publish(text, text, jsonb, text) RETURNS text LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'impostor publish'; END $$;
-- an operator that would capture text = text comparisons from public
CREATE FUNCTION public.hostile_eq(text, text) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'impostor ='; END $$;
CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = text, FUNCTION = public.hostile_eq);
CREATE SCHEMA taskevents_shadow;
CREATE TABLE taskevents_shadow.outbox (LIKE taskevents.outbox);
GRANT ALL ON ALL TABLES IN SCHEMA public TO chk_app;
SQL
before=$(q -d "$DB" -c "SELECT count(*) FROM taskevents.outbox_events")
# the application session: temp impostors first, then public, catalog last
PGOPTIONS="-c search_path=pg_temp,public,taskevents_shadow,pg_catalog" psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -U chk_app <<'SQL' >"$WORK/app.out" 2>&1 || fail "the application's writes failed: $(cat "$WORK/app.out")"
CREATE TEMP TABLE outbox (LIKE public.outbox);
CREATE FUNCTION pg_temp.now() RETURNS timestamptz LANGUAGE sql AS $$ SELECT NULL::timestamptz $$;
SHOW search_path;
INSERT INTO public.tasks (user_id, title) VALUES ('app', 'through the impostors');
UPDATE public.tasks SET title = 'updated' WHERE user_id OPERATOR(pg_catalog.=) 'app';
UPDATE public.tasks SET completed = true WHERE user_id OPERATOR(pg_catalog.=) 'app';
DELETE FROM public.tasks WHERE user_id OPERATOR(pg_catalog.=) 'app';
SELECT count(*) FROM outbox;
SQL
after=$(q -d "$DB" -c "SELECT count(*) FROM taskevents.outbox_events")
[ $((after - before)) -eq 4 ] || fail "$((after - before)) events reached taskevents.outbox, 4 expected"
[ "$(q -d "$DB" -c "SELECT string_agg(event->>'type', ',' ORDER BY id) FROM taskevents.outbox_events WHERE partition_key = 'app'")" \
  = "task.created,task.updated,task.completed,task.deleted" ] || fail "wrong events"
[ "$(q -d "$DB" -c "SELECT count(*) FROM taskevents.outbox_events WHERE partition_key = 'app' AND event->>'specversion' = '1.0'
    AND event->>'id' ~ '^[0-9a-f-]{36}$' AND (event->>'time') IS NOT NULL AND txid IS NOT NULL")" -eq 4 ] || fail "events not intact"
[ "$(q -d "$DB" -c "SELECT (SELECT count(*) FROM public.outbox) + (SELECT count(*) FROM taskevents_shadow.outbox)")" -eq 0 ] \
  || fail "an impostor outbox received rows"

# the unprivileged role reaches nothing of the extension's state
denied=0
for sql in "SELECT * FROM taskevents.outbox" "INSERT INTO taskevents.outbox (slot, topic, data) VALUES (0, 't', '{}')" \
           "UPDATE taskevents.outbox SET topic = 'x'" "DELETE FROM taskevents.outbox" "TRUNCATE taskevents.outbox_0" \
           "SELECT * FROM taskevents.outbox_0" "SELECT * FROM taskevents.pending_events" "SELECT * FROM taskevents.dead_letters" \
           "SELECT * FROM taskevents.relay_consumers" "UPDATE taskevents.relay_consumers SET epoch = 99" \
           "SELECT * FROM taskevents.relay_fetch('default', 1, 0, 10)" "SELECT taskevents.relay_fetch_page('default', 1, 0, 10)" \
           "SELECT taskevents.relay_ack('default', 1, 1, 1, true)" \
           "SELECT taskevents.maintain()" "SELECT taskevents.replay_dead_letter(1)" "SELECT taskevents.relay_lease('default', 'x', 0, '1 s')" \
           "SELECT nextval('taskevents.outbox_id_seq')" "SELECT setval('taskevents.outbox_id_seq', 1)" \
           "CREATE TABLE taskevents.mine (i int)" "CREATE FUNCTION taskevents._current_slot() RETURNS smallint LANGUAGE sql AS 'SELECT 0::smallint'" \
           "ALTER TABLE taskevents.outbox ADD COLUMN x int" "SELECT taskevents.detach('public.tasks')" "SELECT taskevents.grant_relay('chk_app')"; do
  st=$(printf '%s;\n\\echo state=:LAST_ERROR_SQLSTATE\n' "$sql" | psql -X -q -At -d "$DB" -U chk_app 2>/dev/null | sed -n 's/^state=//p')
  [ "$st" = 42501 ] || fail "chk_app: '$sql' gave SQLSTATE $st, 42501 expected"
  denied=$((denied + 1))
done
dropdb "$DB"; q -d postgres -c "DROP ROLE chk_app"
pass "writes through $(grep -c 'CREATE FUNCTION\|CREATE OPERATOR\|CREATE TABLE\|CREATE SEQUENCE' "$0") impostors and search_path pg_temp,public first: 4 intact events in taskevents.outbox, none elsewhere; $denied privileged actions refused (42501)"
