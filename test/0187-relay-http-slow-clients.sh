#!/usr/bin/env bash
# The HTTP endpoint keeps answering while 2,000 slow clients hold
# connections open on 127.0.0.1 (each sends an unfinished request, then one
# byte a second, so no idle timeout closes it): /healthz answers 200 within
# 5 s, /metrics answers, the relay still delivers, and all 2,000 clients are
# still connected at the end (none was refused or dropped).  Bounded: 2,000
# loopback connections for at most 90 s.  Skipped when the hard limit on
# open files is too low for 2,000 connections on both ends.
set -euo pipefail
source "$(dirname "$0")/lib/relay.sh"
N=2000
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt $((N + 1200)) ]; then
  echo "skip: hard open-files limit $(ulimit -Hn) is below $((N + 1200))"; exit 0
fi
rl_setup http_slow
port=$((KAFKA_PORT + 310))
rl_relay relay --metrics-addr 127.0.0.1:$port
rl_wait 20 rl_log_has relay '"became leader"' || fail "no leader"
curl -sf --max-time 5 "http://127.0.0.1:$port/healthz" >/dev/null || fail "/healthz before the slow clients"

python3 "$PGTE_ROOT/test/lib/slow_http_clients.py" 127.0.0.1 $port $N 90 "$WORK/slow.status" "$WORK/slow.stop" \
  >"$WORK/slow.log" 2>&1 &
SLOW=$!; RL_PIDS+=("$SLOW")
rl_wait 60 test -s "$WORK/slow.status" || fail "slow clients did not connect: $(cat "$WORK/slow.log")"
read -r _ open _ closed <"$WORK/slow.status"
[ "$open" -eq $N ] || fail "the relay refused or dropped slow clients: $open open, $closed closed"
sleep 2   # two more trickle rounds: the connections are established and idle-timeout-proof

t0=$(date +%s%N)
code=$(curl -s --max-time 5 -o "$WORK/healthz.json" -w '%{http_code}' "http://127.0.0.1:$port/healthz" || true)
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
[ "$code" = 200 ] && jq -e '.status == "ok" and .role == "leader"' "$WORK/healthz.json" >/dev/null \
  || fail "/healthz with $N slow clients: HTTP $code after $ms ms: $(cat "$WORK/healthz.json" 2>/dev/null)"
[ "$(rl_metric "127.0.0.1:$port" taskevents_relay_leader)" = 1 ] || fail "/metrics with $N slow clients"

rl_write 50 5
rl_wait 30 rl_all_delivered tasks || fail "the relay stopped delivering with $N slow clients"
rl_verify tasks
[ "$RL_VERIFIED" -eq 50 ] || fail "50 events expected, got $RL_VERIFIED"
sleep 1.5
read -r _ open _ closed <"$WORK/slow.status"
[ "$open" -eq $N ] || fail "slow clients dropped while the test ran: $open open, $closed closed"
touch "$WORK/slow.stop"
wait "$SLOW" || fail "slow client tool failed: $(cat "$WORK/slow.log")"
curl -sf --max-time 5 "http://127.0.0.1:$port/healthz" >/dev/null || fail "/healthz after the slow clients left"
kill -TERM "$RL_PID"; wait "$RL_PID" || fail "relay exit status"
pass "/healthz 200 in $ms ms with $N slow clients connected; 50 events delivered meanwhile"
