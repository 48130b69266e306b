#!/usr/bin/env bash
# Fault matrix 7: three relays share one consumer while four writers commit.
# The active one is SIGKILLed: a standby takes over.  Then the new active
# one is SIGSTOPped past the lease (2 s here) until another takes over, and
# SIGCONTed: it must stand down without acknowledging anything.  The
# checker: nothing lost, nothing out of order; and no acknowledgement from
# a stale epoch after a newer epoch's first one.
set -euo pipefail
source "$(dirname "$0")/lib/faults.sh"
fl_setup ha

declare -A PID_OF
for n in a b c; do
  rl_relay "$n" --lease-ttl-ms 2000 --standby-poll-ms 200 --maintain-interval-ms 500
  PID_OF[$n]=$RL_PID
done
holder_pid() { q -d "$DB" -c "SELECT split_part(holder, ':', 2) FROM taskevents.relay_status WHERE consumer = 'default' AND lease_until > now()"; }
epoch() { q -d "$DB" -c "SELECT epoch FROM taskevents.relay_consumers WHERE consumer = 'default'"; }
has_leader() { [ -n "$(holder_pid)" ]; }
epoch_above() { [ "$(epoch)" -gt "$1" ]; }
name_of() { local n; for n in a b c; do [ "${PID_OF[$n]}" = "$1" ] && echo "$n"; done; }

rl_wait 20 has_leader || fail "no leader"
fl_writers_start 4 5 0.03 0
kafka_wait_count tasks 300 30 >/dev/null || fail "nothing delivered"

# 1. SIGKILL the active relay
first=$(holder_pid); e1=$(epoch)
kill -9 "$first"; t0=$(date +%s%N); { wait "$first"; } 2>/dev/null || true
rl_wait 15 epoch_above "$e1" || fail "no takeover after SIGKILL"
kill_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
rl_wait 30 kafka_wait_count tasks $(( $(fl_committed) )) 1 >/dev/null 2>&1 || fail "new leader not delivering"

# 2. SIGSTOP the next active one past its lease, then SIGCONT it
second=$(holder_pid); e2=$(epoch)
[ -n "$second" ] && [ "$second" != "$first" ] || fail "no live leader after the takeover"
kill -STOP "$second"; t0=$(date +%s%N)
rl_wait 20 epoch_above "$e2" || { kill -CONT "$second"; fail "no takeover from the paused relay"; }
pause_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
rl_wait 20 kafka_wait_count tasks $(( $(fl_committed) )) 1 >/dev/null 2>&1 || { kill -CONT "$second"; fail "third leader not delivering"; }
kill -CONT "$second"
rl_wait 10 rl_log_has "$(name_of "$second")" '"leadership lost"\|"lease expired' || fail "the paused relay did not stand down"
rl_wait 20 fl_has_committed $(( $(fl_committed) + 200 )) || fail "writers stalled"
fl_writers_stop
fl_check "ha" 90
stale=$(q -d "$DB" -c "SELECT count(*) FROM taskevents.relay_acks a
  WHERE EXISTS (SELECT 1 FROM taskevents.relay_acks n WHERE n.epoch > a.epoch AND n.ack_id < a.ack_id)")
[ "$stale" -eq 0 ] || fail "$stale acknowledgements from a stale epoch after a newer one"
pass "SIGKILL takeover ${kill_ms} ms, SIGSTOP takeover ${pause_ms} ms, stale relay stood down, epochs $(epoch): $FL_SUMMARY"
