#!/usr/bin/env bash
# Reminders through the relay, against the real broker, with two relays
# running on one database: every reminder fires exactly once (one
# reminder.triggered on the reminders topic, one log row, one notification)
# and within about a second of its remind_at.  Then the leader is killed and
# the standby fires the next ones.
set -euo pipefail
source "$(dirname "$0")/lib/relay.sh"
rl_setup reminders2

if [ "$(q -d "$DB" -c "SELECT count(*) FROM pg_proc WHERE proname = 'fire_due_reminders'")" = 0 ]; then
  fail "the installed extension has no taskevents.fire_due_reminders()"
fi
# remind 1 hour before the due date
q -d "$DB" -c "SELECT taskevents.attach('public.tasks', reminder_lead => interval '1 hour')" >/dev/null

rl_relay a; A=$RL_PID
rl_wait 10 rl_log_has a '"became leader"' || fail "a did not lead"
rl_relay b
rl_wait 10 rl_log_has b '"database connected"' || fail "b did not connect"

# 20 tasks, 5 users, reminders coming due over the next 2-4 s
q -d "$DB" -c "INSERT INTO tasks (user_id, title, due_date)
               SELECT 'user' || (g % 5), 'remind me ' || g,
                      clock_timestamp() + interval '1 hour' + interval '2 s' + g * interval '100 ms'
                 FROM generate_series(1, 20) g" >/dev/null
[ "$(q -d "$DB" -c "SELECT count(*) FROM taskevents.reminders WHERE state = 'scheduled'")" -eq 20 ] \
  || fail "20 scheduled reminders expected"

triggered() { kafka_records reminders | jq -s '[.[] | .payload | fromjson | select(.type == "reminder.triggered")] | length'; }
has_triggered() { [ "$(triggered)" -ge "$1" ]; }
rl_wait 20 has_triggered 20 || fail "only $(triggered) of 20 reminder.triggered delivered"

# exactly once: in Kafka (by task id), in the log, in the notifications
kafka_records reminders | jq -c '.payload | fromjson | select(.type == "reminder.triggered")' >"$WORK/triggered.json"
n=$(wc -l <"$WORK/triggered.json")
tasks=$(jq -r .subject "$WORK/triggered.json" | sort -u | wc -l)
[ "$n" -eq 20 ] && [ "$tasks" -eq 20 ] || fail "$n reminder.triggered for $tasks tasks (20 and 20 expected)"
[ "$(q -d "$DB" -c "SELECT count(*) FROM taskevents.reminder_log")" -eq 20 ] || fail "reminder_log rows"
[ "$(q -d "$DB" -c "SELECT count(DISTINCT task_id) FROM taskevents.notifications")" -eq 20 ] || fail "notifications"
[ "$(q -d "$DB" -c "SELECT count(*) FROM tasks WHERE reminder_sent_at IS NULL")" -eq 0 ] || fail "reminder_sent_at not set"
# the key of each event is its user
jq -e -s 'all(.[]; .partitionkey == .data.user_id)' "$WORK/triggered.json" >/dev/null || fail "partition key is not the user"

# fired within about a second of remind_at (the hook runs every 250 ms)
late=$(jq -s '[.[] | ((.time | sub("\\.[0-9]+"; "") | sub("\\+00:00$"; "Z") | fromdateiso8601)
                      - (.data.remind_at | sub("\\.[0-9]+"; "") | sub("\\+00:00$"; "Z") | fromdateiso8601))] | max' \
        "$WORK/triggered.json")
[ "$late" -le 1 ] || fail "a reminder fired ${late} s after its remind_at"
max_ms=$(q -d "$DB" -c "SELECT ceil(max(extract(epoch FROM fired_at - remind_at)) * 1000)::int FROM taskevents.reminders")
[ "$max_ms" -le 1500 ] || fail "a reminder fired $max_ms ms after its remind_at"

# kill -9 the leader: the standby takes over and fires the next reminders
kill -9 "$A"; { wait "$A"; } 2>/dev/null || true
q -d "$DB" -c "INSERT INTO tasks (user_id, title, due_date)
               SELECT 'user' || (g % 5), 'after failover ' || g, clock_timestamp() + interval '1 hour' + interval '1 s'
                 FROM generate_series(1, 5) g" >/dev/null
rl_wait 20 has_triggered 25 || fail "the standby did not fire the reminders after the leader died"
rl_log_has b '"became leader"' || fail "b never led"
[ "$(triggered)" -eq 25 ] || fail "$(triggered) reminder.triggered, 25 expected"
[ "$(q -d "$DB" -c "SELECT count(*) FROM taskevents.reminder_log")" -eq 25 ] || fail "reminder_log rows after failover"
pass "two relays: 25 reminders fired exactly once, first 20 at most ${max_ms} ms after remind_at"
