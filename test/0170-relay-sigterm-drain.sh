#!/usr/bin/env bash
# SIGTERM during a large drain: the relay stops claiming, finishes and
# acknowledges what it had in flight, releases its lease (a successor starts
# at once, without waiting for expiry) and exits 0.  The successor re-sends
# nothing.  A second SIGTERM exits at once.
set -euo pipefail
source "$(dirname "$0")/lib/relay.sh"
rl_setup sigterm

rl_draining first 30000 t --batch-size 500 --max-inflight 2000
kill -TERM "$RL_PID"
st=0; wait "$RL_PID" || st=$?
[ "$st" -eq 0 ] || fail "exit status $st after SIGTERM"
rl_log_has first '"lease released"' || fail "lease not released"
done_before=$(kafka_topic_count tasks)
[ "$done_before" -lt 30000 ] || echo "note: the drain finished before SIGTERM"
rl_once second || fail "--once failed"
grep '"became leader"' "$WORK/second.log" | jq -e '.epoch == 2' >/dev/null || fail "successor epoch"
rl_verify tasks
[ "$RL_VERIFIED" -eq 30000 ] || fail "30000 expected, got $RL_VERIFIED"

# second SIGTERM: immediate exit, non-zero
rl_draining third 30000 x --shutdown-timeout-ms 60000
# a paused broker keeps deliveries in flight, so the drain cannot finish
kafka_pause >/dev/null
kill -TERM "$RL_PID"
rl_wait 5 rl_log_has third '"shutdown requested' || { kafka_resume >/dev/null; fail "first SIGTERM not seen"; }
sleep 0.5
kill -TERM "$RL_PID"
t0=$(date +%s%N); st=0; wait "$RL_PID" || st=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
kafka_resume >/dev/null
[ "$st" -ne 0 ] && [ "$ms" -lt 3000 ] || fail "second SIGTERM: status $st after $ms ms"
rl_log_has third 'second shutdown signal' || fail "no log line for the second signal"
pass "SIGTERM: drained and acked ($done_before delivered), successor re-sent nothing; second SIGTERM exits in $ms ms"
