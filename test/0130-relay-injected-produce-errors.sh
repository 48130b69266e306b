#!/usr/bin/env bash
# Produce errors injected in librdkafka's mock cluster (--dev-mock-kafka)
# that persist past three retries: the event is retried after 1 s, 2 s,
# 4 s, then dead-lettered with its full body; later events of the same user
# follow in order.  Also checks /metrics and /healthz.
set -euo pipefail
source "$(dirname "$0")/lib/relay.sh"
rl_setup mockerr nokafka

q -d "$DB" -c "INSERT INTO tasks (user_id, title) VALUES ('alice', 'fails four times')"
port=$((KAFKA_PORT + 330))
# Kafka error 87 = INVALID_RECORD: a permanent, per-message error
rl_relay relay --dev-mock-kafka --mock-produce-errors tasks:4:87 --metrics-addr 127.0.0.1:$port
rl_wait 10 rl_log_has relay '"bootstrap_servers"' || fail "mock cluster did not start"
grep -q 'NOT FOR PRODUCTION' "$WORK/relay.log" || fail "no development-mode warning"
KAFKA_BROKER=$(grep -m1 '"bootstrap_servers"' "$WORK/relay.log" | jq -r .bootstrap_servers)

rl_wait 15 rl_log_has relay '"event dead-lettered"' || fail "not dead-lettered"
q -d "$DB" -c "INSERT INTO tasks (user_id, title) VALUES ('alice', 'after'), ('bob', 'fine')"
rl_wait 10 rl_all_delivered tasks || fail "later events not delivered"
rl_verify tasks
[ "$RL_VERIFIED" -eq 2 ] || fail "2 events expected on tasks"
kafka_records tasks-dlq >"$WORK/dlq.json"
jq -e '(.headers | [range(0; length; 2) as $i | {(.[$i]): .[$i + 1]}] | add) as $h
  | .key == "alice" and $h["taskevents-attempts"] == "4" and $h["taskevents-error"] == "INVALID_RECORD"
    and (.payload | fromjson | .data.title) == "fails four times"' "$WORK/dlq.json" >/dev/null \
  || fail "dead letter: $(head -c 400 "$WORK/dlq.json")"
grep '"delivery failed' "$WORK/relay.log" | jq -r .ts >"$WORK/fail-ts"
gaps=$(python3 -c '
import sys, datetime
ts = [datetime.datetime.fromisoformat(l.strip().replace("Z", "+00:00")) for l in open(sys.argv[1])]
print(" ".join("%.2f" % (b - a).total_seconds() for a, b in zip(ts, ts[1:])))' "$WORK/fail-ts")
python3 -c '
import sys
g = [float(x) for x in sys.argv[1].split()]
sys.exit(0 if len(g) == 3 and all(abs(a - b) <= 0.35 for a, b in zip(g, [1, 2, 4])) else 1)' "$gaps" \
  || fail "retry gaps $gaps, want 1 2 4"

m=$(curl -sf "http://127.0.0.1:$port/metrics") || fail "/metrics"
for line in 'taskevents_relay_retries_total 3' 'taskevents_relay_dead_letters_total 1' \
            'taskevents_relay_events_published_total 2' 'taskevents_relay_leader 1' 'taskevents_relay_circuit_state 0'; do
  grep -qx "$line" <<<"$m" || fail "metrics: no '$line'"
done
# the delivery latency histogram: the published events only (the dead
# letter is not a delivery), cumulative buckets at the documented bounds
# (and its Kafka side, from the hand-over to librdkafka: a part of it)
python3 - "$m" <<'PY' || fail "metrics: latency histograms"
import re, sys
m = sys.argv[1]
want = ["0.001", "0.0025", "0.005", "0.0075", "0.01", "0.015", "0.025", "0.05", "0.1", "0.25", "0.5",
        "1", "2.5", "5", "10", "+Inf"]
def hist(name):
    b = [(le, int(c)) for le, c in re.findall(name + r'_bucket\{le="([^"]+)"\} (\d+)', m)]
    count = int(re.search(name + r"_count (\d+)", m).group(1))
    total = float(re.search(name + r"_sum (\S+)", m).group(1))
    counts = [c for _, c in b]
    ok = ([le for le, _ in b] == want and counts == sorted(counts) and count == 2 and counts[-1] == count
          and dict(b)["10"] == 2 and 0 < total < 20)
    if not ok:
        print(name, b, "count", count, "sum", total, file=sys.stderr)
    return ok, total
ok1, delivery = hist("taskevents_relay_delivery_latency_seconds")
ok2, produce = hist("taskevents_relay_produce_latency_seconds")
if ok1 and ok2 and produce > delivery:
    print("the Kafka side (%g s) is more than the whole (%g s)" % (produce, delivery), file=sys.stderr)
sys.exit(0 if ok1 and ok2 and produce <= delivery else 1)
PY
curl -sf "http://127.0.0.1:$port/healthz" | jq -e '.status == "ok" and .role == "leader"' >/dev/null || fail "/healthz"
kill -TERM "$RL_PID"; wait "$RL_PID" || fail "exit status"
pass "injected errors: retries after $gaps s, dead letter, later events in order; metrics (the latency histograms included) and healthz"
