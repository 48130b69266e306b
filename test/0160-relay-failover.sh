#!/usr/bin/env bash
# Two relays with one consumer name: one leads, one stands by.  kill -9 the
# leader while writes go on: the standby takes over within a few seconds,
# nothing is lost, per-user order holds.  Then the new leader is paused
# (SIGSTOP) until a third relay takes over; when it wakes up it must notice
# and stop, never acknowledge out of turn.
set -euo pipefail
source "$(dirname "$0")/lib/relay.sh"
rl_setup failover

rl_relay a; A=$RL_PID
rl_wait 10 rl_log_has a '"became leader"' || fail "a did not lead"
rl_relay b; B=$RL_PID
writer() {
  for i in $(seq 1 80); do
    q -d "$DB" -c "INSERT INTO tasks (user_id, title) SELECT 'user' || (g % 6), 'w$i' FROM generate_series(1, 5) g"
    sleep 0.1
  done
}
writer & WRITER=$!
kafka_wait_count tasks 20 10 >/dev/null || fail "nothing delivered"
rl_log_has b '"became leader"' && fail "b led while a was alive"
kill -9 "$A"; { wait "$A"; } 2>/dev/null || true; t0=$(date +%s%N)
rl_wait 15 rl_log_has b '"became leader"' || fail "standby did not take over"
took=$(( ($(date +%s%N) - t0) / 1000000 ))
[ "$took" -le 8000 ] || fail "takeover took $took ms"

# pause the new leader past its lease; a third relay takes over
kill -STOP "$B"
rl_relay c
rl_wait 15 rl_log_has c '"became leader"' || { kill -CONT "$B"; fail "c did not take over from the paused b"; }
kill -CONT "$B"
rl_wait 10 rl_log_has b '"leadership lost"' || fail "b did not notice it lost the lease"
wait "$WRITER"
rl_wait 30 rl_all_delivered tasks || fail "not everything delivered"
rl_verify tasks structured 1
[ "$RL_VERIFIED" -eq 400 ] || fail "400 events expected, got $RL_VERIFIED"
# acks after c's takeover all carry c's epoch
c_epoch=$(grep -m1 '"became leader"' "$WORK/c.log" | jq .epoch)
[ "$(q -d "$DB" -c "SELECT count(*) FROM taskevents.relay_acks WHERE acked_at > (SELECT min(acked_at) FROM taskevents.relay_acks WHERE epoch = $c_epoch) AND epoch <> $c_epoch")" -eq 0 ] \
  || fail "an old leader acknowledged after the takeover"
pass "failover: standby led ${took} ms after kill -9; paused leader stood down; $RL_VERIFIED events, $RL_DUPLICATES re-sent, order kept"
