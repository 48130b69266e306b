#!/usr/bin/env bash
# An outbox row that is not a CloudEvent (written by hand by a superuser)
# goes to tasks-dlq at once, with attempts 0, is recorded in
# taskevents.dead_letters, raises one alert line and a metric; the user's
# later events follow in order.
set -euo pipefail
source "$(dirname "$0")/lib/relay.sh"
rl_setup malformed

q -d "$DB" -c "INSERT INTO tasks (user_id, title) VALUES ('alice', 'before')"
q -d "$DB" -c "INSERT INTO taskevents.outbox (slot, topic, partition_key, data) VALUES
  (taskevents._current_slot(), 'tasks', 'alice', '[\"not\", \"an\", \"object\"]'),
  (taskevents._current_slot(), 'tasks', 'alice', '{\"specversion\": \"0.3\", \"id\": \"x1\", \"source\": \"s\", \"type\": \"t\"}'),
  (taskevents._current_slot(), 'tasks', 'bob', '{\"specversion\": \"1.0\", \"id\": 42, \"source\": \"s\", \"type\": \"t\"}')"
q -d "$DB" -c "INSERT INTO tasks (user_id, title) VALUES ('alice', 'after'), ('bob', 'after')"
port=$((KAFKA_PORT + 300))
rl_relay relay --metrics-addr 127.0.0.1:$port
kafka_wait_count tasks-dlq 3 15 >/dev/null || fail "3 dead letters expected"
rl_wait 10 rl_all_delivered tasks || fail "valid events not delivered"
rl_verify tasks
[ "$RL_VERIFIED" -eq 3 ] || fail "3 valid events expected, got $RL_VERIFIED"
kafka_records tasks-dlq >"$WORK/dlq.json"
jq -e -s 'length == 3 and all(.[]; (.headers | [range(0; length; 2) as $i | {(.[$i]): .[$i + 1]}] | add) as $h
   | $h["taskevents-original-topic"] == "tasks" and $h["taskevents-attempts"] == "0"
     and ($h["taskevents-error"] | startswith("invalid cloudevent")) and $h["content-type"] == "application/json")' \
   "$WORK/dlq.json" >/dev/null || fail "dead-letter headers: $(head -c 600 "$WORK/dlq.json")"
rl_wait 5 test "$(q -d "$DB" -c "SELECT count(*) FROM taskevents.dead_letters WHERE attempts = 0")" = 3 \
  || fail "dead letters not recorded"
[ "$(grep -c '"level":"alert"' "$WORK/relay.log")" -eq 3 ] || fail "3 alert lines expected"
[ "$(rl_metric "127.0.0.1:$port" taskevents_relay_dead_letters_total)" = 3 ] || fail "metric"
pass "3 malformed rows dead-lettered at once; valid events delivered in order"
