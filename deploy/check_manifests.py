#!/usr/bin/env python3
"""Check the deployment files against each other and against the code.

  check_manifests.py ROOT HELP_FILE KCAT_PROPERTIES_FILE

ROOT is a checkout (or a copy of one); HELP_FILE is `taskevents-relay --help`
output; KCAT_PROPERTIES_FILE is `kcat -X list` output (librdkafka's property
names).  No cluster, no network, no container engine: only parsing.  Prints
one line per problem and exits 1 if there is any.

What is checked:
  * every YAML document parses; Kubernetes objects have apiVersion, kind,
    metadata.name and the namespace "taskevents";
  * relay flags and TASKEVENTS_* variables in Kubernetes, compose and the
    systemd unit exist in --help; TASKEVENTS_KAFKA_* map to librdkafka
    properties; docs/relay.md's flag table and --help list the same options;
  * the metrics port: --metrics-addr, containerPort "metrics", probes on
    /healthz, Prometheus annotations on /metrics, EXPOSE in the Dockerfile;
    a NetworkPolicy in the kustomization selects every relay pod and admits
    the metrics port only from named peers, while the pod's other ports
    (PostgreSQL) stay admitted;
  * topics: the KafkaTopics are exactly the extension's topics (attach()'s
    default, the reminders topic) plus the --dlq-suffix topics; their
    partitions, replicas, retention.ms and max.message.bytes are set and
    fit the broker's limits; the node pool belongs to the Kafka cluster;
  * Dapr: Component pubsub.kafka named like taskevents.pubsubname's default,
    no rawPayload; Subscriptions on known topics with deadLetterTopic =
    topic + suffix and routing rules on event types of the catalog
    (schemas/) and a default route; Resiliency inbound: 3 retries, a timeout
    per attempt, no circuit breaker, the retry window stated in the comments;
  * the subscriber Deployment: dapr.io/* annotations (enabled, app id in
    every scope, app port = the app's loopback listener, app health check on
    a path the app serves), every Subscription route served by
    examples/subscriber, probes on the probe listener, liveness not on the
    database health;
  * brokers and secrets referenced exist (Secret example, KafkaUsers,
    the Strimzi cluster CA Secret);
  * compose binds published ports to 127.0.0.1 and creates the four topics;
  * Dockerfiles are multi-stage, end as a non-root USER, COPY paths exist;
  * the systemd unit runs taskevents-relay with hardening options;
  * the images taskevents/{relay,postgres,subscriber} are tagged with the
    version of pg_taskevents.control wherever deploy/, compose and the docs
    name them.
"""
import glob
import os
import re
import sys

import yaml

problems = []


def problem(where, msg):
    problems.append("%s: %s" % (where, msg))


def main(root, help_file, props_file):
    run_checks(root, help_file, props_file)
    for p in problems:
        print(p)
    return 1 if problems else 0


