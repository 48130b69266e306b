#!/usr/bin/env bash
# Fault matrix 9: bad input at the SQL surface.  Each write either fails
# with a clear SQLSTATE (asserted) or produces a correct event (its contents
# asserted against what was written); nothing crashes the server (its log
# is searched for a backend killed by a signal).  No broker needed.
set -euo pipefail
source "$(dirname "$0")/lib/faults.sh"
rl_setup badinput nokafka

srvlog=${PGHOST:-}/server.log
crashes0=$(grep -c 'terminated by signal' "$srvlog" 2>/dev/null || true)
# state SQL: the SQLSTATE the statement ends with ("00000" when it succeeds)
state() {
  printf '%s;\n\\echo state=:LAST_ERROR_SQLSTATE\n' "$1" \
    | psql -X -q -At -d "$DB" -v ON_ERROR_STOP=0 -v VERBOSITY=terse 2>"$WORK/err" | sed -n 's/^state=//p' | tail -1
}
expect() {  # expect SQLSTATE LABEL SQL
  local got; got=$(state "$3")
  [ "$got" = "$1" ] || fail "$2: SQLSTATE $got, expected $1 ($(head -c 300 "$WORK/err"))"
  echo "  $2: $1" >>"$WORK/results.txt"
}
last_event() { q -d "$DB" -c "SELECT event$1 FROM taskevents.outbox_events ORDER BY id DESC LIMIT 1"; }
n_events() { q -d "$DB" -c "SELECT count(*) FROM taskevents.outbox_events"; }

q -d "$DB" <<'SQL'
CREATE TABLE public.loose (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, user_id text, title text,
  completed boolean NOT NULL DEFAULT false, due_date timestamptz, is_recurring boolean NOT NULL DEFAULT false,
  recurring_interval text);
SELECT taskevents.attach('public.loose');
SQL

# NULL user id: refused by the extension itself (23502), no event
before=$(n_events)
expect 23502 "NULL user id (nullable column)" "INSERT INTO loose (user_id, title) VALUES (NULL, 'x')"
expect 23502 "NULL user id by UPDATE" "INSERT INTO loose (user_id, title) VALUES ('u', 'x'); UPDATE loose SET user_id = NULL"
q -d "$DB" -c "DELETE FROM loose"
[ "$(n_events)" -eq $((before + 2)) ] || fail "NULL user id wrote events"

# empty user id: a correct event with an empty key
expect 00000 "empty user id" "INSERT INTO tasks (user_id, title) VALUES ('', 'empty key')"
[ "$(last_event "->>'partitionkey'")" = "" ] && [ "$(q -d "$DB" -c "SELECT partition_key FROM taskevents.outbox ORDER BY id DESC LIMIT 1")" = "" ] \
  || fail "empty user id: partition key not empty"

# invalid UTF-8 never gets in
expect 22021 "invalid UTF-8 via convert_from" "INSERT INTO tasks (user_id, title) VALUES ('u', convert_from('\\xc328'::bytea, 'UTF8'))"
expect 22021 "invalid UTF-8 in a literal" "INSERT INTO tasks (user_id, title) VALUES ('u', E'\\xc3\\x28')"
expect 42601 "NUL character in a literal" "INSERT INTO tasks (user_id, title) VALUES ('u', E'a\\u0000b')"
expect 54000 "NUL character via chr(0)" "INSERT INTO tasks (user_id, title) VALUES ('u', 'a' || chr(0))"

# hostile values survive byte for byte, in data and in the key
hostile="'); DROP TABLE tasks; -- \"quoted\" \\ back\\slash %s %n \$\$ {\"json\": [1]} \\u0000 ∑ 🙂 ‮rtl"
ctrl=$(printf 'ctl\001\002\033[31m\t\r\n')
for v in "$hostile" "$ctrl" "$(python3 -c 'print("é" * 3000)')"; do
  echo "INSERT INTO tasks (user_id, title, description, tags) VALUES (:'v', :'v', :'v', ARRAY[:'v', NULL, ''])" \
    | q -d "$DB" -v v="$v" || fail "hostile value refused"
  echo "SELECT 1 FROM taskevents.outbox_events WHERE id = (SELECT max(id) FROM taskevents.outbox)
     AND partition_key = :'v' AND event->>'partitionkey' = :'v' AND event->'data'->>'title' = :'v'
     AND event->'data'->>'description' = :'v' AND (event->'data'->'tags')::jsonb = jsonb_build_array(:'v', NULL, '')" | q -d "$DB" -v v="$v" | grep -qx 1 \
    || fail "hostile value changed on its way into the event: $(printf %q "$v" | head -c 80)"
