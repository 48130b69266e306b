#!/usr/bin/env bash
# Dapr end to end: PostgreSQL with the extension, the real Kafka broker, the
# relay, a real daprd 1.16.5 (built once per machine by scripts/build-daprd)
# running the Component, Subscriptions and Resiliency of
# deploy/kubernetes/dapr.yaml (rendered for loopback by deploy/dapr_local.py,
# not copied) with the flags of the subscriber Deployment's dapr.io/*
# annotations, and the reference subscriber of examples/subscriber.
#
#  1. Every committed event reaches the subscriber once, on the route its
#     type belongs to, with the CloudEvent equal to the outbox's, applied
#     exactly once through taskevents.receive(), and in commit order per
#     user and topic.  A custom event on the tasks topic takes the default
#     route and is acknowledged without being applied.  Records re-sent
#     with the same ids are delivered again and skipped by the inbox.
#  2. An event the subscriber keeps failing (a trigger of this test on the
#     subscriber's table raises for a marker in the title, so the handler
#     answers 500) is attempted 1 + 3 times, 2 s apart, then lands on
#     tasks-dlq with its CloudEvent intact and no inbox mark; the retry
#     window and the head-of-line delay of its partition are measured and
#     printed.
#  3. The subscriber loses its database: Dapr's app health check (from the
#     annotations) pauses the deliveries, nothing is dead-lettered, and
#     everything is applied once, in order, when the database is back.
#  4. The relay in --binary mode: Dapr cannot route a single record (no
#     "type" in the value) and dead-letters them all.
# The subscriber's logs carry no task titles.
set -euo pipefail
source "$(dirname "$0")/lib/relay.sh"

DAPRD=$("$PGTE_ROOT/scripts/build-daprd") || fail "daprd build"
SUBSCRIBER=$("$PGTE_ROOT/examples/subscriber/build.sh") || fail "subscriber build"
PY=$("$PGTE_ROOT/schemas/venv.sh") || fail "python venv"

# daprd listeners, all on 127.0.0.1 (HTTP API, gRPC API, internal gRPC,
# metrics, profiling), and the subscriber's port.
DAPR_HTTP_PORT=${DAPR_TEST_HTTP_PORT:-3500}
DAPR_GRPC_PORT=${DAPR_TEST_GRPC_PORT:-50001}
DAPR_INTERNAL_PORT=${DAPR_TEST_INTERNAL_GRPC_PORT:-50002}
DAPR_METRICS_PORT=${DAPR_TEST_METRICS_PORT:-3590}
DAPR_PROFILE_PORT=${DAPR_TEST_PROFILE_PORT:-3591}
APP_PORT=${DAPR_TEST_APP_PORT:-3600}
ROLE=taskevents_subscriber_t0640
POISON='[poison]'

