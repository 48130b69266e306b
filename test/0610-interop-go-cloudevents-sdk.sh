#!/usr/bin/env bash
# Interop: a consumer in Go with the official CloudEvents SDK
# (github.com/cloudevents/sdk-go/v2 and its Sarama protocol binding, IBM/sarama
# as the Kafka client: what Dapr's Kafka pub/sub is built on) reads every
# event type the relay wrote, in structured mode and then, from a fresh
# broker, in binary mode (--binary).  Every record must decode to a valid
# CloudEvent whose attributes and data equal the outbox's event.
set -euo pipefail
source "$(dirname "$0")/lib/relay.sh"
GOC=$("$PGTE_ROOT/interop/go-consumer/build.sh") || fail "go consumer build"
rl_setup interop

q -d "$DB" <<'SQL' >/dev/null
SET taskevents.traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
INSERT INTO tasks (user_id, title, tags, due_date) VALUES ('alice', 'write report', '{work}', now() + interval '3 days');
RESET taskevents.traceparent;
INSERT INTO tasks (user_id, title, due_date, is_recurring, recurring_interval)
  VALUES ('bob', 'water plants', now() + interval '2 days', true, 'daily');
UPDATE tasks SET title = 'write the report', description = 'ünïcødé "quoted"' WHERE user_id = 'alice';
UPDATE tasks SET completed = true WHERE user_id = 'bob';
DELETE FROM tasks WHERE user_id = 'alice';
INSERT INTO tasks (user_id, title, due_date) VALUES ('carol', 'call the dentist', now() + interval '1 hour');
SELECT taskevents.publish('reminders', 'com.example.note', '{"text": "hello"}', 'dave', 'note-1');
SQL
TYPES='["com.example.note","reminder.cancelled","reminder.scheduled","reminder.triggered","task.completed","task.created","task.deleted","task.updated"]'

rl_relay relay
triggered() { [ "$(q -d "$DB" -c "SELECT count(*) FROM taskevents.outbox_events WHERE event->>'type' = 'reminder.triggered'")" -ge 1 ]; }
rl_wait 30 triggered || fail "reminder.triggered not written"
rl_wait 30 rl_all_delivered tasks || fail "tasks not delivered"
rl_wait 30 rl_all_delivered reminders || fail "reminders not delivered"
kill -TERM "$RL_PID"; wait "$RL_PID" || fail "relay exit status $?"
q -d "$DB" -c "SELECT event FROM taskevents.outbox_events WHERE topic IN ('tasks', 'reminders') ORDER BY id" >"$WORK/outbox.jsonl"

# check MODE FILE: every record decoded by the SDK equals its outbox event.
check() {
  python3 - "$1" "$2" "$WORK/outbox.jsonl" "$TYPES" <<'PY'
import json, sys
from datetime import datetime
mode, got, want, types = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
recs = [json.loads(l) for l in open(got) if l.strip()]
evs = {e["id"]: e for e in (json.loads(l) for l in open(want) if l.strip())}
errs = []
def t(s): return datetime.fromisoformat(s.replace("Z", "+00:00"))
for r in recs:
    e = evs.get(r["id"])
    w = "%s/%s@%s %s" % (r["topic"], r["partition"], r["offset"], r.get("type"))
    if r.get("error"): errs.append(w + ": " + r["error"]); continue
    if e is None: errs.append(w + ": id not in the outbox"); continue
    if r["encoding"] != mode: errs.append(w + ": encoding " + r["encoding"])
    for a in ("specversion", "source", "type", "datacontenttype"):
        if r[a] != e[a]: errs.append("%s: %s %r != %r" % (w, a, r[a], e[a]))
    if r["subject"] != e.get("subject", ""): errs.append(w + ": subject")
    if t(r["time"]) != t(e["time"]): errs.append(w + ": time %s != %s" % (r["time"], e["time"]))
    if r.get("data") != e.get("data"): errs.append(w + ": data differs")
    x = r["extensions"]
    if x.get("partitionkey") != e["partitionkey"] or r["key"] != e["partitionkey"]: errs.append(w + ": partitionkey/key")
    if x.get("traceparent") != e.get("traceparent"): errs.append(w + ": traceparent")
    # structured mode carries every attribute; binary mode the ce_* headers
    # the relay writes (Dapr's topic and pubsubname are not among them)
    if mode == "structured" and (x.get("topic") != e["topic"] or x.get("pubsubname") != e["pubsubname"]):
        errs.append(w + ": topic/pubsubname extensions")
    if r["topic"] != e["topic"]: errs.append(w + ": record topic")
ids = [r["id"] for r in recs]
if sorted(set(ids)) != sorted(evs) or len(ids) != len(set(ids)):
    errs.append("%d records for %d outbox events (%d distinct)" % (len(ids), len(evs), len(set(ids))))
seen = sorted({r["type"] for r in recs})
if seen != types: errs.append("types seen: %s" % seen)
if not any(r["extensions"].get("traceparent") for r in recs): errs.append("no traceparent")
for e in errs[:10]: print(e, file=sys.stderr)
print(len(recs))
sys.exit(1 if errs else 0)
PY
}

"$GOC" consume -brokers "$KAFKA_BROKER" -topics tasks,reminders -timeout 60s >"$WORK/structured.jsonl" 2>"$WORK/goc.log" \
  || fail "go consumer (structured): $(tail -3 "$WORK/goc.log")"
n=$(check structured "$WORK/structured.jsonl") || fail "structured mode records differ from the outbox"
pass "structured: the Go CloudEvents SDK decoded $n records, every type, equal to the outbox"

kafka_stop >/dev/null; kafka_start >/dev/null 2>&1 || fail "kafka restart"
kafka_create_topics >/dev/null 2>&1
rl_once binary --consumer binary --binary || fail "binary relay failed"
"$GOC" consume -brokers "$KAFKA_BROKER" -topics tasks,reminders -timeout 60s >"$WORK/binary.jsonl" 2>"$WORK/goc.log" \
  || fail "go consumer (binary): $(tail -3 "$WORK/goc.log")"
n=$(check binary "$WORK/binary.jsonl") || fail "binary mode records differ from the outbox"
pass "binary: the Go CloudEvents SDK decoded $n records from ce_* headers, every type, equal to the outbox"

# and a record that is no CloudEvent is reported, not silently accepted
printf 'k1\t{"not":"an event"}\n' | kcat -b "$KAFKA_BROKER" -P -t tasks -K $'\t' -H 'content-type=application/json' 2>/dev/null
if "$GOC" consume -brokers "$KAFKA_BROKER" -topics tasks -timeout 30s >"$WORK/bad.jsonl" 2>"$WORK/goc.log"; then
  fail "the Go consumer accepted a record that is not a CloudEvent"
fi
jq -s -e 'map(select(.key == "k1")) | length == 1 and .[0].error != null' "$WORK/bad.jsonl" >/dev/null || fail "bad record not flagged"
pass "a plain JSON record without ce_* headers is rejected by the SDK"
