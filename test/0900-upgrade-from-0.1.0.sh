#!/usr/bin/env bash
# Upgrade from 0.1.0 without losing an event, as a DBA would do it:
# 0.1.0 (library and SQL, built from the git tag) runs with its own relay
# delivering to a real broker; it leaves dead letters, inbox rows and
# pending events of every kind.  The current build is installed over it
# (the files replaced, as a package upgrade does) and ALTER EXTENSION
# pg_taskevents UPDATE runs.  Then the current relay delivers every event
# that was pending, exactly once and with its CloudEvent id unchanged,
# without re-sending what 0.1.0's relay had delivered; dead letters and
# inbox entries are intact and usable; pg_dump/pg_restore of the upgraded
# database keeps the pending events, the registry and the dead letters.
set -euo pipefail
source "$(dirname "$0")/lib/relay.sh"
source "$(dirname "$0")/lib/upgrade.sh"

NEW_VERSION=$(up_current_version)
cleanup() {
  local st=$? p f
  for p in "${RL_PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  if [ $st -ne 0 ] && [ -n "${WORK:-}" ]; then
    for f in "$WORK"/*.log; do [ -f "$f" ] && { echo "=== $f (tail)"; tail -n 15 "$f"; }; done
  fi
  [ "$RL_KAFKA" = 1 ] && kafka_stop >/dev/null 2>&1
  up_cleanup
  exit $st
}
trap cleanup EXIT
up_setup from010 relay
WORK=$UP_DIR/work; mkdir -p "$WORK"
DB=upgrade_src
kafka_start >"$WORK/kafka-start.log" 2>&1 || fail "kafka did not start"
RL_KAFKA=1
kafka_create_topics >>"$WORK/kafka-start.log" 2>&1 || fail "topics not created"

# --- 0.1.0 in service ------------------------------------------------------
fresh_db "$DB"
q -d "$DB" -c "ALTER DATABASE $DB SET taskevents.rotation_period = 86400"
make_tasks_table "$DB" >/dev/null
[ "$(q -d "$DB" -c "SELECT extversion FROM pg_extension WHERE extname = 'pg_taskevents'")" = "$UP_OLD_VERSION" ] \
  || fail "expected pg_taskevents $UP_OLD_VERSION before the upgrade"

rl_write 60 6
RELAY_SAVED=$RELAY; RELAY=$UP_OLD_RELAY
rl_relay old
RELAY=$RELAY_SAVED
rl_wait 30 rl_all_delivered tasks || fail "0.1.0's relay did not deliver the first events"
rl_log_has old "\"version\":\"$UP_OLD_VERSION\"" || fail "the old relay does not say it is $UP_OLD_VERSION"
# two rows that are not CloudEvents: 0.1.0's relay dead-letters them at once
q -d "$DB" -c "INSERT INTO taskevents.outbox (slot, topic, partition_key, event) VALUES
  (taskevents.current_slot(), 'tasks', 'user1', '[\"not\", \"an\", \"event\"]'),
  (taskevents.current_slot(), 'tasks', 'user2', '{\"specversion\": \"0.3\", \"id\": \"x1\", \"source\": \"s\", \"type\": \"t\"}')"
kafka_wait_count tasks-dlq 2 20 >/dev/null || fail "0.1.0's relay did not dead-letter the malformed rows"
rl_wait 10 test "$(q -d "$DB" -c "SELECT count(*) FROM taskevents.dead_letters")" = 2 || fail "dead letters not recorded"
kill -TERM "$RL_PID"; wait "$RL_PID" || fail "0.1.0's relay exit status $?"
delivered_before=$(kafka_topic_count tasks)

# inbox entries of a subscriber
for i in 1 2 3; do
  [ "$(q -d "$DB" -c "SELECT taskevents.process_once('/upgrade-test', 'ev-$i')")" = t ] || fail "inbox entry $i"
done

# pending at upgrade time: every kind of event
q -d "$DB" >/dev/null <<'SQL'
INSERT INTO tasks (user_id, title, due_date) SELECT 'user' || (g % 6), 'pending ' || g, now() + interval '3 days'
  FROM generate_series(1, 20) g;
UPDATE tasks SET priority = 'high' WHERE id % 4 = 0;
INSERT INTO tasks (user_id, title, is_recurring, recurring_interval, due_date)
  VALUES ('user3', 'weekly review', true, 'weekly', now() + interval '1 day');
UPDATE tasks SET completed = true WHERE title = 'weekly review' OR id % 7 = 0;
DELETE FROM tasks WHERE id % 9 = 0;
SELECT taskevents.publish('tasks', 'com.example.custom', '{"k": 1}', 'user4');
SQL
# roles given the relay's, a consumer's and an analyst's rights under 0.1.0
q -d "$DB" >/dev/null <<'SQL'
CREATE ROLE te_relay_old LOGIN; SELECT taskevents.grant_relay('te_relay_old');
CREATE ROLE te_consumer_old; SELECT taskevents.grant_consumer('te_consumer_old');
CREATE ROLE te_analyst_old; SELECT taskevents.grant_analytics('te_analyst_old');
SQL
q -d "$DB" -c "SELECT topic || ' ' || (event->>'id') FROM taskevents.pending_events ORDER BY id" >"$WORK/pending-before"
npending=$(wc -l <"$WORK/pending-before")
[ "$npending" -ge 40 ] || fail "expected at least 40 pending events before the upgrade, got $npending"
grep -q '^reminders ' "$WORK/pending-before" || fail "no pending reminder event before the upgrade"

# --- the upgrade -----------------------------------------------------------
up_install_current
# Between the new files and ALTER EXTENSION UPDATE, new sessions load the
# new library under the old SQL objects: every C function 0.1.0's SQL names
# must still be there, and a write either works or is refused with 55000
# (never an event lost, never another error).
"$PGTE_ROOT/scripts/check-exports" "$COPY_PKGLIBDIR/pg_taskevents.so" "$UP_DIR/old/pg_taskevents--$UP_OLD_VERSION.sql" \
  >/dev/null || fail "the new library lacks C functions that $UP_OLD_VERSION's SQL objects name"
if out=$(psql -X -q -d "$DB" -v ON_ERROR_STOP=1 -v VERBOSITY=verbose \
           -c "INSERT INTO tasks (user_id, title) VALUES ('user2', 'between the files and the update')" 2>&1); then
  between="written"
  q -d "$DB" -c "SELECT 'tasks ' || (event->>'id') FROM taskevents.pending_events ORDER BY id DESC LIMIT 1" >>"$WORK/pending-before"
else
  grep -q 'ERROR:  55000' <<<"$out" || fail "a write before ALTER EXTENSION UPDATE failed otherwise than with 55000: $out"
  between="refused with 55000"
fi
q -d "$DB" -c "ALTER EXTENSION pg_taskevents UPDATE"
[ "$(q -d "$DB" -c "SELECT extversion FROM pg_extension WHERE extname = 'pg_taskevents'")" = "$NEW_VERSION" ] \
  || fail "extension not at $NEW_VERSION after ALTER EXTENSION UPDATE"
q -d "$DB" -c "SELECT topic || ' ' || (event->>'id') FROM taskevents.pending_events ORDER BY id" >"$WORK/pending-after"
diff -u "$WORK/pending-before" "$WORK/pending-after" || fail "the pending events changed in the upgrade"
npending=$(wc -l <"$WORK/pending-before")
pass "ALTER EXTENSION pg_taskevents UPDATE: $UP_OLD_VERSION -> $NEW_VERSION, $npending events still pending, ids unchanged (a write between the new files and the update: $between)"

# The roles granted under 0.1.0 hold exactly what 0.2.0's grant functions
# give a new role (relay_wait() and the maintenance list for the relay...).
privs() {
  q -d "$DB" -c "SELECT string_agg(x, ', ' ORDER BY x) FROM (
      SELECT p.oid::regprocedure::text AS x FROM pg_proc p
       WHERE p.pronamespace = 'taskevents'::regnamespace AND has_function_privilege('$1', p.oid, 'EXECUTE')
      UNION ALL
      SELECT c.oid::regclass::text || ' ' || priv FROM pg_class c, unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE']) priv
       WHERE c.relnamespace = 'taskevents'::regnamespace AND has_table_privilege('$1', c.oid, priv)) s"
}
for kind in relay consumer analyst; do
  fn=grant_$kind; [ $kind = analyst ] && fn=grant_analytics
  q -d "$DB" -c "CREATE ROLE te_${kind}_new; SELECT taskevents.$fn('te_${kind}_new')" >/dev/null
  old_privs=$(privs te_${kind}_old); new_privs=$(privs te_${kind}_new)
  [ -n "$new_privs" ] || fail "$fn gives a new role nothing"
  [ "$old_privs" = "$new_privs" ] || fail "the $kind role granted under $UP_OLD_VERSION: $old_privs; granted under $NEW_VERSION: $new_privs"
done
pass "roles granted the relay's, a consumer's and an analyst's rights under $UP_OLD_VERSION hold what $NEW_VERSION's grant functions give"

# the upgraded extension in use: new writes, in a new session (the new library)
q -d "$DB" -c "INSERT INTO tasks (user_id, title) VALUES ('user5', 'after the upgrade')"
q -d "$DB" -c "UPDATE tasks SET title = 'renamed after the upgrade' WHERE title = 'pending 2'"

# --- the current relay takes over -------------------------------------------
rl_once new --db "dbname=$DB user=te_relay_old" \
  || fail "the $NEW_VERSION relay, as the role granted under $UP_OLD_VERSION, failed"
rl_log_has new "\"version\":\"$NEW_VERSION\"" || fail "the new relay does not say it is $NEW_VERSION"
[ "$(q -d "$DB" -c "SELECT count(*) FROM taskevents.pending_events")" = 0 ] || fail "events still pending"
# every event exactly once, ids as in the outbox, per-user order kept
rl_verify tasks
ntasks=$RL_VERIFIED
rl_verify reminders
kafka_records tasks >"$WORK/all-tasks.json"; kafka_records reminders >>"$WORK/all-tasks.json"
jq -r '"\(.topic) \(.payload | fromjson | .id)"' "$WORK/all-tasks.json" | sort >"$WORK/received"
sort "$WORK/pending-before" | comm -23 - "$WORK/received" >"$WORK/missing"
[ ! -s "$WORK/missing" ] || fail "pending events not delivered (or with another id): $(head -3 "$WORK/missing" | tr '\n' ' ')"
[ "$(sort "$WORK/received" | uniq -d | wc -l)" = 0 ] || fail "duplicates on the broker"
[ "$delivered_before" -lt "$ntasks" ] || fail "nothing delivered after the upgrade"
pass "the $NEW_VERSION relay delivered the $npending pending events once each with their ids, and nothing $UP_OLD_VERSION had delivered ($delivered_before on tasks) again"

# dead letters and inbox entries made by 0.1.0, after the upgrade
[ "$(q -d "$DB" -c "SELECT count(*) FROM taskevents.dead_letters WHERE attempts = 0 AND dlq_topic = 'tasks-dlq'
                    AND reason LIKE 'invalid cloudevent%'")" = 2 ] || fail "dead letters changed in the upgrade"
[ "$(q -d "$DB" -c "SELECT taskevents.process_once('/upgrade-test', 'ev-2')")" = f ] || fail "inbox entry lost in the upgrade"
[ "$(q -d "$DB" -c "SELECT taskevents.process_once('/upgrade-test', 'ev-4')")" = t ] || fail "inbox refuses a new entry"
pass "dead letters and inbox entries of $UP_OLD_VERSION intact and in use"

# --- dump and restore of the upgraded database ------------------------------
q -d "$DB" -c "INSERT INTO tasks (user_id, title) SELECT 'user' || g, 'before the dump' FROM generate_series(1, 3) g"
q -d "$DB" -c "SELECT event->>'id' FROM taskevents.pending_events ORDER BY id" >"$WORK/dump-pending-src"
[ "$(wc -l <"$WORK/dump-pending-src")" = 3 ] || fail "3 pending events expected before the dump"
"$UP_BINDIR/pg_dump" -Fc -d "$DB" -f "$WORK/dump" 2>"$WORK/dump.log" || { cat "$WORK/dump.log"; fail "pg_dump failed"; }
createdb upgrade_restored
"$UP_BINDIR/pg_restore" -d upgrade_restored "$WORK/dump" 2>"$WORK/restore.log" || { cat "$WORK/restore.log"; fail "pg_restore failed"; }
q -d upgrade_restored -c "SELECT event->>'id' FROM taskevents.pending_events ORDER BY id" >"$WORK/dump-pending-dst"
diff -u "$WORK/dump-pending-src" "$WORK/dump-pending-dst" || fail "restored pending events differ"
[ "$(q -d upgrade_restored -c "SELECT extversion FROM pg_extension WHERE extname = 'pg_taskevents'")" = "$NEW_VERSION" ] \
  || fail "restored extension not at $NEW_VERSION"
[ "$(q -d upgrade_restored -c "SELECT count(*) FROM taskevents.dead_letters")" = 2 ] || fail "dead letters lost in the dump"
[ "$(q -d upgrade_restored -c "SELECT count(*) FROM taskevents.attached_tables WHERE task_table = 'public.tasks'::regclass")" = 1 ] \
  || fail "registry lost in the dump"
q -d upgrade_restored -c "INSERT INTO tasks (user_id, title) VALUES ('user1', 'after the restore')"
[ "$(q -d upgrade_restored -c "SELECT count(*) FROM taskevents.pending_events")" = 4 ] || fail "writes after the restore"
pass "pg_dump/pg_restore after the upgrade keeps the 3 pending events, dead letters and registry"
