#!/usr/bin/env bash
# A tick the leader did not cut itself is read, not skipped.  A relay whose
# connection drops while relay_tick() runs may see its old backend commit
# that tick after the new leadership read relay_last_tick(); its next tick
# is then two past the newest it knows.  It must read the batch in between
# (relay/window.c): before, it took the new tick for the next one, and
# acknowledged past the events of the one in between, which were never
# sent.  Deterministic: the relay is stopped (SIGSTOP) while a tick is cut
# for it with its own epoch, as its lost call would have.
set -euo pipefail
source "$(dirname "$0")/lib/relay.sh"
rl_setup unknowntick nokafka

metrics_port=$((KAFKA_PORT + 355))

rl_relay gap --dev-mock-kafka --metrics-addr "127.0.0.1:$metrics_port"
rl_wait 10 rl_log_has gap '"became leader"' || fail "no leader"
KAFKA_BROKER=$(grep -m1 '"bootstrap_servers"' "$WORK/gap.log" | jq -r .bootstrap_servers)
q -d "$DB" -c "INSERT INTO tasks (user_id, title) VALUES ('gap', 'before')"
rl_wait 10 rl_delivered tasks 1 || fail "the first event was not delivered"
rl_wait 10 rl_none_pending || fail "the first event was not acknowledged"

kill -STOP "$RL_PID"
q -d "$DB" -c "INSERT INTO tasks (user_id, title) VALUES ('gap', 'in the unknown tick')"
# the tick the relay's lost call would have cut: its consumer, its epoch
cut=$(q -d "$DB" -c "SELECT taskevents.relay_tick('default', epoch) FROM taskevents.relay_consumers WHERE consumer = 'default'")
[ -n "$cut" ] || fail "no tick was cut for the event"
q -d "$DB" -c "INSERT INTO tasks (user_id, title) VALUES ('gap', 'after')"
kill -CONT "$RL_PID"

rl_wait 20 rl_delivered tasks 3 || fail "$(kafka_topic_count tasks) of 3 events delivered: the batch of tick $cut was skipped"
rl_wait 10 rl_none_pending || fail "not acknowledged"
titles=$(kafka_records tasks | jq -r '.payload | fromjson | .data.title' | paste -sd '|')
[ "$titles" = "before|in the unknown tick|after" ] || fail "delivered in this order: $titles"
rl_log_has gap '"ticks were cut that this relay has not read' || fail "the relay did not say it read a tick it had not cut"
kill -TERM "$RL_PID"; wait "$RL_PID" || fail "exit status"
pass "a tick cut while the relay was stopped (tick $cut) was read before the next one: 3 events once each, in order"