done
echo "  hostile values (SQL/JSON/format metacharacters, control characters, RTL, 3000 x 2-byte): exact" >>"$WORK/results.txt"

# very large rows and huge arrays: correct events
q -d "$DB" -c "INSERT INTO tasks (user_id, title, description) VALUES ('big', 'big', repeat('d', 20000000))"
[ "$(last_event "->'data'->>'description'" | wc -c)" -eq 20000001 ] || fail "20 MB description not in the event"
q -d "$DB" -c "INSERT INTO tasks (user_id, title, tags) SELECT 'tags', 'tags', array_agg('t' || g) FROM generate_series(1, 200000) g"
[ "$(last_event "->'data'->'tags' IS NOT NULL AND json_array_length(event->'data'->'tags') = 200000")" = t ] || fail "200,000 tags not in the event"
q -d "$DB" -c "INSERT INTO tasks (user_id, title) VALUES (repeat('k', 1000000), 'huge key')"
[ "$(q -d "$DB" -c "SELECT length(partition_key) FROM taskevents.outbox ORDER BY id DESC LIMIT 1")" -eq 1000000 ] || fail "1 MB user id"
echo "  20 MB description, 200,000 tags, 1 MB user id: correct events" >>"$WORK/results.txt"

# dates and recurrence at the edges
expect 22023 "unknown recurring interval" "INSERT INTO tasks (user_id, title, is_recurring, recurring_interval, due_date) VALUES ('r', 'r', true, 'hourly', now() + interval '2 days')"
for d in infinity -infinity '294276-12-31 23:59:59+00' '4713-01-01 00:00:00+00 BC'; do
  st=$(state "INSERT INTO tasks (user_id, title, is_recurring, recurring_interval, due_date) VALUES ('edge', 'e', true, 'monthly', '$d');
              UPDATE tasks SET completed = true WHERE user_id = 'edge' AND NOT completed")
  case $st in 00000|22008|22007|22023|0A000) echo "  recurring task due '$d' completed: $st" >>"$WORK/results.txt" ;;
    *) fail "due '$d': unexpected SQLSTATE $st ($(head -c 300 "$WORK/err"))" ;; esac
  q -d "$DB" -c "DELETE FROM tasks WHERE user_id = 'edge'" >/dev/null
done
st=$(state "SELECT taskevents.fire_due_reminders()"); [ "$st" = 00000 ] || fail "fire_due_reminders after edge dates: $st"

# publish() with bad arguments
expect 22023 "publish: bad topic" "SELECT taskevents.publish('bad topic!', 't', '{}', 'k')"
for a in "NULL, 't', '{}', 'k'" "'tasks', NULL, '{}', 'k'" "'tasks', 't', NULL, 'k'" "'tasks', 't', '{}', NULL" "'tasks', '', '{}', 'k'"; do
  st=$(state "SELECT taskevents.publish($a)")
  case $st in 22004|22023|23502|22000|00000) echo "  publish($a): $st" >>"$WORK/results.txt" ;;
    *) fail "publish($a): unexpected SQLSTATE $st ($(head -c 300 "$WORK/err"))" ;; esac
done

"$PG_BINDIR/pg_isready" -q || fail "the server is down"
crashes=$(grep -c 'terminated by signal' "$srvlog" 2>/dev/null || true)
[ "$crashes" = "$crashes0" ] || fail "a backend crashed: $(grep 'terminated by signal' "$srvlog" | tail -2)"
cat "$WORK/results.txt"
pass "bad SQL input: $(wc -l <"$WORK/results.txt") cases, clear errors or exact events, no crash"
