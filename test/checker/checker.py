#!/usr/bin/env python3
"""History checker for pg_taskevents: what committed against what Kafka holds.

The committed side is chk.committed (test/checker/setup.sql), filled by
triggers in the same transaction as each write, so it never depends on the
outbox the relay truncates.  The delivered side is every topic of the broker
(dead-letter topics included), read from the beginning with kcat.

Reports, and exits 1 on any of the hard failures:
  lost            committed, in no topic (or expected on the DLQ and not there)
  phantom         in a topic, never committed (a rolled-back write published)
  id_changed      one event delivered under two CloudEvent ids
  misrouted       expected on a main topic but dead-lettered, or the reverse
  bad_key         Kafka key != partitionkey != the writer's user id, or one
                  key spread over two partitions
  invalid         a main-topic message that is not a structured CloudEvent
  order           per key, the first appearance of two events contradicts
                  their commit order: same session (transactions of one
                  session commit in sequence) or same task (row locks)
Reported, not failures: duplicates (at-least-once), dead letters and why,
foreign messages (not written by the checker's triggers, e.g. reminders).

Usage: checker.py --db DBNAME --brokers HOST:PORT [--wait SECONDS]
                  [--report FILE.json] [--dlq-suffix -dlq]
Needs psql (PG* environment) and kcat on PATH; Python standard library only.
"""
import argparse
import collections
import json
import subprocess
import sys
import time

CT_STRUCTURED = "application/cloudevents+json; charset=UTF-8"


def psql(db, sql):
    out = subprocess.run(["psql", "-X", "-q", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql],
                         check=True, capture_output=True, text=True).stdout
    return [line.split("\t") for line in out.splitlines() if line]


def kafka_topics(brokers):
    out = subprocess.run(["kcat", "-b", brokers, "-L", "-J", "-m", "10"], check=True,
                         capture_output=True, text=True).stdout
    meta = json.loads(out)
    return sorted(t["topic"] for t in meta["topics"] if not t["topic"].startswith("__"))


def consume(brokers, topic):
    p = subprocess.run(["kcat", "-b", brokers, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-J",
                        "-m", "10"], capture_output=True)
    if p.returncode != 0:
        raise RuntimeError("kcat failed on %s: %s" % (topic, p.stderr.decode(errors="replace")[:300]))
    msgs = []
    for line in p.stdout.decode("utf-8", errors="surrogateescape").splitlines():
        if not line.strip():
            continue
        m = json.loads(line)
        h = m.get("headers") or []
        m["hdr"] = {h[i]: h[i + 1] for i in range(0, len(h) - 1, 2)}
        msgs.append(m)
    msgs.sort(key=lambda m: (m["partition"], m["offset"]))
    return msgs


def payload_json(m):
    """A consumed record's value as JSON (None: no value, or not JSON)."""
    try:
        return json.loads(m["payload"]) if m.get("payload") is not None else None
    except ValueError:
        return None


def event_key(ev):
    """The checker's name of an event, from its CloudEvent (None if foreign)."""
    if not isinstance(ev, dict):
        return None
    data = ev.get("data")
    if isinstance(data, dict):
        if isinstance(data.get("chk_key"), str):
            return data["chk_key"]
        if "wseq" in data and data["wseq"] is not None:
            return ("d:" if ev.get("type") == "task.deleted" else "w:") + str(data["wseq"])
    return None


def load_committed(db):
    rows = psql(db, "SELECT ekey, user_id, coalesce(task_id, ''), pid, txid::text, ord, expect,"
                    " (extract(epoch FROM at) * 1000)::bigint FROM chk.committed")
    return {r[0]: {"user": r[1], "task": r[2], "pid": int(r[3]), "txid": int(r[4]), "ord": int(r[5]),
                   "expect": r[6], "at_ms": int(r[7])} for r in rows}


def pct(values, p):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100.0 * (len(values) - 1))))]


