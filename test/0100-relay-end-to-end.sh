#!/usr/bin/env bash
# End to end against a real broker: SQL writes → relay → Kafka.  Structured
# mode while the relay streams, then binary mode (a second consumer) into a
# fresh broker.  Contents checked: valid CloudEvents, key = user id, the
# content type, ids unique and equal to the outbox, per-user order = commit
# order.
set -euo pipefail
source "$(dirname "$0")/lib/relay.sh"
rl_setup e2e

rl_write 200 7
rl_relay relay --log-level debug
# writes while the relay runs: updates, completions, deletes, a custom topic
q -d "$DB" -c "UPDATE tasks SET priority = 'high' WHERE id % 3 = 0"
q -d "$DB" -c "UPDATE tasks SET completed = true WHERE id % 5 = 0"
q -d "$DB" -c "DELETE FROM tasks WHERE id % 11 = 0"
q -d "$DB" -c "SELECT taskevents.publish('reminders', 'com.example.reminder.custom', '{\"x\": 1}', 'user3')" >/dev/null
rl_wait 30 rl_all_delivered tasks || fail "not every event reached tasks within 30 s"
rl_wait 10 rl_all_delivered reminders || fail "custom event not delivered"
rl_verify tasks
n=$RL_VERIFIED
rl_verify reminders
[ "$n" -ge 250 ] || fail "only $n events"
jq -e 'select(.key == "user3")' "$WORK/got-reminders.json" >/dev/null || fail "reminder key"
pass "structured: $n task events, valid CloudEvents, ids unique, per-user order kept"

# latency of a single write while idle (poll loop, no NOTIFY)
before=$(kafka_topic_count tasks)
t0=$(date +%s%N)
q -d "$DB" -c "INSERT INTO tasks (user_id, title) VALUES ('user1', 'latency probe')"
kafka_wait_count tasks $((before + 1)) 5 >/dev/null || fail "probe not delivered"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
pass "single write visible to a consumer after ${ms} ms (includes the consumer's own polling)"

kill -TERM "$RL_PID"; wait "$RL_PID" || fail "relay exit status $?"
grep -q '"level":"error"' "$WORK/relay.log" && fail "errors in the relay log"
grep -q '"data"\|task [0-9]' "$WORK/relay.log" && fail "payload in the relay log"

# binary mode, new consumer, fresh broker
kafka_stop >/dev/null; kafka_start >/dev/null 2>&1 || fail "kafka restart"
kafka_create_topics >/dev/null 2>&1
rl_once binary --consumer binary --binary || fail "binary relay failed"
rl_verify tasks binary
# binary mode warns once at start-up that Dapr cannot route it; structured mode does not
[ "$(grep -c '"msg":"binary mode: Dapr subscribers cannot route' "$WORK/binary.log")" -eq 1 ] \
  || fail "binary mode: expected one warning about Dapr routing: $(grep -m2 '"warn"' "$WORK/binary.log")"
grep -q 'Dapr subscribers cannot route' "$WORK/relay.log" && fail "structured mode warned about binary mode"
pass "binary: $RL_VERIFIED events with ce_* headers, data as value, order kept; one warning about Dapr routing"
