#!/usr/bin/env bash
# The leader runs the maintenance list, which has the reminders' operation
# (fire_reminders, every second): a task due within the reminder lead time
# gets its reminder.triggered event on the reminders topic within about a
# second, and the relay logs what the operation did.
set -euo pipefail
source "$(dirname "$0")/lib/relay.sh"
rl_setup reminders nokafka

rl_relay relay --dev-mock-kafka
rl_wait 10 rl_log_has relay '"maintenance list".*"operation":"fire_reminders"' || fail "fire_reminders not in the relay's maintenance list"
rl_wait 10 rl_log_has relay '"became leader"' || fail "no leader"
KAFKA_BROKER=$(grep -m1 '"bootstrap_servers"' "$WORK/relay.log" | jq -r .bootstrap_servers)
t0=$(date +%s%N)
q -d "$DB" -c "INSERT INTO tasks (user_id, title, due_date) VALUES ('alice', 'soon', now() + interval '1 hour')"
triggered() { kafka_records reminders | jq -e -s 'any(.[]; (.payload | fromjson | .type) == "reminder.triggered" and .key == "alice")' >/dev/null; }
rl_wait 10 triggered || fail "no reminder.triggered on the reminders topic"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
rl_log_has relay '"maintenance","operation":"fire_reminders","done":1' || fail "no log line for the fired reminder"
kill -TERM "$RL_PID"; wait "$RL_PID" || fail "exit status"
pass "reminder fired by the relay's maintenance list and delivered within ${ms} ms (includes the consumer's polling)"
