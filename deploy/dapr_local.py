#!/usr/bin/env python3
"""Render the Kubernetes Dapr resources for a standalone daprd.

  dapr_local.py [--root ROOT] --brokers HOST:PORT --out DIR [--app-port N] [--print-flags]

Reads deploy/kubernetes/dapr.yaml (the pub/sub Component, the
Subscriptions, the Resiliency) and deploy/kubernetes/subscriber.yaml (the
subscriber's Dapr annotations) and writes one file per resource into
DIR/resources for `daprd --resources-path DIR/resources` (a standalone daprd
reads only the first document of a file when it loads Resiliency specs),
and DIR/config.yaml for `daprd --config`: the Kubernetes name resolver, as
in a cluster, instead of the standalone default mDNS, which would announce
the app on the local network.  The test test/0640 runs daprd with it, and
you can do the same against a local broker (docker compose, scripts/demo).

What changes, and nothing else:
  * the Component's `brokers` become --brokers;
  * the Kafka authentication goes: `authType` becomes "none" and every
    metadata entry that reads a Kubernetes Secret (secretKeyRef: the SASL
    password, the cluster CA) or configures SASL/TLS is dropped.  A
    standalone daprd has no Kubernetes secret store, and a local broker
    speaks plaintext;
  * nothing else: consumer group, initial offset, message size, the
    Subscriptions' routes and dead-letter topics, the Resiliency policies
    and every scope stay exactly as in the manifest.

With --print-flags it also prints, one per line, the daprd flags that the
subscriber Deployment's dapr.io/* annotations stand for (app id, app health
check), for the app listening on --app-port, and the two paths above.
"""
import argparse
import os
import sys

import yaml

# Component metadata that only makes sense with the cluster's Secrets and
# TLS listener.
AUTH_FIELDS = {"saslUsername", "saslPassword", "saslMechanism", "caCert", "clientCert", "clientKey",
               "skipVerify", "tls"}

CONFIGURATION = {
    "apiVersion": "dapr.io/v1alpha1",
    "kind": "Configuration",
    "metadata": {"name": "taskevents-local"},
    "spec": {"nameResolution": {"component": "kubernetes"}},
}

# dapr.io/* annotation -> daprd flag, for the ones the subscriber uses.
ANNOTATION_FLAGS = {
    "dapr.io/app-id": "--app-id",
    "dapr.io/app-protocol": "--app-protocol",
    "dapr.io/enable-app-health-check": "--enable-app-health-check",
    "dapr.io/app-health-check-path": "--app-health-check-path",
    "dapr.io/app-health-probe-interval": "--app-health-probe-interval",
    "dapr.io/app-health-probe-timeout": "--app-health-probe-timeout",
    "dapr.io/app-health-threshold": "--app-health-threshold",
    "dapr.io/app-max-concurrency": "--app-max-concurrency",
}


def render_component(comp, brokers):
    meta = []
    for m in comp["spec"]["metadata"]:
        name = m["name"]
        if name == "brokers":
            m = {"name": name, "value": brokers}
        elif name == "authType":
            m = {"name": name, "value": "none"}
        elif name in AUTH_FIELDS or "secretKeyRef" in m:
            continue
        meta.append(m)
    if not any(m["name"] == "authType" for m in meta):
        meta.append({"name": "authType", "value": "none"})
    comp["spec"]["metadata"] = meta
    comp.pop("auth", None)
    return comp


def subscriber_annotations(root):
    with open(os.path.join(root, "deploy/kubernetes/subscriber.yaml")) as f:
        for d in yaml.safe_load_all(f):
            if d and d.get("kind") == "Deployment":
                return d["spec"]["template"]["metadata"].get("annotations", {})
    raise SystemExit("subscriber.yaml: no Deployment")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--app-port", type=int)
    ap.add_argument("--print-flags", action="store_true")
    a = ap.parse_args()

    with open(os.path.join(a.root, "deploy/kubernetes/dapr.yaml")) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    kinds = [d["kind"] for d in docs]
    if kinds.count("Component") != 1 or "Subscription" not in kinds or "Resiliency" not in kinds:
        raise SystemExit("dapr.yaml: expected one Component, Subscriptions and a Resiliency, found %s" % kinds)
    out = [render_component(d, a.brokers) if d["kind"] == "Component" else d for d in docs]
    # One document per file: a standalone daprd reads only the first
    # document of each file when it looks for Resiliency specs, so a
    # Resiliency after a "---" would be silently ignored.
    res_dir = os.path.join(a.out, "resources")
    os.makedirs(res_dir, exist_ok=True)
    for d in out:
        name = "%s-%s.yaml" % (d["kind"].lower(), d["metadata"]["name"])
        with open(os.path.join(res_dir, name), "w") as f:
            f.write("# Rendered by deploy/dapr_local.py from deploy/kubernetes/dapr.yaml: do not edit.\n")
            yaml.safe_dump(d, f, sort_keys=False)
    with open(os.path.join(a.out, "config.yaml"), "w") as f:
        f.write("# Rendered by deploy/dapr_local.py: name resolution as in Kubernetes, no mDNS.\n")
        yaml.safe_dump(CONFIGURATION, f, sort_keys=False)

    if a.print_flags:
        ann = subscriber_annotations(a.root)
        if ann.get("dapr.io/enabled") != "true":
            raise SystemExit("subscriber.yaml: dapr.io/enabled is not \"true\"")
        for k, flag in ANNOTATION_FLAGS.items():
            if k in ann:
                print("%s=%s" % (flag, ann[k]))
        if a.app_port:
            print("--app-port=%d" % a.app_port)
        print("--resources-path=%s" % res_dir)
        print("--config=%s" % os.path.join(a.out, "config.yaml"))


if __name__ == "__main__":
    sys.exit(main())
