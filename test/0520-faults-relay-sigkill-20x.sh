#!/usr/bin/env bash
# Fault matrix 3: the relay is SIGKILLed at a random point of its drain, 20
# times in a row, while four writers commit.  Each new relay waits for the
# dead one's lease (1 s here) and resumes from the last acknowledged
# position; the backlog built meanwhile is what the next one is killed in.
# The checker: nothing lost, order kept; re-sends are counted.
set -euo pipefail
source "$(dirname "$0")/lib/faults.sh"
fl_setup sigkill20

fl_writers_start 4 5 0.01 0
kills=0
for i in $(seq 1 20); do
  rl_relay "relay-$i" --lease-ttl-ms 1000 --standby-poll-ms 100 --maintain-interval-ms 500 --batch-size 100
  rl_wait 15 rl_log_has "relay-$i" '"became leader"' || fail "relay $i did not take the lease"
  sleep "$(fl_rand_s 50 1200)"   # the moment of the kill, not a synchronisation
  kill -9 "$RL_PID"; { wait "$RL_PID"; } 2>/dev/null || true
  kills=$((kills + 1))
done
fl_writers_stop
rl_relay final --lease-ttl-ms 1000 --standby-poll-ms 100
rl_wait 15 rl_log_has final '"became leader"' || fail "final relay did not lead"
epoch=$(grep -m1 '"became leader"' "$WORK/final.log" | jq .epoch)
[ "$epoch" -eq 21 ] || fail "epoch $epoch after 20 takeovers, 21 expected"
fl_check "sigkill x20" 90
pass "$kills SIGKILLs at random points: $FL_SUMMARY"
