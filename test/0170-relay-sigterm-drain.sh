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

# second SIGTERM: immediate exit, non-zero.  The broker is paused once the
# relay has delivered (its producer is connected) and before the events are
# written, so every event it then claims stays in flight: the drain cannot
# finish first, however fast the machine (a backlog written before the
# relay started could be delivered whole before the pause)
q -d "$DB" -c "INSERT INTO tasks (user_id, title) VALUES ('user0', 'x0')"
rl_relay third --log-level debug --shutdown-timeout-ms 60000
rl_wait 20 rl_log_has third '"msg":"acked"' || fail "third: no progress"
kafka_pause >/dev/null
q -d "$DB" -c "INSERT INTO tasks (user_id, title) SELECT 'user' || (g % 50), 'x' || g FROM generate_series(1, 3000) g"
rl_wait 20 rl_log_has third '"msg":"fetched","tick":[0-9]*,"count":1000' \
  || { kafka_resume >/dev/null; fail "third: the events written during the pause were not claimed"; }
kill -TERM "$RL_PID"
rl_wait 5 rl_log_has third '"shutdown requested' || { kafka_resume >/dev/null; fail "first SIGTERM not seen"; }
inflight=$(grep -m1 '"shutdown requested' "$WORK/third.log" | jq .inflight)
[ "$inflight" -gt 0 ] || { kafka_resume >/dev/null; fail "nothing in flight at the first SIGTERM"; }
sleep 0.5
kill -TERM "$RL_PID"
t0=$(date +%s%N); st=0; wait "$RL_PID" || st=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
kafka_resume >/dev/null
[ "$st" -ne 0 ] && [ "$ms" -lt 3000 ] || fail "second SIGTERM: status $st after $ms ms"
rl_log_has third 'second shutdown signal' || fail "no log line for the second signal"
pass "SIGTERM: drained and acked ($done_before delivered), successor re-sent nothing; second SIGTERM with $inflight in flight exits in $ms ms"
