#!/usr/bin/env bash
# test/kafka/kafka.sh: start/stop a real single-node Apache Kafka broker (KRaft, broker+controller in
# one JVM) on 127.0.0.1 for tests and the demo. Its jars come from Maven (test/kafka/pom.xml).
#
#   kafka.sh start | stop | kill | pause | resume | restart-broker | status | bootstrap | logs [N]
#   kafka.sh create-topics [name[:partitions] ...]   (default: tasks:3 reminders:3 tasks-dlq:1 reminders-dlq:1)
#   kafka.sh classpath                               (prints the broker's runtime classpath)
#
# Environment: KAFKA_PORT (19092), KAFKA_CONTROLLER_PORT (19093), KAFKA_STATE_DIR
# (${TMPDIR:-/tmp}/pgte-kafka-$KAFKA_PORT), KAFKA_KEEP_DATA=1 (start keeps the existing storage),
# KAFKA_START_TIMEOUT (90 s), KAFKA_STOP_TIMEOUT (30 s), KAFKA_HEAP_OPTS, KAFKA_JVM_OPTS,
# KAFKA_CACHE_DIR (test/kafka/target: cached classpath and compiled CreateTopics).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KAFKA_PORT=${KAFKA_PORT:-19092}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-19093}
STATE=${KAFKA_STATE_DIR:-${TMPDIR:-/tmp}/pgte-kafka-$KAFKA_PORT}
CACHE=${KAFKA_CACHE_DIR:-$HERE/target}
BOOTSTRAP=127.0.0.1:$KAFKA_PORT
PIDFILE=$STATE/kafka.pid
LOG=$STATE/logs/server.log
HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xmx512m -Xms256m}
JVM_OPTS=${KAFKA_JVM_OPTS:--XX:+UseSerialGC -XX:-UsePerfData -Djava.awt.headless=true}
TOOL_OPTS="-XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:-UsePerfData"   # short-lived JVMs start faster with C1 only
DEFAULT_TOPICS=(tasks:3 reminders:3 tasks-dlq:1 reminders-dlq:1)

die() { echo "kafka.sh: $*" >&2; exit 1; }

# Runtime classpath, resolved by Maven once per pom.xml content (offline first, online if that fails).
classpath() {
    local key cpf tmp
    key=$(sha1sum "$HERE/pom.xml" | cut -c1-12)
    cpf=$CACHE/classpath-$key.txt
    if [[ -s $cpf ]] && jars_exist "$cpf"; then cat "$cpf"; return; fi
    mkdir -p "$CACHE"
    tmp=$(mktemp "$CACHE/classpath.XXXXXX")
    if ! mvn -B -q -o -f "$HERE/pom.xml" dependency:build-classpath -Dmdep.includeScope=runtime \
            -Dmdep.outputFile="$tmp" >"$CACHE/mvn.log" 2>&1 &&
       ! mvn -B -q -f "$HERE/pom.xml" dependency:build-classpath -Dmdep.includeScope=runtime \
            -Dmdep.outputFile="$tmp" >"$CACHE/mvn.log" 2>&1; then
        rm -f "$tmp"; cat "$CACHE/mvn.log" >&2; die "maven could not resolve the Kafka classpath"
    fi
    chmod 644 "$tmp"; mv -f "$tmp" "$cpf"
    cat "$cpf"
}
jars_exist() { local j; while IFS= read -r -d: j || [[ -n $j ]]; do [[ -f $j ]] || return 1; done <"$1"; }