def seconds(d):
    """A Go duration of the simple kinds used here ("2s", "500ms") in seconds."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", str(d))
    if not m:
        return None
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[m.group(2)]


def fmt_s(x):
    return ("%g s" % x)


def check_resiliency(root, rw, r, cname):
    """The inbound policy of the pub/sub component: three retries, a bounded
    attempt, no circuit breaker, and comments that state the real window."""
    spec = r["spec"]
    inbound = spec["targets"]["components"].get(cname, {}).get("inbound", {})
    pol = spec["policies"].get("retries", {}).get(inbound.get("retry"), {})
    if int(pol.get("maxRetries", -1)) != 3:
        problem(rw, "inbound retry of %s does not give the 3 retries: %s" % (cname, pol))
    if inbound.get("circuitBreaker"):
        problem(rw, "circuit breaker on %s inbound: while open it sends every event straight to the "
                    "deadLetterTopic" % cname)
    timeout = seconds(spec["policies"].get("timeouts", {}).get(inbound.get("timeout"), ""))
    if not timeout:
        problem(rw, "no timeout on %s inbound: a hanging app would hold its partition forever" % cname)
    text = open(os.path.join(root, "deploy/kubernetes/dapr.yaml")).read()
    if pol.get("policy") == "constant":
        d = seconds(pol.get("duration"))
        n = int(pol.get("maxRetries", 0))
        if d is None:
            problem(rw, "constant retry without a duration")
        else:
            said = "%d retries %s apart" % (n, fmt_s(d))
            window = "%d x %s = %s" % (n, fmt_s(d), fmt_s(n * d))
            if said not in text or window not in text:
                problem(rw, "the comment does not state the retry window (\"%s\", \"%s\")" % (said, window))
            if timeout:
                worst = "%d x %s + %d x %s = %s" % (n + 1, fmt_s(timeout), n, fmt_s(d), fmt_s((n + 1) * timeout + n * d))
                if worst not in text:
                    problem(rw, "the comment does not state the worst case with timeouts (\"%s\")" % worst)
    elif pol.get("policy") == "exponential":
        if not pol.get("maxInterval"):
            problem(rw, "exponential retry without maxInterval")
    else:
        problem(rw, "inbound retry policy %s" % pol.get("policy"))
    # the reference subscriber must give up on its database before Dapr
    # gives up on the attempt, so that it answers 500 itself
    main = os.path.join(root, "examples/subscriber/main.go")
    m = re.search(r'"SUBSCRIBER_DB_TIMEOUT", "([^"]+)"', open(main).read()) if os.path.exists(main) else None
    if timeout and (not m or seconds(m.group(1)) >= timeout):
        problem(rw, "the subscriber's database timeout %s is not below the attempt timeout %s"
                % (m and m.group(1), fmt_s(timeout)))


def check_subscriber(root, objs, comp, subs, res):
    """The subscriber Deployment: Dapr annotations that match the app, the
    scopes, the routes the app serves, its listeners and probes."""
    deps = [(w, d) for w, d in objs if d["kind"] == "Deployment"
            and (d["spec"]["template"]["metadata"].get("annotations") or {}).get("dapr.io/app-id")]
    if not deps:
        problem("deploy/kubernetes", "no Deployment with Dapr annotations (the subscriber)")
        return
    main_go = os.path.join(root, "examples/subscriber/main.go")
    src = open(main_go).read() if os.path.exists(main_go) else ""
    served = set(re.findall(r'"(GET|POST) (/[^"]*)"', src))
    kust = yaml.safe_load(open(os.path.join(root, "deploy/kubernetes/kustomization.yaml")))
    for w, d in deps:
        where = "%s %s" % (w, d["metadata"]["name"])
        if os.path.basename(w) not in kust.get("resources", []):
            problem(where, "not in kustomization.yaml")
        ann = d["spec"]["template"]["metadata"]["annotations"]
        app = ann["dapr.io/app-id"]
        if ann.get("dapr.io/enabled") != "true":
            problem(where, "dapr.io/enabled is not \"true\": no sidecar is injected")
        for kind, items in (("Component", [comp]), ("Subscription", subs), ("Resiliency", res)):
            for it in items:
                if app not in (it.get("scopes") or []):
                    problem(where, "app id %s is not in the scopes of %s %s" % (app, kind, it["metadata"]["name"]))
        cs = d["spec"]["template"]["spec"]["containers"]
        c = next((c for c in cs if "taskevents/subscriber" in c.get("image", "")), None)
        if c is None:
            problem(where, "no taskevents/subscriber container")
            continue
        if not os.path.exists(os.path.join(root, "deploy/docker/subscriber.Dockerfile")):
            problem(where, "deploy/docker/subscriber.Dockerfile missing")
        env = {e["name"]: e for e in c.get("env", [])}
        listen = env.get("SUBSCRIBER_LISTEN", {}).get("value", "")
        host, _, port = listen.rpartition(":")
        if host != "127.0.0.1":
            problem(where, "SUBSCRIBER_LISTEN %s is not on loopback: anyone in the cluster could post events" % listen)
        if str(ann.get("dapr.io/app-port")) != port:
            problem(where, "dapr.io/app-port %s != SUBSCRIBER_LISTEN port %s" % (ann.get("dapr.io/app-port"), port))
        if "password" in env.get("DATABASE_URL", {}).get("value", "").lower():
            problem(where, "password in DATABASE_URL")
        for n, e in env.items():
            if re.search(r"PASSWORD|SECRET", n) and "valueFrom" not in e:
                problem(where, "%s is not from a Secret" % n)
        for sub in subs:
            r = sub["spec"].get("routes") or {}
            for path in [x.get("path") for x in r.get("rules") or []] + [r.get("default")]:
                if path and ("POST", path) not in served:
                    problem(where, "route %s of %s is not served by examples/subscriber" % (path, sub["metadata"]["name"]))
            if not r.get("default"):
                problem(where, "%s has no default route: Dapr dead-letters what no rule matches"
                        % sub["metadata"]["name"])
        if ann.get("dapr.io/enable-app-health-check") == "true":
            hp = ann.get("dapr.io/app-health-check-path", "/healthz")
            if ("GET", hp) not in served:
                problem(where, "app health check path %s is not served" % hp)
            if int(ann.get("dapr.io/app-health-probe-timeout", 500)) > 1000 * int(ann.get("dapr.io/app-health-probe-interval", 5)):
                problem(where, "app health probe timeout above the probe interval")
        else:
            problem(where, "no Dapr app health check: a database outage would dead-letter events")
        probe_port = env.get("SUBSCRIBER_PROBE_LISTEN", {}).get("value", "").rpartition(":")[2]
        ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
        for probe in ("readinessProbe", "livenessProbe"):
            hg = (c.get(probe) or {}).get("httpGet") or {}
            if ("GET", hg.get("path")) not in served or str(ports.get(hg.get("port"), hg.get("port"))) != probe_port:
                problem(where, "%s %s is not served on SUBSCRIBER_PROBE_LISTEN" % (probe, hg))
        live = ((c.get("livenessProbe") or {}).get("httpGet") or {}).get("path")
        if live == ann.get("dapr.io/app-health-check-path", "/healthz"):
            problem(where, "livenessProbe on %s: a database outage would restart the app" % live)
        sc = c.get("securityContext", {})
        psc = d["spec"]["template"]["spec"].get("securityContext", {})
        if not (sc.get("runAsUser") or psc.get("runAsNonRoot")) or sc.get("allowPrivilegeEscalation") is not False:
            problem(where, "subscriber container may run as root or escalate")


def run_checks(root, help_file, props_file):
    help_text = open(help_file).read()
    flags = set(re.findall(r"--([a-z][a-z0-9-]+)", help_text))
    envs = set(re.findall(r"\b(TASKEVENTS_[A-Z0-9_]+)", help_text)) - {"TASKEVENTS_KAFKA_"}
    props = set(re.findall(r"^([a-z][a-z0-9._]+)\s+\|", open(props_file).read(), re.M))
    if len(props) < 50:
        problem(props_file, "no librdkafka property list")
    m = re.search(r"--metrics-addr.*\n.*default: (\S+)", help_text)
    dlq_suffix = re.search(r"--dlq-suffix.*\n.*default: (\S+)", help_text).group(1)
    if not m or "/healthz" not in help_text:
        problem("--help", "no --metrics-addr default or /healthz")

    def rel(p):
        return os.path.relpath(p, root)

    # ---- the code's side: topics, pubsubname, event types, docs flags
    attach_sql = open(os.path.join(root, "extension/sql/10_attach.sql")).read()
    task_topic = re.search(r"topic text DEFAULT '([^']+)'", attach_sql).group(1)
    rem_topics = set(re.findall(r'#define TASKEVENTS_REMINDERS_TOPIC\s+"([^"]+)"',
                                open(os.path.join(root, "extension/taskevents.h")).read()))
    topics = {task_topic} | rem_topics
    all_topics = topics | {t + dlq_suffix for t in topics}
    pubsub_default = re.search(r'"taskevents\.pubsubname",[^;]*?&taskevents_pubsubname,\s*"([^"]+)"',
                               open(os.path.join(root, "extension/pg_taskevents.c")).read(), re.S).group(1)
    event_types = {os.path.basename(p)[: -len(".schema.json")]
                   for p in glob.glob(os.path.join(root, "schemas/*.schema.json"))} - {"cloudevent", "task-row"}
    if len(event_types) != 7 or topics != {"tasks", "reminders"}:
        problem("code", "expected 7 event types on tasks and reminders, got %s on %s" % (sorted(event_types), topics))
    doc_flags = set(re.findall(r"^\| `(?:-\w, )?--([a-z0-9-]+)", open(os.path.join(root, "docs/relay.md")).read(), re.M))
    doc_flags -= {"help", "version"}
    if doc_flags != flags - {"help", "version"}:
        problem("docs/relay.md", "flag table and --help differ: %s" % sorted(doc_flags ^ (flags - {"help", "version"})))

    def check_relay_args(where, args):
        for a in args:
            if a.startswith("--"):
                name = a[2:].split("=", 1)[0]
                if name not in flags:
                    problem(where, "unknown relay flag --%s" % name)

    def check_relay_env(where, name):
        if name.startswith("TASKEVENTS_KAFKA_"):
            prop = name[len("TASKEVENTS_KAFKA_"):].lower().replace("_", ".")
            if prop not in props:
                problem(where, "%s: %s is no librdkafka property" % (name, prop))
        elif name.startswith("TASKEVENTS_") and name not in envs:
            problem(where, "unknown relay variable %s" % name)

    # ---- Kubernetes
    objs = []
    kustomized = set()
    for p in sorted(glob.glob(os.path.join(root, "deploy/kubernetes/*.yaml"))):
        try:
            docs = [d for d in yaml.safe_load_all(open(p)) if d is not None]
        except yaml.YAMLError as e:
            problem(rel(p), "YAML: %s" % e)
            continue
        for d in docs:
            if not isinstance(d, dict) or not all(k in d for k in ("apiVersion", "kind")):
                problem(rel(p), "document without apiVersion/kind")
                continue
            if d["kind"] == "Kustomization":
                kustomized |= set(d.get("resources", []))
                for r in d.get("resources", []):
                    if not os.path.exists(os.path.join(os.path.dirname(p), r)):
                        problem(rel(p), "resource %s missing" % r)
                continue
            md = d.get("metadata") or {}
            if not md.get("name"):
                problem(rel(p), "%s without metadata.name" % d["kind"])
            if d["kind"] != "Namespace" and md.get("namespace") != "taskevents":
                problem(rel(p), "%s/%s not in namespace taskevents" % (d["kind"], md.get("name")))
            objs.append((rel(p), d))
    if not objs:
        problem("deploy/kubernetes", "no manifests")

    def of(kind):
        return [(w, d) for w, d in objs if d["kind"] == kind]

    kafkas = of("Kafka")
    if len(kafkas) != 1:
        problem("deploy/kubernetes", "expected one Kafka, found %d" % len(kafkas))
        return
    kw, kafka = kafkas[0]
    kname = kafka["metadata"]["name"]
    ann = kafka["metadata"].get("annotations", {})
    if ann.get("strimzi.io/kraft") != "enabled" or ann.get("strimzi.io/node-pools") != "enabled":
        problem(kw, "Kafka is not KRaft with node pools")
    kcfg = kafka["spec"]["kafka"].get("config", {})
    broker_max = int(kcfg.get("message.max.bytes", 1048588))
    listeners = {l["name"]: l for l in kafka["spec"]["kafka"]["listeners"]}
    bootstrap_ports = {l["port"] for l in listeners.values()}
    pools = of("KafkaNodePool")
    if not pools:
        problem(kw, "no KafkaNodePool")
    pool_replicas = 0
    for w, np_ in pools:
        if np_["metadata"].get("labels", {}).get("strimzi.io/cluster") != kname:
            problem(w, "node pool %s not labelled for cluster %s" % (np_["metadata"]["name"], kname))
        if "broker" in np_["spec"].get("roles", []):
            pool_replicas += np_["spec"]["replicas"]
        if not {"controller", "broker"} & set(np_["spec"].get("roles", [])):
            problem(w, "node pool without roles")
    if not any("controller" in np_["spec"].get("roles", []) for _, np_ in pools):
        problem(kw, "no controller node pool (KRaft)")

    kt = {d["metadata"]["name"]: (w, d) for w, d in of("KafkaTopic")}
    if set(kt) != all_topics:
        problem("topics", "KafkaTopics %s != topics the extension and relay use %s" % (sorted(kt), sorted(all_topics)))
    for name, (w, t) in kt.items():
        s = t["spec"]
        if t["metadata"].get("labels", {}).get("strimzi.io/cluster") != kname:
            problem(w, "topic %s not labelled for cluster %s" % (name, kname))
        for k in ("partitions", "replicas"):
            if not isinstance(s.get(k), int) or s[k] < 1:
                problem(w, "topic %s: %s" % (name, k))
        if s.get("replicas", 0) > pool_replicas:
            problem(w, "topic %s: %s replicas on %d brokers" % (name, s.get("replicas"), pool_replicas))
        c = s.get("config", {})
        for k in ("retention.ms", "max.message.bytes", "min.insync.replicas"):
            if k not in c:
                problem(w, "topic %s: %s not set" % (name, k))
        if int(c.get("max.message.bytes", 0)) > broker_max:
            problem(w, "topic %s: max.message.bytes above the broker's message.max.bytes" % name)
        if int(c.get("min.insync.replicas", 0)) >= s.get("replicas", 0):
            problem(w, "topic %s: min.insync.replicas must be below replicas" % name)

    secrets = {d["metadata"]["name"]: set((d.get("stringData") or d.get("data") or {}).keys()) for _, d in of("Secret")}
    for _, u in of("KafkaUser"):
        secrets[u["metadata"]["name"]] = {"password"}
    secrets[kname + "-cluster-ca-cert"] = {"ca.crt"}

    def check_secret_refs(where, node):
        if isinstance(node, dict):
            ref = node.get("secretKeyRef")
            if isinstance(ref, dict):
                if ref.get("name") not in secrets or ref.get("key") not in secrets[ref.get("name")]:
                    problem(where, "secret %s key %s is not defined" % (ref.get("name"), ref.get("key")))
            if "secretName" in node and node["secretName"] not in secrets:
                problem(where, "secret %s is not defined" % node["secretName"])
            for v in node.values():
                check_secret_refs(where, v)
        elif isinstance(node, list):
            for v in node:
                check_secret_refs(where, v)

    def check_brokers(where, value):
        for b in value.split(","):
            host, _, port = b.rpartition(":")
            if not host.startswith(kname + "-kafka-bootstrap") or int(port) not in bootstrap_ports:
                problem(where, "brokers %s are not the %s bootstrap service" % (b, kname))

    metrics_port = None
    relays = 0
    relay_pods = []
    for w, d in objs:
        if d["kind"] not in ("Deployment", "StatefulSet"):
            continue
        check_secret_refs(w, d)
        tpl = d["spec"]["template"]
        for c in tpl["spec"]["containers"]:
            if "taskevents/relay" not in c.get("image", ""):
                continue
            relays += 1
            where = "%s %s/%s" % (w, d["metadata"]["name"], c["name"])
            args = c.get("args", []) + c.get("command", [])[1:]
            check_relay_args(where, args)
            env = {e["name"]: e for e in c.get("env", [])}
            for n in env:
                check_relay_env(where, n)
            if "TASKEVENTS_BROKERS" in env:
                check_brokers(where, env["TASKEVENTS_BROKERS"]["value"])
            else:
                problem(where, "no TASKEVENTS_BROKERS")
            for n, e in env.items():
                if re.search(r"PASSWORD|SECRET", n) and "valueFrom" not in e:
                    problem(where, "%s is not from a Secret" % n)
            if any(a.startswith("--db") and "password" in a for a in args) or \
                    "password" in env.get("TASKEVENTS_DB", {}).get("value", ""):
                problem(where, "password in the connection string")
            addr = [a.split("=", 1)[1] for a in args if a.startswith("--metrics-addr=")]
            addr = addr[0] if addr else m.group(1)
            host, _, port = addr.rpartition(":")
            if host in ("127.0.0.1", "localhost"):
                problem(where, "--metrics-addr %s is unreachable for probes" % addr)
            port = int(port)
            metrics_port = metrics_port or port
            ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            pod_ports = {(p.get("name"), p["containerPort"]) for c2 in tpl["spec"]["containers"]
                         for p in c2.get("ports", [])}
            relay_pods.append((where, tpl["metadata"].get("labels", {}), port, pod_ports))
            if ports.get("metrics") != port:
                problem(where, "containerPort metrics %s != --metrics-addr port %d" % (ports.get("metrics"), port))
            for probe in ("readinessProbe", "livenessProbe"):
                hg = (c.get(probe) or {}).get("httpGet") or {}
                if hg.get("path") != "/healthz" or hg.get("port") not in ("metrics", port):
                    problem(where, "%s not on /healthz of the metrics port" % probe)
            a = tpl["metadata"].get("annotations", {})
            if a.get("prometheus.io/scrape") != "true" or a.get("prometheus.io/port") != str(port) \
                    or a.get("prometheus.io/path") != "/metrics":
                problem(where, "Prometheus annotations do not point at :%d/metrics" % port)
            if not (c.get("resources") or {}).get("requests"):
                problem(where, "no resource requests")
            sc = c.get("securityContext", {})
            psc = tpl["spec"].get("securityContext", {})
            if not (sc.get("runAsUser") or psc.get("runAsNonRoot")) or sc.get("allowPrivilegeEscalation") is not False:
                problem(where, "relay container may run as root or escalate")
    if relays == 0:
        problem("deploy/kubernetes", "no relay container")

    # ---- NetworkPolicy: the relay's HTTP port only from named peers
    policies = of("NetworkPolicy")
    for w, pol in policies:
        if os.path.basename(w) not in kustomized:
            problem(w, "NetworkPolicy %s is not in kustomization.yaml" % pol["metadata"]["name"])

    def admits(rule, port, name):
        rps = rule.get("ports")
        return rps is None or any(rp.get("port") in (None, port, name) for rp in rps)

    for where, labels, port, pod_ports in relay_pods:
        sel = [(w, p) for w, p in policies
               if "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
               and not p["spec"].get("podSelector", {}).get("matchExpressions")
               and set((p["spec"].get("podSelector", {}).get("matchLabels") or {}).items()) <= set(labels.items())]
        if not sel:
            problem(where, "no NetworkPolicy restricts ingress to the metrics port %d" % port)
            continue
        for w, p in sel:
            for rule in p["spec"].get("ingress") or []:
                if not admits(rule, port, "metrics"):
                    continue
                peers = rule.get("from") or []
                if not peers:
                    problem(w, "%s: metrics port %d open to every source" % (p["metadata"]["name"], port))
                for peer in peers:
                    cidr = (peer.get("ipBlock") or {}).get("cidr", "")
                    if cidr.endswith("/0") or peer in ({"namespaceSelector": {}}, {"podSelector": {}},
                                                       {"namespaceSelector": {}, "podSelector": {}}):
                        problem(w, "%s: metrics port %d open to %s" % (p["metadata"]["name"], port, peer))
        for name, cport in sorted(pod_ports, key=str):
            if cport != port and not any(admits(r, cport, name) for _, p in sel for r in p["spec"].get("ingress") or []):
                problem(where, "port %s (%s) unreachable under the NetworkPolicy" % (cport, name))

    # ---- Dapr
    comps = [(w, d) for w, d in of("Component") if d["spec"].get("type") == "pubsub.kafka"]
    if len(comps) != 1:
        problem("dapr", "expected one pubsub.kafka Component")
    else:
        w, comp = comps[0]
        cname = comp["metadata"]["name"]
        if cname != pubsub_default:
            problem(w, "Component %s != taskevents.pubsubname default %s" % (cname, pubsub_default))
        meta = {x["name"]: x for x in comp["spec"]["metadata"]}
        if "rawPayload" in meta:
            problem(w, "rawPayload set: Dapr would wrap the relay's CloudEvents again")
        if "brokers" in meta:
            check_brokers(w, meta["brokers"]["value"])
        else:
            problem(w, "no brokers")
        check_secret_refs(w, comp)
        for x in meta.values():
            if re.search(r"[Pp]assword|[Ss]ecret", x["name"]) and "secretKeyRef" not in x:
                problem(w, "%s not from a Secret" % x["name"])
        for sw, s in of("Subscription"):
            sp = s["spec"]
            where = "%s %s" % (sw, s["metadata"]["name"])
            if sp.get("pubsubname") != cname:
                problem(where, "pubsubname %s != Component %s" % (sp.get("pubsubname"), cname))
            if sp.get("topic") not in topics:
                problem(where, "topic %s is not one the extension writes" % sp.get("topic"))
            if sp.get("deadLetterTopic") != "%s%s" % (sp.get("topic"), dlq_suffix):
                problem(where, "deadLetterTopic %s" % sp.get("deadLetterTopic"))
            if str((sp.get("metadata") or {}).get("rawPayload", "false")).lower() == "true":
                problem(where, "rawPayload")
            rules = (sp.get("routes") or {}).get("rules") or []
            if not rules:
                problem(where, "no routing rules")
            for r in rules:
                types = re.findall(r'event\.type\s*==\s*"([^"]+)"', r.get("match", ""))
                if not types:
                    problem(where, "rule %r does not match on event.type" % r.get("match"))
                for t in types:
                    if t not in event_types or not t.startswith({"tasks": "task.", "reminders": "reminder."}
                                                                 .get(sp.get("topic"), "-")):
                        problem(where, "rule on %s: no such event on topic %s" % (t, sp.get("topic")))
        res = of("Resiliency")
        if not res:
            problem("dapr", "no Resiliency")
        for rw, r in res:
            check_resiliency(root, rw, r, cname)
        check_subscriber(root, objs, comp, [d for _, d in of("Subscription")], [d for _, d in res])

    # ---- compose
    cp = os.path.join(root, "docker-compose.yml")
    try:
        compose = yaml.safe_load(open(cp))
        svcs = compose["services"]
        for n in ("postgres", "kafka", "relay"):
            if n not in svcs:
                problem("docker-compose.yml", "no service %s" % n)
        for n, s in svcs.items():
            for p in s.get("ports", []):
                if not str(p).startswith("127.0.0.1:"):
                    problem("docker-compose.yml", "%s publishes %s beyond 127.0.0.1" % (n, p))
            b = s.get("build")
            if b and not os.path.exists(os.path.join(root, b.get("context", "."), b.get("dockerfile", "Dockerfile"))):
                problem("docker-compose.yml", "%s: Dockerfile %s missing" % (n, b.get("dockerfile")))
        r = svcs.get("relay", {})
        for n in r.get("environment", {}):
            check_relay_env("docker-compose.yml relay", n)
        check_relay_args("docker-compose.yml relay", r.get("command", []) if isinstance(r.get("command"), list) else [])
        made = " ".join(svcs.get("kafka-topics", {}).get("command", []))
        for t in all_topics:
            if not re.search(r"(^|\s)%s:\d+" % re.escape(t), made):
                problem("docker-compose.yml", "topic %s not created" % t)
    except (OSError, yaml.YAMLError, KeyError, TypeError) as e:
        problem("docker-compose.yml", str(e))

    # ---- Dockerfiles
    dfs = glob.glob(os.path.join(root, "deploy/docker/*Dockerfile"))
    if len(dfs) < 2:
        problem("deploy/docker", "expected the relay and postgres Dockerfiles")
    for p in dfs:
        lines = [l.strip() for l in open(p) if l.strip() and not l.startswith("#")]
        froms = [i for i, l in enumerate(lines) if l.startswith("FROM ")]
        if len(froms) < 2:
            problem(rel(p), "not multi-stage")
        users = [l.split()[1] for l in lines[froms[-1]:] if l.startswith("USER ")] if froms else []
        if not users or users[-1].split(":")[0] in ("root", "0"):
            problem(rel(p), "final stage does not switch to a non-root USER")
        for l in lines:
            if l.startswith("COPY ") and "--from=" not in l:
                for src in l.split()[1:-1]:
                    if not os.path.exists(os.path.join(root, src)):
                        problem(rel(p), "COPY source %s missing" % src)
        if "relay" in os.path.basename(p):
            if metrics_port and "EXPOSE %d" % metrics_port not in lines:
                problem(rel(p), "does not EXPOSE %s" % metrics_port)
            if not any("taskevents-relay" in l for l in lines if l.startswith("ENTRYPOINT")):
                problem(rel(p), "ENTRYPOINT is not taskevents-relay")

    # ---- systemd
    up = os.path.join(root, "deploy/systemd/taskevents-relay.service")
    unit = {}
    for l in open(up):
        l = l.strip()
        if l and not l.startswith(("#", "[")) and "=" in l:
            k, v = l.split("=", 1)
            unit.setdefault(k, []).append(v)
    ex = (unit.get("ExecStart") or [""])[0].split()
    if not ex or not ex[0].endswith("/taskevents-relay"):
        problem(rel(up), "ExecStart is not taskevents-relay")
    check_relay_args(rel(up), ex[1:])
    for v in unit.get("Environment", []):
        check_relay_env(rel(up), v.split("=", 1)[0])
    for k, v in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                 ("PrivateTmp", "yes"), ("DynamicUser", "yes"), ("RestrictAddressFamilies", None),
                 ("SystemCallFilter", None), ("CapabilityBoundingSet", None), ("KillSignal", "SIGTERM")):
        if k not in unit or (v and v not in unit[k]):
            problem(rel(up), "%s=%s missing" % (k, v or "..."))
    if "2" not in " ".join(unit.get("RestartPreventExitStatus", [])):
        problem(rel(up), "restarts on exit status 2 (bad configuration)")

    # ---- image tags: the project's images carry the release's version
    version = re.search(r"^default_version = '([^']+)'", open(os.path.join(root, "pg_taskevents.control")).read(),
                        re.M).group(1)
    tagged = [p for p in glob.glob(os.path.join(root, "deploy/**/*"), recursive=True) if os.path.isfile(p)]
    tagged += glob.glob(os.path.join(root, "docker-compose.yml")) + glob.glob(os.path.join(root, "README.md"))
    tagged += glob.glob(os.path.join(root, "docs/*.md")) + glob.glob(os.path.join(root, "examples/**/*.md"), recursive=True)
    for p in sorted(tagged):
        for m in re.finditer(r"taskevents/(relay|postgres|subscriber):([A-Za-z0-9_.-]+)", open(p, errors="replace").read()):
            if m.group(2) != version:
                problem(rel(p), "image %s: not the version of pg_taskevents.control (%s)" % (m.group(0), version))


if __name__ == "__main__":
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(*sys.argv[1:]))