def load_dead_letter_keys(db):
    """CloudEvent id -> checker key for dead letters sent without their data."""
    rows = psql(db, "SELECT coalesce(event_id, ''), event::text FROM taskevents.dead_letters")
    out = {}
    for ce_id, ev in rows:
        try:
            k = event_key(json.loads(ev))
        except ValueError:
            k = None
        if ce_id and k:
            out[ce_id] = k
    return out


def check(args):
    committed = load_committed(args.db)
    topics = kafka_topics(args.brokers)
    dlq_topics = [t for t in topics if t.endswith(args.dlq_suffix)]
    main_topics = [t for t in topics if t not in dlq_topics]
    dl_keys = None
    r = collections.OrderedDict()
    first_main = {}          # key -> (topic, partition, offset) of first appearance
    seen_main = collections.defaultdict(int)
    seen_dlq = {}
    ids = collections.defaultdict(set)
    by_ce_id = collections.Counter()
    key_partitions = collections.defaultdict(set)
    stream = collections.defaultdict(list)   # kafka key -> checker keys, first appearances in order
    invalid, bad_key, phantom, foreign = [], [], [], 0
    dead = []
    latency = []             # write (chk.committed.at) -> Kafka message timestamp, ms
    for t in main_topics:
        for m in consume(args.brokers, t):
            pos = "%s/%d@%d" % (t, m["partition"], m["offset"])
            ev = payload_json(m)
            if not isinstance(ev, dict) or ev.get("specversion") != "1.0" or not isinstance(ev.get("id"), str) \
                    or m["hdr"].get("content-type") != CT_STRUCTURED:
                invalid.append(pos)
                continue
            by_ce_id[ev["id"]] += 1
            key_partitions[(t, m.get("key"))].add(m["partition"])
            k = event_key(ev)
            if k is None:
                foreign += 1
                continue
            ids[k].add(ev["id"])
            seen_main[k] += 1
            c = committed.get(k)
            if c is None:
                phantom.append(k)
                continue
            if m.get("key") != c["user"] or ev.get("partitionkey") != c["user"]:
                bad_key.append("%s key=%r partitionkey=%r user=%r" % (k, m.get("key"), ev.get("partitionkey"), c["user"]))
            if seen_main[k] == 1:
                first_main[k] = pos
                if m.get("ts") is not None and m["ts"] > 0:
                    latency.append(m["ts"] - c["at_ms"])
                stream[(t, m.get("key"))].append(k)
    for t in dlq_topics:
        for m in consume(args.brokers, t):
            pos = "%s/%d@%d" % (t, m["partition"], m["offset"])
            ev = payload_json(m)
            k = event_key(ev)
            ce_id = ev.get("id") if isinstance(ev, dict) else None
            if k is None and isinstance(ce_id, str):
                if dl_keys is None:
                    dl_keys = load_dead_letter_keys(args.db)
                k = dl_keys.get(ce_id)
            if isinstance(ce_id, str):
                by_ce_id[ce_id] += 1
                if k:
                    ids[k].add(ce_id)
            dead.append({"pos": pos, "key": k, "ce_id": ce_id if isinstance(ce_id, str) else None,
                         "reason": m["hdr"].get("taskevents-error"),
                         "attempts": m["hdr"].get("taskevents-attempts"),
                         "original_topic": m["hdr"].get("taskevents-original-topic")})
            if k is None:
                continue
            seen_dlq[k] = pos
            if k not in committed:
                phantom.append(k)
    lost = [k for k, c in committed.items()
            if (c["expect"] == "deliver" and k not in seen_main and k not in seen_dlq)
            or (c["expect"] == "dlq" and k not in seen_dlq)]
    misrouted = [k for k, c in committed.items()
                 if (c["expect"] == "deliver" and k in seen_dlq)
                 or (c["expect"] == "dlq" and k in seen_main)]
    id_changed = [k for k, s in ids.items() if len(s) > 1]
    split = ["%s key %r in partitions %s" % (t, key, sorted(p)) for (t, key), p in key_partitions.items() if len(p) > 1]
    # order: per Kafka key, along each session and each task
    order = []
    for (t, key), seq in stream.items():
        last_session = {}
        last_task = {}
        for k in seq:
            c = committed[k]
            so = (c["txid"], c["ord"])
            prev = last_session.get(c["pid"])
            if prev is not None and so < prev[0]:
                order.append("%s key %r: %s (session %d) after %s" % (t, key, k, c["pid"], prev[1]))
            if prev is None or so > prev[0]:
                last_session[c["pid"]] = (so, k)
            to = c["ord"]
            prevt = last_task.get(c["task"])
            if c["task"] and prevt is not None and to < prevt[0]:
                order.append("%s key %r: %s (task %s) after %s" % (t, key, k, c["task"], prevt[1]))
            if c["task"] and (prevt is None or to > prevt[0]):
                last_task[c["task"]] = (to, k)
    dups = sum(n - 1 for n in by_ce_id.values() if n > 1)
    reasons = collections.Counter("%s (attempts %s)" % (d["reason"], d["attempts"]) for d in dead)
    r["committed"] = len(committed)
    r["expected_dlq"] = sum(1 for c in committed.values() if c["expect"] == "dlq")
    r["delivered_unique"] = len(seen_main)
    r["messages_main"] = sum(seen_main.values()) + foreign + len(invalid)
    r["duplicates"] = dups
    r["duplicated_events"] = sum(1 for n in by_ce_id.values() if n > 1)
    r["dead_lettered"] = len(dead)
    r["dead_letter_reasons"] = dict(reasons)
    r["foreign"] = foreign
    r["latency_ms"] = {"p50": pct(latency, 50), "p99": pct(latency, 99), "max": pct(latency, 100)}
    r["topics"] = topics
    failures = collections.OrderedDict([("lost", lost), ("phantom", phantom), ("id_changed", id_changed),
                                        ("misrouted", misrouted), ("bad_key", bad_key + split),
                                        ("invalid", invalid), ("order", order)])
    for name, v in failures.items():
        r[name] = len(v)
    r["examples"] = {name: v[:5] for name, v in failures.items() if v}
    r["dead_letters"] = dead[:50]
    r["ok"] = not any(failures.values())
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", required=True)
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--wait", type=float, default=0,
                    help="re-read for up to this many seconds while events are missing")
    ap.add_argument("--report", help="write the full report as JSON here")
    ap.add_argument("--dlq-suffix", default="-dlq")
    args = ap.parse_args()
    deadline = time.time() + args.wait
    while True:
        try:
            r = check(args)
        except (subprocess.CalledProcessError, RuntimeError, ValueError) as e:
            err = getattr(e, "stderr", None) or str(e)
            print("checker: cannot read history: %s" % str(err).strip()[:500], file=sys.stderr)
            return 2
        if r["ok"] or (r["lost"] == 0 and r["misrouted"] == 0) or time.time() >= deadline:
            break
        time.sleep(1)
    if args.report:
        with open(args.report, "w") as f:
            json.dump(r, f, indent=1)
    summary = ("checker: committed %(committed)d, delivered %(delivered_unique)d, lost %(lost)d, "
               "duplicates %(duplicates)d, order violations %(order)d, phantom %(phantom)d, "
               "id changed %(id_changed)d, misrouted %(misrouted)d, bad key %(bad_key)d, invalid %(invalid)d, "
               "dead-lettered %(dead_lettered)d, foreign %(foreign)d") % r
    print(summary)
    print("checker: write -> kafka latency ms: p50 %s, p99 %s, max %s" % (
        r["latency_ms"]["p50"], r["latency_ms"]["p99"], r["latency_ms"]["max"]))
    if r["dead_letter_reasons"]:
        print("checker: dead letters: " + "; ".join("%d x %s" % (n, k) for k, n in r["dead_letter_reasons"].items()))
    for name, ex in r["examples"].items():
        print("checker: %s e.g. %s" % (name, "; ".join(map(str, ex))))
    print("checker: %s" % ("OK" if r["ok"] else "FAILED"))
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
