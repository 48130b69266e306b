#!/usr/bin/env python3
"""Validate pg_taskevents CloudEvents against the JSON Schemas in this folder.

  validate.py check-schemas
      every *.schema.json is a valid draft 2020-12 schema.
  validate.py records FILE [--dlq-suffix -dlq]
      FILE holds Kafka records as `kcat -C -J` lines (structured mode).  Each
      record's value is validated against the schema of its `type` (a type
      with no schema of its own must not be task.* or reminder.*: it is a
      taskevents.publish() event and is checked against the envelope), and
      the record layout is checked: content-type header, key = partitionkey,
      record topic = the event's topic (or topic + suffix with the
      dead-letter headers).  Prints a JSON summary; exit 1 on any error.
  validate.py event FILE|-
      one event (a JSON object) or JSON lines; exit 1 if any is invalid, with
      the reasons on stderr.  Used to show that a broken event is rejected.

Needs jsonschema >= 4.18 (the `referencing` registry); formats (uuid,
date-time, uri-reference) are checked with the format checker.
"""
import importlib.metadata
import json
import pathlib
import sys

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

HERE = pathlib.Path(__file__).resolve().parent
STRUCTURED_CT = "application/cloudevents+json; charset=UTF-8"
DLQ_HEADERS = ["taskevents-original-topic", "taskevents-error", "taskevents-attempts",
               "taskevents-first-failure", "taskevents-last-failure"]


def load():
    schemas = {}
    for p in sorted(HERE.glob("*.schema.json")):
        s = json.loads(p.read_text())
        schemas[p.name[: -len(".schema.json")]] = s
    registry = Registry().with_resources(
        (s["$id"], Resource.from_contents(s)) for s in schemas.values())
    return schemas, registry


SCHEMAS, REGISTRY = load()
FORMATS = Draft202012Validator.FORMAT_CHECKER


def validator_for(etype):
    """The validator for an event type, or an error string."""
    if etype in SCHEMAS:
        name = etype
    elif isinstance(etype, str) and (etype.startswith("task.") or etype.startswith("reminder.")):
        return None, "no schema for event type %r" % etype
    else:
        name = "cloudevent"
    return Draft202012Validator(SCHEMAS[name], registry=REGISTRY, format_checker=FORMATS), None


def event_errors(ev):
    if not isinstance(ev, dict):
        return ["not a JSON object"]
    v, err = validator_for(ev.get("type"))
    if err:
        return [err]
    return ["%s: %s" % ("/".join(map(str, e.absolute_path)) or "(event)", e.message)
            for e in sorted(v.iter_errors(ev), key=lambda e: list(map(str, e.absolute_path)))]


def headers_of(rec):
    h = rec.get("headers") or []
    return {h[i]: h[i + 1] for i in range(0, len(h), 2)}


def check_records(path, dlq_suffix):
    errors, counts, n = [], {}, 0
    for line in open(path):
        if not line.strip():
            continue
        n += 1
        rec = json.loads(line)
        where = "%s/%s@%s" % (rec.get("topic"), rec.get("partition"), rec.get("offset"))
        hdr = headers_of(rec)
        try:
            ev = json.loads(rec.get("payload") or "")
        except ValueError:
            errors.append("%s: value is not JSON" % where)
            continue
        if hdr.get("content-type") != STRUCTURED_CT:
            errors.append("%s: content-type %r" % (where, hdr.get("content-type")))
        errs = event_errors(ev)
        errors += ["%s: %s" % (where, e) for e in errs]
        if not isinstance(ev, dict):
            continue
        if ev.get("partitionkey") is not None and rec.get("key") != ev.get("partitionkey"):
            errors.append("%s: key %r != partitionkey %r" % (where, rec.get("key"), ev.get("partitionkey")))
        dead = rec.get("topic", "").endswith(dlq_suffix) and ev.get("topic") != rec.get("topic")
        if dead:
            missing = [h for h in DLQ_HEADERS if h not in hdr]
            if missing:
                errors.append("%s: dead letter without headers %s" % (where, missing))
            if hdr.get("taskevents-original-topic") != ev.get("topic") or \
                    rec["topic"] != ev.get("topic", "") + dlq_suffix:
                errors.append("%s: dead letter of topic %r" % (where, ev.get("topic")))
        elif rec.get("topic") != ev.get("topic"):
            errors.append("%s: record topic != event topic %r" % (where, ev.get("topic")))
        if ev.get("type", "").startswith(("task.", "reminder.")) and isinstance(ev.get("data"), dict):
            d = ev["data"]
            tid = d.get("task_id", d.get("id"))
            if str(tid) != ev.get("subject"):
                errors.append("%s: subject %r != task id %r" % (where, ev.get("subject"), tid))
            if "user_id" in d and str(d["user_id"]) != ev.get("partitionkey"):
                errors.append("%s: partitionkey != data.user_id" % where)
        key = ("dead:" if dead else "") + str(ev.get("type"))
        counts[key] = counts.get(key, 0) + 1
    print(json.dumps({"records": n, "types": counts, "errors": errors[:20], "error_count": len(errors)},
                     sort_keys=True))
    return 0 if not errors and n > 0 else 1


def check_events(path):
    text = sys.stdin.read() if path == "-" else open(path).read()
    try:
        events = [json.loads(text)]
    except ValueError:
        events = [json.loads(l) for l in text.splitlines() if l.strip()]
    bad = 0
    for i, ev in enumerate(events):
        errs = event_errors(ev)
        if errs:
            bad += 1
            print("event %d (%s): %s" % (i, ev.get("type") if isinstance(ev, dict) else "?", "; ".join(errs)),
                  file=sys.stderr)
    return 1 if bad else 0


def check_schemas():
    for name, s in SCHEMAS.items():
        Draft202012Validator.check_schema(s)
        if s.get("$schema") != "https://json-schema.org/draft/2020-12/schema":
            print("%s: not draft 2020-12" % name, file=sys.stderr)
            return 1
    print("%d schemas ok (jsonschema %s)" % (len(SCHEMAS), importlib.metadata.version("jsonschema")))
    return 0


def main(argv):
    if len(argv) >= 1 and argv[0] == "check-schemas":
        return check_schemas()
    if len(argv) >= 2 and argv[0] == "records":
        suffix = argv[3] if len(argv) >= 4 and argv[2] == "--dlq-suffix" else "-dlq"
        return check_records(argv[1], suffix)
    if len(argv) == 2 and argv[0] == "event":
        return check_events(argv[1])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