# Alive unless gone or an unreaped zombie whose threads have all exited (only then are its ports free).
alive() {
    local threads
    kill -0 "$1" 2>/dev/null || return 1
    grep -qs '^State:[[:space:]]*Z' "/proc/$1/status" || return 0
    threads=("/proc/$1/task/"*)
    ((${#threads[@]} > 1))
}
pid_of() {   # pid of our broker if it is alive, else nothing (and status 1)
    local pid
    [[ -s $PIDFILE ]] || return 1
    pid=$(<"$PIDFILE")
    alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "kafka.Kafka $STATE/" \
        && echo "$pid"
}
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
broker_answers() { kcat -b "$BOOTSTRAP" -L -m 2 -t __pgte_probe 2>/dev/null | grep -q ' 1 brokers:'; }

# Random KRaft cluster id: 16 random bytes, URL-safe base64 without padding, not starting with '-'.
cluster_id() {
    local id
    while id=$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '='); [[ $id == -* ]]; do :; done
    echo "$id"
}

write_config() {
    cat >"$STATE/server.properties" <<EOF
# written by test/kafka/kafka.sh: single-node KRaft broker for tests, loopback only
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$STATE/data
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
# Kafka's default, written out so oversize-message tests know the limit
message.max.bytes=1048588
log.segment.bytes=8388608
log.index.size.max.bytes=1048576
log.retention.hours=24
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
background.threads=2
# fast heartbeats: controlled shutdown waits for one, and a SIGKILLed broker's old registration
# blocks the restarted one until the session times out
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=3000
EOF
}

start() {
    local pid cp deadline
    pid=$(pid_of) && die "already running (pid $pid); run stop first"
    for p in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
        port_busy "$p" && die "127.0.0.1:$p is already in use by another process"
    done
    cp=$(classpath)
    mkdir -p "$STATE"
    [[ ${KAFKA_KEEP_DATA:-0} == 1 ]] || rm -rf "$STATE/data" "$STATE/logs"
    mkdir -p "$STATE/logs"
    write_config
    if [[ ! -f $STATE/data/meta.properties ]]; then
        # shellcheck disable=SC2086
        java $TOOL_OPTS -Dlog4j.configuration="file:$HERE/tools-log4j.properties" -cp "$cp" \
            kafka.tools.StorageTool format -t "$(cluster_id)" -c "$STATE/server.properties" \
            >"$STATE/logs/format.log" 2>&1 || { cat "$STATE/logs/format.log" >&2; die "storage format failed"; }
    fi
    # GC pauses go to logs/gc.log, as Kafka's own scripts log them: the
    # relay benchmark sets the broker's stop-the-world pauses against its
    # latency tail (bench/relay/run.sh)
    # shellcheck disable=SC2086
    java $HEAP_OPTS $JVM_OPTS -Xlog:gc:file="$STATE/logs/gc.log":utctime \
        -Dlog4j.configuration="file:$HERE/log4j.properties" \
        -Dkafka.logs.dir="$STATE/logs" -cp "$cp" kafka.Kafka "$STATE/server.properties" \
        </dev/null >"$STATE/logs/stdout.log" 2>&1 &
    echo $! >"$PIDFILE"
    deadline=$((SECONDS + ${KAFKA_START_TIMEOUT:-90}))
    until broker_answers; do
        if ! pid_of >/dev/null || ((SECONDS >= deadline)); then
            echo "kafka.sh: broker did not come up on $BOOTSTRAP; log tail:" >&2
            tail -n 40 "$LOG" "$STATE/logs/stdout.log" >&2 2>/dev/null || true
            stop >/dev/null
            exit 1
        fi
        sleep 0.2
    done
    echo "kafka started: pid $(<"$PIDFILE") on $BOOTSTRAP (state $STATE)"
}

# stop [SIGNAL]: signal the broker (TERM by default), wait for it to exit, SIGKILL after the timeout.
stop() {
    local pid sig=${1:-TERM} deadline
    if pid=$(pid_of); then
        kill -CONT "$pid" 2>/dev/null || true   # a paused broker cannot handle SIGTERM
        kill -"$sig" "$pid" 2>/dev/null || true
        deadline=$((SECONDS + ${KAFKA_STOP_TIMEOUT:-30}))
        while alive "$pid"; do
            if ((SECONDS >= deadline)); then
                echo "kafka.sh: broker $pid did not exit after SIG$sig; sending SIGKILL" >&2
                kill -KILL "$pid" 2>/dev/null || true
                deadline=$((SECONDS + 30))
            fi
            sleep 0.1
        done
        echo "kafka stopped (pid $pid, SIG$sig)"
    else
        echo "kafka not running"
    fi
    rm -f "$PIDFILE"
}

create_topics() {
    local cp src=$HERE/CreateTopics.java cls=$CACHE/classes tmp
    (($#)) || set -- "${DEFAULT_TOPICS[@]}"
    broker_answers || die "no broker answers on $BOOTSTRAP"
    cp=$(classpath)
    if [[ ! -f $cls/CreateTopics.class || $src -nt $cls/CreateTopics.class ]]; then
        mkdir -p "$cls"; tmp=$(mktemp -d "$CACHE/javac.XXXXXX")
        javac -nowarn -cp "$cp" -d "$tmp" "$src"
        mv -f "$tmp/CreateTopics.class" "$cls/"; rm -rf "$tmp"
    fi
    # shellcheck disable=SC2086
    java $TOOL_OPTS -Dlog4j.configuration="file:$HERE/tools-log4j.properties" -cp "$cls:$cp" \
        CreateTopics "$BOOTSTRAP" "$@"
}

cmd=${1:-}; shift || true
case $cmd in
    start) start ;;
    stop) stop TERM ;;
    kill) stop KILL ;;
    pause) pid=$(pid_of) || die "not running"; kill -STOP "$pid"; echo "kafka paused (pid $pid)" ;;
    resume) pid=$(pid_of) || die "not running"; kill -CONT "$pid"; echo "kafka resumed (pid $pid)" ;;
    restart-broker) stop TERM; KAFKA_KEEP_DATA=1 start ;;
    create-topics) create_topics "$@" ;;
    status) if pid=$(pid_of); then echo "running pid $pid on $BOOTSTRAP"; else echo "not running"; exit 1; fi ;;
    bootstrap) echo "$BOOTSTRAP" ;;
    logs) tail -n "${1:-100}" "$LOG" ;;
    classpath) classpath ;;
    *) sed -n '2,12p' "$0" >&2; exit 2 ;;
esac
