#!/usr/bin/env bash
# The event catalog cannot drift from the code: the real system (PostgreSQL,
# the extension, the relay, a real Kafka broker) produces every event type of
# docs/events.md, and every record read back from Kafka is validated against
# its JSON Schema in schemas/ (jsonschema, draft 2020-12, formats checked),
# together with the record layout (content-type, key, topic, dead-letter
# headers).  Then deliberately broken copies of real events must be rejected.
set -euo pipefail
source "$(dirname "$0")/lib/relay.sh"
PY=$("$PGTE_ROOT/schemas/venv.sh") || fail "python venv for the validator"
VALIDATE=("$PY" "$PGTE_ROOT/schemas/validate.py")
"${VALIDATE[@]}" check-schemas >/dev/null || fail "schemas are not valid draft 2020-12"
rl_setup schemas

# Every event type.  Trace context on the first write (its task.created and
# reminder.scheduled carry it); alice's task is due in
# three days (reminder scheduled), bob's recurring task is completed (next
# instance created, reminder cancelled and scheduled again), carol's is due
# within the lead time (reminder fires at the relay's next firing).
q -d "$DB" <<'SQL' >/dev/null
SET taskevents.traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
INSERT INTO tasks (user_id, title, description, priority, tags, due_date)
  VALUES ('alice', 'write report', 'q4 numbers', 'high', '{work,q4}', now() + interval '3 days');
RESET taskevents.traceparent;
INSERT INTO tasks (user_id, title, due_date, is_recurring, recurring_interval)
  VALUES ('bob', 'water plants', now() + interval '2 days', true, 'weekly');
UPDATE tasks SET title = 'write the report' WHERE user_id = 'alice';
UPDATE tasks SET due_date = due_date + interval '1 day' WHERE user_id = 'alice';
UPDATE tasks SET completed = true WHERE user_id = 'bob';
UPDATE tasks SET due_date = NULL WHERE user_id = 'bob' AND NOT completed;
DELETE FROM tasks WHERE user_id = 'alice';
INSERT INTO tasks (user_id, title, due_date) VALUES ('carol', 'call the dentist', now() + interval '1 hour');
SELECT taskevents.publish('tasks', 'com.example.note', '{"text": "hello"}', 'dave');
SELECT taskevents.publish('tasks', 'com.example.oversize', jsonb_build_object('blob', repeat('x', 1100000)), 'erin');
SQL

# Short retries: the oversize event reaches tasks-dlq after one retry.
rl_relay relay --retry-backoff-ms 50
triggered() { [ "$(q -d "$DB" -c "SELECT count(*) FROM taskevents.outbox_events WHERE event->>'type' = 'reminder.triggered'")" -ge 1 ]; }
rl_wait 30 triggered || fail "reminder.triggered not written (relay reminders hook)"
dead() { [ "$(kafka_topic_count tasks-dlq)" -ge 1 ]; }
rl_wait 30 dead || fail "oversize event not dead-lettered"
rl_wait 30 rl_all_delivered tasks || fail "tasks not delivered"
rl_wait 30 rl_all_delivered reminders || fail "reminders not delivered"
kill -TERM "$RL_PID"; wait "$RL_PID" || fail "relay exit status $?"

for t in tasks reminders tasks-dlq; do kafka_records "$t"; done >"$WORK/records.json"
# PGTE_EVENTS_OUT=FILE keeps the records (the examples in docs/events.md come from there)
[ -n "${PGTE_EVENTS_OUT:-}" ] && cp "$WORK/records.json" "$PGTE_EVENTS_OUT"
"${VALIDATE[@]}" records "$WORK/records.json" >"$WORK/summary.json" || { cat "$WORK/summary.json"; fail "records do not match the schemas"; }
for t in task.created task.updated task.completed task.deleted \
         reminder.scheduled reminder.cancelled reminder.triggered com.example.note dead:com.example.oversize; do
  jq -e --arg t "$t" '.types[$t] >= 1' "$WORK/summary.json" >/dev/null || fail "no $t record: $(cat "$WORK/summary.json")"
done
n=$(jq .records "$WORK/summary.json")
# the Kafka records are the outbox, nothing more (the dead letter aside)
want=$(q -d "$DB" -c "SELECT count(*) FROM taskevents.outbox_events WHERE topic IN ('tasks', 'reminders')")
[ "$n" -eq "$want" ] || fail "$n records, outbox has $want events"
# contents that the schemas cannot express
jq -s -e 'map(.payload | fromjson) | (map(select(.type == "reminder.cancelled") | .data.reason) | index("completed") != null)
          and (map(select(.type == "reminder.cancelled") | .data.reason) | index("deleted") != null)
          and (map(select(.traceparent) | [.type, .partitionkey]) | sort == [["reminder.scheduled", "alice"], ["task.created", "alice"]])
          and (map(select(.type == "task.created" and .partitionkey == "bob")) | length == 2)
          and (map(select(.type == "reminder.triggered")) | .[0].data.task_id as $t
               | $t != null and ($t | test("^[0-9]+$")))' "$WORK/records.json" >/dev/null \
  || fail "event contents (reasons, traceparent, recurrence instance, trigger)"
jq -s -e 'map(select(.topic == "tasks-dlq") | .payload | fromjson)
          | length == 1 and .[0].taskevents_data_omitted == true and (.[0] | has("data") | not)' "$WORK/records.json" >/dev/null \
  || fail "dead letter of the oversize event"
pass "$n records from Kafka valid against schemas/ ($(jq -c .types "$WORK/summary.json"))"

# Broken copies of real events must fail: one mutation per type.
jq -c 'select(.topic != "tasks-dlq") | .payload | fromjson' "$WORK/records.json" >"$WORK/events.jsonl"
"${VALIDATE[@]}" event "$WORK/events.jsonl" || fail "the real events do not validate on their own"
mutations=(
  'select(.type == "task.created")     | .specversion = "0.3"'
  'select(.type == "task.updated")     | del(.data.user_id)'
  'select(.type == "task.completed")   | .data.completed = false'
  'select(.type == "task.deleted")     | .subject = 42'
  'select(.type == "reminder.scheduled") | .data.remind_at = "tomorrow"'
  'select(.type == "reminder.cancelled") | .data.reason = "bored"'
  'select(.type == "reminder.triggered") | del(.data.notification_id)'
  'select(.type == "com.example.note")   | .id = "not-a-uuid"'
  'select(.type == "task.created")     | .color = "red"'
  'select(.type == "task.created")     | .type = "task.archived"'
  'select(.type == "task.updated")     | .time = "2025-02-30T10:00:00Z"'
  'select(.type == "task.created")     | .data.recurring_interval = "hourly"'
)
for m in "${mutations[@]}"; do
  jq -c "$m" "$WORK/events.jsonl" | head -1 >"$WORK/broken.json"
  [ -s "$WORK/broken.json" ] || fail "no event to break with: $m"
  if "${VALIDATE[@]}" event "$WORK/broken.json" 2>"$WORK/why.txt"; then
    fail "a broken event passed the schema: $m"
  fi
done
pass "${#mutations[@]} deliberately broken events rejected"
