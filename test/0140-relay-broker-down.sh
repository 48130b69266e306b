#!/usr/bin/env bash
# The broker stops while writes go on, then comes back on the same data:
# writes keep succeeding, the relay opens its circuit (no dead letters),
# and drains the backlog when Kafka is back.  Nothing lost, order kept.
# Meanwhile /metrics shows the backlog growing (the leader samples it while
# nothing can be sent, not only while events flow).
set -euo pipefail
source "$(dirname "$0")/lib/relay.sh"
rl_setup brokerdown

port=$((KAFKA_PORT + 340))
rl_relay relay --metrics-addr 127.0.0.1:$port --backlog-interval-ms 500
writer() {
  for i in $(seq 1 60); do
    q -d "$DB" -c "INSERT INTO tasks (user_id, title) SELECT 'user' || (g % 4), 'w$i' FROM generate_series(1, 5) g" \
      || { echo "write $i failed" >&2; return 1; }
    sleep 0.2
  done
}
writer & WRITER=$!
kafka_wait_count tasks 20 20 >/dev/null || fail "nothing delivered before the outage"
kafka_stop >/dev/null 2>&1
rl_wait 30 rl_log_has relay 'circuit open' || fail "circuit did not open"
# (read whole first: grep -q leaving the pipe early can fail curl under pipefail)
metrics=$(curl -sf "http://127.0.0.1:$port/metrics") || fail "no /metrics while the circuit is open"
grep -Eq '^taskevents_relay_circuit_state [12]$' <<<"$metrics" ||
  fail "circuit metric: $(grep '^taskevents_relay_circuit_state' <<<"$metrics")"
# writes continue into the outbox while Kafka is down, and the backlog
# metric follows them
backlog_at_least() { local b; b=$(rl_metric "127.0.0.1:$port" taskevents_relay_backlog_events); [ "${b:-0}" -ge "$1" ]; }
rl_wait 30 backlog_at_least 1 || fail "no backlog in /metrics while Kafka is down"
first=$(rl_metric "127.0.0.1:$port" taskevents_relay_backlog_events)
rl_wait 30 backlog_at_least $((first + 20)) ||
  fail "the backlog metric stayed at $(rl_metric "127.0.0.1:$port" taskevents_relay_backlog_events) (first $first) while writes went on"
KAFKA_KEEP_DATA=1 kafka_start >"$WORK/kafka-restart.log" 2>&1 || fail "kafka did not come back"
wait "$WRITER" || fail "application writes failed during the outage"
rl_wait 60 rl_all_delivered tasks || fail "backlog not drained after the broker returned"
rl_wait 10 rl_log_has relay 'circuit closed' || fail "circuit did not close"
rl_verify tasks structured 1
[ "$RL_VERIFIED" -eq 300 ] || fail "300 events expected, got $RL_VERIFIED"
[ "$(kafka_topic_count tasks-dlq)" -eq 0 ] || fail "dead letters because Kafka was down"
[ "$(q -d "$DB" -c 'SELECT count(*) FROM taskevents.dead_letters')" -eq 0 ] || fail "dead letters recorded"
pass "broker outage: circuit opened and closed, $RL_VERIFIED events delivered ($RL_DUPLICATES re-sent), none dead-lettered"
