#!/usr/bin/env bash
# An event larger than Kafka accepts fails, is retried after 1 s, 2 s and
# 4 s, then goes to tasks-dlq (without its data, since it cannot fit, and
# with the headers saying why); it is recorded in taskevents.dead_letters.
# Meanwhile other users flow, and the same user's later events wait and
# then follow in order.
set -euo pipefail
source "$(dirname "$0")/lib/relay.sh"
rl_setup oversize

q -d "$DB" -c "INSERT INTO tasks (user_id, title) VALUES ('alice', 'small 1')"
rl_relay relay
# the producer is warm (idempotence id acquired) before the failures start,
# so the measured gaps are the backoff schedule alone
kafka_wait_count tasks 1 20 >/dev/null || fail "first event not delivered"
q -d "$DB" -c "INSERT INTO tasks (user_id, title, description) VALUES ('alice', 'huge', repeat('x', 1100000))"
q -d "$DB" -c "INSERT INTO tasks (user_id, title) VALUES ('alice', 'small 2'), ('bob', 'bob 1')"
q -d "$DB" -c "INSERT INTO tasks (user_id, title) VALUES ('alice', 'small 3'), ('bob', 'bob 2')"
kafka_wait_count tasks 3 6 >/dev/null || fail "alice's first and bob's events should flow during the retries"
kafka_topic_count tasks-dlq | grep -qx 0 || fail "dead-lettered too early"
kafka_wait_count tasks-dlq 1 15 >/dev/null || fail "no dead letter"
rl_wait 10 rl_all_delivered tasks || fail "later events not delivered"
rl_verify tasks
[ "$RL_VERIFIED" -eq 5 ] || fail "5 events expected on tasks, got $RL_VERIFIED"

# the retry schedule, from the relay's failure log lines: gaps 1, 2, 4 s
grep '"delivery failed' "$WORK/relay.log" | jq -r '.ts' >"$WORK/fail-ts"
[ "$(wc -l <"$WORK/fail-ts")" -eq 4 ] || fail "4 failed attempts expected"
gaps=$(python3 -c '
import sys, datetime
ts = [datetime.datetime.fromisoformat(l.strip().replace("Z", "+00:00")) for l in open(sys.argv[1])]
print(" ".join("%.2f" % (b - a).total_seconds() for a, b in zip(ts, ts[1:])))' "$WORK/fail-ts")
python3 -c '
import sys
g = [float(x) for x in sys.argv[1].split()]
want = [1, 2, 4]
sys.exit(0 if all(abs(a - b) <= 0.35 for a, b in zip(g, want)) else 1)' "$gaps" || fail "retry gaps $gaps, want 1 2 4"

kafka_records tasks-dlq >"$WORK/dlq.json"
jq -e '(.headers | [range(0; length; 2) as $i | {(.[$i]): .[$i + 1]}] | add) as $h
  | (.payload | fromjson) as $e
  | .key == "alice" and $h["taskevents-original-topic"] == "tasks" and $h["taskevents-attempts"] == "4"
    and $h["taskevents-error"] == "MSG_SIZE_TOO_LARGE"
    and $h["content-type"] == "application/cloudevents+json; charset=UTF-8"
    and ($h["taskevents-first-failure"] | length) > 0 and ($h["taskevents-last-failure"] | length) > 0
    and $e.specversion == "1.0" and $e.taskevents_data_omitted == true' "$WORK/dlq.json" >/dev/null \
  || fail "dead letter headers: $(jq -c .headers "$WORK/dlq.json")"
# alice's later events were produced after the dead letter, bob's before it
dlq_ts=$(jq -r .ts "$WORK/dlq.json")
jq -e -s --argjson d "$dlq_ts" '[.[] | select(.key == "alice" and (.payload | fromjson | .data.title) != "small 1")]
    | length > 0 and all(.ts >= $d)' "$WORK/got-tasks.json" >/dev/null \
  || fail "alice's later events went out before the dead letter"
jq -e -s --argjson d "$dlq_ts" '[.[] | select(.key == "bob")] | length > 0 and all(.ts < $d)' "$WORK/got-tasks.json" >/dev/null \
  || fail "bob waited for alice"
rl_wait 5 test "$(q -d "$DB" -c "SELECT count(*) FROM taskevents.dead_letters WHERE attempts = 4 AND reason = 'MSG_SIZE_TOO_LARGE' AND length(event::text) > 1000000")" = 1 \
  || fail "dead letter not recorded in full"
[ "$(grep -c '"level":"alert"' "$WORK/relay.log")" -eq 1 ] || fail "one alert line expected"
pass "oversize event: retries after $gaps s, then tasks-dlq with headers; alice's later events in order, bob unaffected"
