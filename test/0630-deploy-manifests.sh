#!/usr/bin/env bash
# Deployment files, checked without a cluster, a network or a container
# engine: deploy/check_manifests.py parses every Kubernetes manifest, the
# compose file, the Dockerfiles and the systemd unit, and checks them against
# the relay (`taskevents-relay --help`, librdkafka's property names from
# `kcat -X list`), the topics and pubsubname the extension writes and the
# event types of schemas/.  Then a dozen deliberate mistakes, each in a copy
# of the files, must each be reported.
set -euo pipefail
source "$(dirname "$0")/lib/pg.sh"
PY=$("$PGTE_ROOT/schemas/venv.sh") || fail "python venv"
RELAY=$PGTE_ROOT/relay/taskevents-relay
[ -x "$RELAY" ] || make -s -C "$PGTE_ROOT/relay" >/dev/null || fail "relay build failed"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/deploy-check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

"$RELAY" --help >"$WORK/help.txt" || fail "--help"
kcat -X list >"$WORK/props.txt" 2>&1 || true
check() { "$PY" "$PGTE_ROOT/deploy/check_manifests.py" "$1" "$WORK/help.txt" "$WORK/props.txt"; }

out=$(check "$PGTE_ROOT") || fail "deployment files inconsistent:"$'\n'"$out"
n=$(cat "$PGTE_ROOT"/deploy/kubernetes/*.yaml | grep -c '^kind:')
dockerfiles=("$PGTE_ROOT"/deploy/docker/*Dockerfile)
pass "$n Kubernetes objects, compose, ${#dockerfiles[@]} Dockerfiles, systemd unit: consistent with --help, topics, event types"

# --help documents every option of the relay's option table (docs/relay.md
# is compared by the checker; here: each option's environment variable too)
for f in config db brokers consumer batch-size max-inflight poll-interval-ms standby-poll-ms dlq-suffix \
         retry-backoff-ms lease-ttl-ms shutdown-timeout-ms maintain-interval-ms reminders-interval-ms \
         backlog-interval-ms metrics-addr binary once log-level dev-mock-kafka; do
  env=TASKEVENTS_$(tr 'a-z-' 'A-Z_' <<<"$f")
  grep -q -- "--$f" "$WORK/help.txt" && grep -q "env $env" "$WORK/help.txt" || fail "--help lacks --$f / $env"
done
grep -q -- '-X KEY=VALUE' "$WORK/help.txt" && grep -q 'partitioner=fnv1a_random' "$WORK/help.txt" || fail "--help: -X, defaults"
pass "--help documents every option with its environment variable and default"

# mutate FILE SED-EXPR EXPECTED: in a copy of the files, the checker must fail
# and name the problem.
mutate() {
  local file=$1 expr=$2 want=$3 copy=$WORK/copy
  rm -rf "$copy"; mkdir -p "$copy/extension" "$copy/docs"
  cp -r "$PGTE_ROOT/deploy" "$PGTE_ROOT/schemas" "$PGTE_ROOT/docker-compose.yml" "$copy/"
  cp -r "$PGTE_ROOT/extension/sql" "$PGTE_ROOT/extension/pg_taskevents.c" "$PGTE_ROOT/extension/taskevents.h" "$copy/extension/"
  cp "$PGTE_ROOT/docs/relay.md" "$copy/docs/"; cp -r "$PGTE_ROOT/examples" "$copy/"
  cp "$PGTE_ROOT/Makefile" "$PGTE_ROOT/pg_taskevents.control" "$copy/"; cp -r "$PGTE_ROOT/relay" "$copy/"
  sed -i -e "$expr" "$copy/$file"
  cmp -s "$copy/$file" "$PGTE_ROOT/$file" && fail "mutation did not apply: $file $expr"
  if out=$(check "$copy"); then fail "not detected: $file: $expr"; fi
  grep -q -- "$want" <<<"$out" || fail "$file: $expr: expected \"$want\", got: $out"
}
# Each row FILE|SED-EXPR|EXPECTED, read by one loop (a row per mistake).
n=0
while IFS='|' read -r file expr want <&3; do
  [ -n "$want" ] || fail "malformed mutation row: $file|$expr"
  mutate "$file" "$expr" "$want"
  n=$((n + 1))
done 3<<'MUTATIONS'
deploy/kubernetes/postgres-relay.yaml|s/--metrics-addr=/--metric-addr=/|unknown relay flag --metric-addr
deploy/kubernetes/postgres-relay.yaml|s/containerPort: 9187/containerPort: 9188/|containerPort metrics 9188
deploy/kubernetes/postgres-relay.yaml|s/TASKEVENTS_KAFKA_SASL_USERNAME/TASKEVENTS_KAFKA_SASL_USER/|sasl.user is no librdkafka property
deploy/kubernetes/postgres-relay.yaml|s/path: \/healthz/path: \/health/|not on /healthz
deploy/kubernetes/topics.yaml|s/name: reminders-dlq/name: reminder-dlq/|KafkaTopics
deploy/kubernetes/topics.yaml|0,/max.message.bytes: 1048588/s//max.message.bytes: 2097152/|above the broker
deploy/kubernetes/dapr.yaml|s/    - name: initialOffset/    - name: rawPayload\n      value: "true"\n    - name: initialOffset/|rawPayload set
deploy/kubernetes/dapr.yaml|s/maxRetries: 3/maxRetries: 5/|does not give the 3 retries
deploy/kubernetes/dapr.yaml|s/duration: 2s/duration: 3s/|does not state the retry window
deploy/kubernetes/dapr.yaml|s/eventDelivery: 5s/eventDelivery: 2s/|not below the attempt timeout
deploy/kubernetes/dapr.yaml|s/          retry: eventDelivery/          retry: eventDelivery\n          circuitBreaker: cb/|circuit breaker
deploy/kubernetes/dapr.yaml|s/path: \/events\/reminders/path: \/events\/reminder/|not served by examples/subscriber
deploy/kubernetes/dapr.yaml|0,/default: \/events\/other/{/default: \/events\/other/d}|no default route
deploy/kubernetes/subscriber.yaml|/dapr.io\/enabled/d|dapr.io/enabled
deploy/kubernetes/subscriber.yaml|s/dapr.io\/app-port: "3000"/dapr.io\/app-port: "3001"/|app-port 3001
deploy/kubernetes/subscriber.yaml|s/dapr.io\/app-id: taskevents-subscriber/dapr.io\/app-id: notifier/|not in the scopes
deploy/kubernetes/subscriber.yaml|s/value: 127.0.0.1:3000/value: 0.0.0.0:3000/|not on loopback
deploy/kubernetes/subscriber.yaml|s/path: \/livez/path: \/healthz/|a database outage would restart
deploy/kubernetes/subscriber.yaml|s/key: subscriber-password/key: subscriber-pass/|secret taskevents-db key subscriber-pass
deploy/kubernetes/kustomization.yaml|/subscriber.yaml/d|not in kustomization.yaml
deploy/kubernetes/dapr.yaml|s/"task.completed"/"task.finished"/|task.finished: no such event
deploy/kubernetes/dapr.yaml|s/deadLetterTopic: reminders-dlq/deadLetterTopic: dead/|deadLetterTopic dead
deploy/kubernetes/dapr.yaml|s/^  name: pubsub$/  name: kafka-pubsub/|taskevents.pubsubname default
deploy/kubernetes/kafka.yaml|s/^kind: KafkaNodePool$/kind: KafkaNodePool: x/|YAML
docker-compose.yml|s/"127.0.0.1:9187:9187"/"9187:9187"/|beyond 127.0.0.1
docker-compose.yml|s/TASKEVENTS_LOG_LEVEL/TASKEVENTS_LOGLEVEL/|unknown relay variable TASKEVENTS_LOGLEVEL
deploy/docker/relay.Dockerfile|/^USER /d|non-root USER
deploy/systemd/taskevents-relay.service|/^NoNewPrivileges/d|NoNewPrivileges
deploy/systemd/taskevents-relay.service|s/--consumer default/--consumers default/|unknown relay flag --consumers
deploy/kubernetes/networkpolicy.yaml|0,/    - from:/s//    - from: []\n    - from:/|metrics port 9187 open to every source
deploy/kubernetes/networkpolicy.yaml|0,/app.kubernetes.io\/name: taskevents-postgres/s//app.kubernetes.io\/name: taskevents-pg/|no NetworkPolicy restricts ingress to the metrics port
deploy/kubernetes/networkpolicy.yaml|0,/        - {protocol: TCP, port: 5432}/s//        - {protocol: TCP, port: 5433}/|port 5432 (postgres) unreachable
deploy/kubernetes/kustomization.yaml|/networkpolicy.yaml/d|not in kustomization.yaml
deploy/kubernetes/relay-deployment.yaml|s/image: taskevents\/relay:.*/image: taskevents\/relay:0.0.9/|taskevents/relay:0.0.9: not the version
docker-compose.yml|s/image: taskevents\/postgres:.*/image: taskevents\/postgres:latest/|taskevents/postgres:latest: not the version
MUTATIONS
[ "$n" -gt 0 ] || fail "no mutations read"
pass "$n deliberate mistakes in copies of the files are each reported"