rl_setup dapr
dapr_cleanup() {
  local p
  for p in ${DAPRD_PID:-} ${SUB_PID:-}; do kill -TERM "$p" 2>/dev/null || true; done
  for p in ${DAPRD_PID:-} ${SUB_PID:-}; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  done
  # DAPR_TEST_KEEP_LOGS=DIR: keep the logs of daprd, the subscriber and the relay
  [ -n "${DAPR_TEST_KEEP_LOGS:-}" ] && mkdir -p "$DAPR_TEST_KEEP_LOGS" && cp "$WORK"/*.log "$WORK"/*.json "$DAPR_TEST_KEEP_LOGS"/ 2>/dev/null
  dropdb --if-exists "$DB" >/dev/null 2>&1
  q -d postgres -c "DROP ROLE IF EXISTS $ROLE" >/dev/null 2>&1
}
trap 'st=$?; set +e; dapr_cleanup; (exit $st); rl_cleanup' EXIT

# ---- the subscriber's role and table, as docs/consumers.md sets them up
q -d postgres -c "SET client_min_messages = warning" -c "DROP ROLE IF EXISTS $ROLE" -c "CREATE ROLE $ROLE LOGIN"
q -d "$DB" -v role=$ROLE -f "$PGTE_ROOT/examples/subscriber/schema.sql" >/dev/null
# the failure this test injects: the application's own write fails
q -d "$DB" <<SQL >/dev/null
CREATE FUNCTION feed.t0640_fail() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
    IF NEW.event->'data'->>'title' LIKE '%$POISON%' THEN
        RAISE EXCEPTION 'injected failure';
    END IF;
    RETURN NEW;
END \$\$;
CREATE TRIGGER t0640_fail BEFORE INSERT ON feed.activity FOR EACH ROW EXECUTE FUNCTION feed.t0640_fail();
SQL

# ---- relay, then a first batch of writes before Dapr runs (a new consumer
# group starts at the oldest record: initialOffset in dapr.yaml)
rl_relay relay --reminders-interval-ms 200
write_batch() {   # write_batch TAG: creates, updates, completes (one recurring), deletes, reminders
  q -d "$DB" >/dev/null <<SQL
INSERT INTO tasks (user_id, title, due_date) SELECT 'u' || i, '$1 task ' || i, now() + interval '3 days' FROM generate_series(1, 8) i;
INSERT INTO tasks (user_id, title, due_date, is_recurring, recurring_interval) VALUES ('u1', '$1 water plants', now() + interval '1 hour', true, 'daily');
INSERT INTO tasks (user_id, title, due_date) VALUES ('u8', '$1 call the dentist', now() + interval '2 hours');
UPDATE tasks SET description = 'ünïcødé "quoted" $1' WHERE title LIKE '$1 task %' AND user_id IN ('u2', 'u3', 'u4');
UPDATE tasks SET completed = true WHERE title LIKE '$1 %' AND user_id IN ('u1', 'u5');
DELETE FROM tasks WHERE title LIKE '$1 task %' AND user_id = 'u6';
SELECT taskevents.publish('tasks', 'com.example.note', '{"n": 1}', 'u7', 'note-$1');
SQL
}
write_batch before

"$PY" "$PGTE_ROOT/deploy/dapr_local.py" --brokers "$KAFKA_BROKER" --out "$WORK/dapr" \
  --app-port "$APP_PORT" --print-flags >"$WORK/daprd.flags" || fail "rendering deploy/kubernetes/dapr.yaml"
APP_ID=$(sed -n 's/^--app-id=//p' "$WORK/daprd.flags")
[ -n "$APP_ID" ] && grep -q -- '--enable-app-health-check=true' "$WORK/daprd.flags" || fail "annotations: $(cat "$WORK/daprd.flags")"

DATABASE_URL="host=$PGHOST port=$PGPORT dbname=$DB user=$ROLE" \
  "$SUBSCRIBER" -listen "127.0.0.1:$APP_PORT" >"$WORK/subscriber.log" 2>&1 &
SUB_PID=$!
rl_wait 20 curl -fs -o /dev/null "http://127.0.0.1:$APP_PORT/healthz" || fail "subscriber not healthy"

mapfile -t flags <"$WORK/daprd.flags"
NAMESPACE=taskevents "$DAPRD" --mode standalone "${flags[@]}" \
  --app-channel-address 127.0.0.1 --dapr-listen-addresses 127.0.0.1 \
  --dapr-http-port "$DAPR_HTTP_PORT" --dapr-grpc-port "$DAPR_GRPC_PORT" \
  --dapr-internal-grpc-port "$DAPR_INTERNAL_PORT" --dapr-internal-grpc-listen-address 127.0.0.1 \
  --metrics-port "$DAPR_METRICS_PORT" --metrics-listen-address 127.0.0.1 --profile-port "$DAPR_PROFILE_PORT" \
  --placement-host-address "" --scheduler-host-address "" --log-level info \
  >"$WORK/daprd.log" 2>&1 &
DAPRD_PID=$!
rl_wait 60 curl -fs -o /dev/null "http://127.0.0.1:$DAPR_HTTP_PORT/v1.0/healthz" || fail "daprd not ready"
# every listening socket of daprd and the subscriber is on 127.0.0.1
ss -Hltnp | grep -E "pid=($DAPRD_PID|$SUB_PID)," | awk '{print $4}' >"$WORK/listen.txt" || true
[ "$(wc -l <"$WORK/listen.txt")" -ge 5 ] && ! grep -qv '^127\.0\.0\.1:' "$WORK/listen.txt" \
  || fail "listeners: $(tr '\n' ' ' <"$WORK/listen.txt")"
pass "daprd $("$DAPRD" --version) up as $APP_ID: resources from deploy/kubernetes/dapr.yaml, $(grep -vc -e '^--resources-path' -e '^--config' -e '^--app-port' "$WORK/daprd.flags") flags from the dapr.io annotations, $(wc -l <"$WORK/listen.txt") listeners all on 127.0.0.1"

# ---- 1. streaming while Dapr runs
write_batch during
outbox_count() {
  q -d "$DB" -c "SELECT count(*) FROM taskevents.outbox_events WHERE topic IN ('tasks', 'reminders') AND event->>'type' NOT LIKE 'com.%'"
}
applied() { q -d "$DB" -c "SELECT count(*) FROM feed.activity"; }
triggered() { [ "$(q -d "$DB" -c "SELECT count(*) FROM taskevents.outbox_events WHERE event->>'type' = 'reminder.triggered'")" -ge 2 ]; }
rl_wait 30 triggered || fail "reminders not fired"
all_applied() { [ "$(applied)" -ge "$(outbox_count)" ]; }
rl_wait 60 all_applied || fail "applied $(applied) of $(outbox_count) events"
n=$(applied)

# the subscriber's view against the outbox: once, intact, right route, order
cat >"$WORK/check.sql" <<'SQL'
WITH o AS (SELECT id, topic, event::jsonb AS e FROM taskevents.outbox_events
            WHERE topic IN ('tasks', 'reminders') AND event->>'type' NOT LIKE 'com.%')
SELECT 'missing', count(*) FROM o WHERE NOT EXISTS (SELECT 1 FROM feed.activity a WHERE a.source = o.e->>'source' AND a.event_id = o.e->>'id')
UNION ALL
SELECT 'duplicated', count(*) FROM (SELECT 1 FROM feed.activity GROUP BY source, event_id HAVING count(*) > 1) d
UNION ALL
SELECT 'extra', count(*) FROM feed.activity a WHERE NOT EXISTS (SELECT 1 FROM o WHERE o.e->>'id' = a.event_id)
UNION ALL
SELECT 'changed', count(*) FROM feed.activity a JOIN o ON o.e->>'id' = a.event_id WHERE a.event IS DISTINCT FROM o.e
UNION ALL
SELECT 'wrong route', count(*) FROM feed.activity a JOIN o ON o.e->>'id' = a.event_id WHERE a.route <> o.topic
UNION ALL
SELECT 'out of order', count(*) FROM (
    SELECT row_number() OVER (PARTITION BY o.topic, a.user_id ORDER BY a.id) AS got,
           row_number() OVER (PARTITION BY o.topic, a.user_id ORDER BY o.id) AS want
      FROM feed.activity a JOIN o ON o.e->>'id' = a.event_id) x WHERE got <> want
UNION ALL
SELECT 'types', count(DISTINCT type) FROM feed.activity
SQL
q -d "$DB" -F $'\t' >"$WORK/check1.tsv" <"$WORK/check.sql"
bad=$(awk -F'\t' '$1 != "types" && $2 != 0' "$WORK/check1.tsv")
[ -z "$bad" ] || fail "subscriber vs outbox: $(tr '\n\t' '; ' <<<"$bad")"
grep -qx $'types\t7' "$WORK/check1.tsv" || fail "not every event type applied: $(grep types "$WORK/check1.tsv")"

# the subscriber's own log: each event delivered exactly once (no retry, no
# duplicate), the custom events on the default route and not applied
jq -r 'select(.msg == "delivery") | [.route, .event_id, .outcome] | @tsv' "$WORK/subscriber.log" >"$WORK/deliveries.tsv"
[ "$(cut -f2 "$WORK/deliveries.tsv" | sort | uniq -d | wc -l)" -eq 0 ] || fail "an event was delivered more than once"
[ "$(grep -c $'\tapplied$' "$WORK/deliveries.tsv")" -eq "$n" ] || fail "applied deliveries != $n"
[ "$(awk -F'\t' '$1 == "other" && $3 == "ignored"' "$WORK/deliveries.tsv" | wc -l)" -eq 2 ] \
  || fail "custom events not on the default route: $(grep other "$WORK/deliveries.tsv")"
[ "$(q -d "$DB" -c "SELECT count(*) FROM feed.activity WHERE type LIKE 'com.%'")" -eq 0 ] || fail "custom event applied"
[ "$(kafka_topic_count tasks-dlq)" -eq 0 ] && [ "$(kafka_topic_count reminders-dlq)" -eq 0 ] || fail "dead letters before the poison"
pass "$n events (7 types, 2 topics) applied once each, CloudEvent equal to the outbox, right route, per-user order; 2 custom events on the default route"

# a re-send with the same id (what a relay does after a crash or takeover):
# Dapr delivers it again, receive() says false, nothing is applied twice
q -d "$DB" -F $'\t' -c "SELECT partition_key, event FROM taskevents.outbox_events
                        WHERE topic = 'tasks' AND event->>'type' LIKE 'task.%' ORDER BY id DESC LIMIT 3" >"$WORK/resend.tsv"
kcat -b "$KAFKA_BROKER" -P -t tasks -K $'\t' -H 'content-type=application/cloudevents+json; charset=UTF-8' \
  <"$WORK/resend.tsv" || fail "kcat produce"
dups() { [ "$(jq -r 'select(.msg == "delivery" and .outcome == "duplicate") | .event_id' "$WORK/subscriber.log" | sort -u | wc -l)" -ge 3 ]; }
rl_wait 30 dups || fail "re-sent events not delivered as duplicates"
[ "$(applied)" -eq "$n" ] || fail "a re-sent event was applied again"
pass "3 re-sent events (same ids) delivered again and skipped by taskevents.receive()"

# ---- 2. a poison event: retried, dead-lettered, its partition held meanwhile
# Users that share the poison user's partition of "tasks" and users that do
# not, by Sarama's FNV-1a partitioner (the relay's fnv1a_random), which the
# records' partitions confirm below.
parts=$(kcat -b "$KAFKA_BROKER" -L -t tasks -J | jq '.topics[0].partitions | length')
read -r SAME OTHER < <(python3 - "$parts" <<'PY'
import sys
n = int(sys.argv[1])
def part(k):
    h = 0x811c9dc5
    for b in k.encode():
        h = ((h ^ b) * 0x01000193) & 0xffffffff
    s = h - (1 << 32) if h >= 1 << 31 else h
    return abs(int(s % n) if s >= 0 else -int((-s) % n))
p = part("poison-user")
same = [u for u in ("v%d" % i for i in range(100)) if part(u) == p][:3]
other = [u for u in ("v%d" % i for i in range(100)) if part(u) != p][:3]
print(",".join(same), ",".join(other))
PY
)
users_sql() { sed "s/,/','/g; s/^/'/; s/$/'/" <<<"$1"; }
q -d "$DB" -c "INSERT INTO tasks (user_id, title) VALUES ('poison-user', 'a $POISON task')" >/dev/null
q -d "$DB" -c "INSERT INTO tasks (user_id, title)
               SELECT u, 'after the poison' FROM unnest(ARRAY[$(users_sql "$SAME"),$(users_sql "$OTHER")]) u;
               INSERT INTO tasks (user_id, title) VALUES ('poison-user', 'after its own poison')" >/dev/null
POISON_ID=$(q -d "$DB" -c "SELECT event->>'id' FROM taskevents.outbox_events WHERE event->'data'->>'title' LIKE '%$POISON%'")
dlq_has_poison() { kafka_records tasks-dlq | jq -e --arg id "$POISON_ID" 'select((.payload | fromjson).id == $id)' >/dev/null; }
rl_wait 60 dlq_has_poison || fail "poison event not in tasks-dlq; attempts: $(grep -c "$POISON_ID" "$WORK/subscriber.log")"
all_but_poison() { [ "$(applied)" -ge $(( $(outbox_count) - 1 )) ]; }
rl_wait 30 all_but_poison || fail "after the poison: applied $(applied) of $(( $(outbox_count) - 1 ))"

kafka_records tasks >"$WORK/tasks.json"
kafka_records tasks-dlq >"$WORK/dlq.json"
q -d "$DB" -c "SELECT event FROM taskevents.outbox_events WHERE event->>'id' = '$POISON_ID'" >"$WORK/poison.json"
q -d "$DB" -F $'\t' -c "SELECT event_id, task_id, user_id,
    extract(epoch FROM occurred_at), extract(epoch FROM applied_at)
    FROM feed.activity WHERE event->'data'->>'title' LIKE 'after %'" >"$WORK/after-applied.tsv"
# in the inbox?  (process_once() in a transaction that is rolled back: true = not marked)
marked=$(q -d "$DB" -c "BEGIN" -c "SELECT NOT taskevents.process_once(event->>'source', event->>'id')
                                  FROM taskevents.outbox_events WHERE event->>'id' = '$POISON_ID'" -c "ROLLBACK")
[ "$marked" = f ] || fail "the poison event is marked processed in the inbox"

"$PY" - "$WORK" "$POISON_ID" "$SAME" "$OTHER" <<'PY' || fail "poison event: see above"
import json, sys
from datetime import datetime
work, pid, same, other = sys.argv[1], sys.argv[2], sys.argv[3].split(","), sys.argv[4].split(",")
errs = []
def ts(s): return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
logs = [json.loads(l) for l in open(work + "/subscriber.log") if l.startswith("{")]
att = [l for l in logs if l.get("msg") == "delivery" and l.get("event_id") == pid]
if [(a["outcome"], a["http_status"], a.get("sqlstate")) for a in att] != [("failed", 500, "P0001")] * 4:
    errs.append("poison deliveries: %s (want 4 x failed/500/P0001)" % [(a["outcome"], a["http_status"]) for a in att])
t = [ts(a["ts"]) for a in att]
gaps = [b - a for a, b in zip(t, t[1:])]
if any(g < 1.9 or g > 10 for g in gaps):
    errs.append("gaps between attempts %s, want about 2 s (constant policy)" % gaps)
dlq = [r for r in (json.loads(l) for l in open(work + "/dlq.json")) if (json.loads(r["payload"]) or {}).get("id") == pid]
want = json.loads(open(work + "/poison.json").read())
if len(dlq) != 1:
    errs.append("%d dead letters of the poison event, want 1" % len(dlq))
else:
    d = dlq[0]
    if json.loads(d["payload"]) != want:
        errs.append("dead letter differs from the outbox event")
    hdr = dict(zip(d.get("headers", [])[::2], d.get("headers", [])[1::2]))
    # Dapr's dead letter: same key, the original's position in headers, and
    # none of the relay's taskevents-* headers
    if any(k.startswith("taskevents-") for k in hdr) or hdr.get("__topic") != "tasks" \
            or d.get("key") != "poison-user":
        errs.append("Dapr's dead letter: key %s, headers %s" % (d.get("key"), sorted(hdr)))
    window = d["ts"] / 1000 - t[0]
recs = [json.loads(l) for l in open(work + "/tasks.json")]
part = {}
for r in recs:
    part.setdefault(r["key"], set()).add(r["partition"])
pp = part.get("poison-user")
if not pp or any(part.get(u) != pp for u in same) or any(part.get(u) == pp for u in other):
    errs.append("partitions differ from the FNV-1a prediction: %s" % {k: sorted(v) for k, v in part.items()})
applied = {}
for l in open(work + "/after-applied.tsv"):
    eid, task, user, occ, app = l.rstrip("\n").split("\t")
    applied[user] = (float(occ), float(app))
if not dlq or len(applied) != len(same) + len(other) + 1:
    errs.append("events after the poison applied: %s" % sorted(applied))
else:
    held = [applied[u][1] for u in same + ["poison-user"]]
    free = [applied[u][1] for u in other]
    dl = dlq[0]["ts"] / 1000
    if min(held) < dl - 0.05:
        errs.append("an event behind the poison on its partition was applied before the dead letter")
    if max(free) > dl:
        errs.append("events on other partitions waited for the poison event")
    wait_same = max(applied[u][1] - applied[u][0] for u in same)
    wait_other = max(applied[u][1] - applied[u][0] for u in other)
    print("retry window %.2f s (first attempt to dead letter), gaps %s s; "
          "other users on its partition waited %.2f s, on other partitions %.2f s"
          % (window, " ".join("%.2f" % g for g in gaps), wait_same, wait_other))
for e in errs:
    print(e, file=sys.stderr)
sys.exit(1 if errs else 0)
PY
pass "poison event: 4 attempts (1 + 3 retries) answered 500, then tasks-dlq with the CloudEvent intact, no inbox mark"

# ---- 3. the subscriber's database goes away: Dapr's app health check
# (annotations) stops the deliveries, nothing is dead-lettered, and when the
# database is back every event is applied once, in order
q -d postgres -c "ALTER ROLE $ROLE NOLOGIN" -c "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = '$ROLE'" >/dev/null
daprd_says() { [ "$(grep -c "$1" "$WORK/daprd.log")" -ge "$2" ]; }
rl_wait 30 daprd_says "App entered un-healthy status" 1 || fail "daprd did not see the app unhealthy"
before=$(applied)
write_batch outage
rl_wait 30 rl_all_delivered tasks || fail "outage events not in Kafka"
rl_wait 30 rl_all_delivered reminders || fail "outage reminders not in Kafka"
# Observation window longer than the retry window (6 s): an event delivered
# now would be dead-lettered within it.
sleep 8
[ "$(kafka_topic_count tasks-dlq)" -eq 1 ] && [ "$(kafka_topic_count reminders-dlq)" -eq 0 ] || fail "events dead-lettered during the outage"
[ "$(applied)" -eq "$before" ] || fail "applied during the outage"
q -d postgres -c "ALTER ROLE $ROLE LOGIN" >/dev/null
rl_wait 30 daprd_says "App entered healthy status" 2 || fail "daprd did not see the app healthy again"
rl_wait 60 all_but_poison || fail "after the outage: applied $(applied) of $(( $(outbox_count) - 1 ))"
q -d "$DB" -F $'\t' >"$WORK/check3.tsv" <"$WORK/check.sql"
bad=$(awk -F'\t' '$1 != "types" && $1 != "missing" && $2 != 0' "$WORK/check3.tsv")
[ -z "$bad" ] && grep -qx $'missing\t1' "$WORK/check3.tsv" || fail "after the outage: $(tr '\n\t' '; ' <"$WORK/check3.tsv")"
held=$(jq -r 'select(.msg == "delivery" and .outcome == "failed" and .reason != null) | .event_id' "$WORK/subscriber.log" | sort -u | wc -l)
[ "$held" -eq 1 ] || fail "deliveries failed during the outage (only the poison event may fail)"
pass "database outage: daprd paused on /healthz, nothing dead-lettered; $(( $(applied) - before )) events applied once, in order, after it"

# ---- 4. binary mode: the same Subscriptions cannot route it
# A second relay consumer re-sends every event with --binary: type, id and
# source go into ce_* headers, the value is the data alone, and Dapr finds no
# "type" to route on: every record goes to the dead-letter topics, nothing
# reaches the app.
dlq_before=$(( $(kafka_topic_count tasks-dlq) + $(kafka_topic_count reminders-dlq) ))
before=$(applied)
rl_once binary --consumer binary --binary || fail "binary relay"
nbin=$(q -d "$DB" -c "SELECT count(*) FROM taskevents.outbox_events WHERE topic IN ('tasks', 'reminders')")
dlq_grew() { [ $(( $(kafka_topic_count tasks-dlq) + $(kafka_topic_count reminders-dlq) - dlq_before )) -ge "$nbin" ]; }
rl_wait 60 dlq_grew || fail "binary records: $(( $(kafka_topic_count tasks-dlq) + $(kafka_topic_count reminders-dlq) - dlq_before )) of $nbin dead-lettered"
[ "$(applied)" -eq "$before" ] || fail "a binary-mode record was applied"
grep -q "no such key: type" "$WORK/daprd.log" || fail "daprd did not report the missing type"
pass "binary mode: all $nbin records dead-lettered by Dapr (no such key: type), none delivered"

# the rest of the poison user's events were applied in order after it
for w in "$POISON" "water plants" "dentist" "ünïcødé" "after the poison"; do
  ! grep -qF "$w" "$WORK/subscriber.log" || fail "task contents in the subscriber's log: $w"
done
pass "subscriber log: JSON lines with ids, types and outcomes, no task contents"
