#!/usr/bin/env bash
# The relay is killed with SIGKILL in the middle of a large batch and
# started again: the new process waits for the dead one's lease to expire,
# resumes from the last acknowledged position and re-sends what was in
# flight with the same ids.  Every event delivered, per-user order kept.
set -euo pipefail
source "$(dirname "$0")/lib/relay.sh"
rl_setup sigkill

rl_draining first 20000 t --batch-size 200 --max-inflight 1000
kill -9 "$RL_PID"; wait "$RL_PID" 2>/dev/null || true
acked=$(q -d "$DB" -c "SELECT cursor_id FROM taskevents.relay_position('default')")
t0=$(date +%s)
rl_relay second
rl_wait 20 rl_log_has second '"became leader"' || fail "restarted relay did not take the lease"
took=$(( $(date +%s) - t0 ))
grep '"became leader"' "$WORK/second.log" | jq -e '.epoch == 2' >/dev/null || fail "epoch should be 2"
rl_wait 60 rl_all_delivered tasks || fail "not everything delivered after the restart"
rl_verify tasks structured 1
[ "$RL_VERIFIED" -eq 20000 ] || fail "20000 events expected, got $RL_VERIFIED"
pass "SIGKILL at outbox id $acked: lease taken after ${took}s, $RL_VERIFIED events, $RL_DUPLICATES re-sent with the same ids, order kept"
