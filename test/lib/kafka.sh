# shellcheck shell=bash
# test/lib/kafka.sh: the one vocabulary of the tests, benchmarks and scripts
# for the real Kafka broker of test/kafka/kafka.sh.  Source it; it defines
# functions and picks the broker:
#
#   127.0.0.1:$RELAY_TEST_KAFKA_PORT (default 19192), its controller on
#   RELAY_TEST_KAFKA_CONTROLLER_PORT (default the next port), its storage in
#   RELAY_TEST_KAFKA_STATE (default ${TMPDIR:-/tmp}/pgte-kafka-PORT);
#   kafka_use PORT picks another (benchmarks, the demo).
#
#   kafka_start; kafka_create_topics                   # default topic set
#   "$RELAY" --brokers "$KAFKA_BROKER" ...
#   kafka_wait_count tasks 100 60                      # until >= 100 messages
#   kafka_topic_count tasks-dlq                        # how many now
#   kafka_records tasks | jq -r .key                   # every record, kcat -J
#
# The broker functions run in a subshell with `set -euo pipefail`, so
# sourcing this file does not change the caller's shell options and the
# helpers are safe under them.

KAFKA_SH=$(cd "$(dirname "${BASH_SOURCE[0]}")/../kafka" && pwd)/kafka.sh

# kafka_use PORT [CONTROLLER_PORT [STATE_DIR]]: the broker the functions
# below (and test/kafka/kafka.sh, through the exported variables) use;
# KAFKA_BROKER is its bootstrap address.
kafka_use() {
    export KAFKA_PORT=$1
    export KAFKA_CONTROLLER_PORT=${2:-$(($1 + 1))}
    export KAFKA_STATE_DIR=${3:-${TMPDIR:-/tmp}/pgte-kafka-$1}
    KAFKA_BROKER=127.0.0.1:$KAFKA_PORT
}
kafka_use "${RELAY_TEST_KAFKA_PORT:-19192}" "${RELAY_TEST_KAFKA_CONTROLLER_PORT:-}" "${RELAY_TEST_KAFKA_STATE:-}"

kafka_start() ( set -euo pipefail; "$KAFKA_SH" start )
kafka_stop() ( set -euo pipefail; "$KAFKA_SH" stop )
kafka_kill() ( set -euo pipefail; "$KAFKA_SH" kill )
kafka_pause() ( set -euo pipefail; "$KAFKA_SH" pause )
kafka_resume() ( set -euo pipefail; "$KAFKA_SH" resume )
kafka_restart_broker() ( set -euo pipefail; "$KAFKA_SH" restart-broker )
kafka_status() ( set -euo pipefail; "$KAFKA_SH" status )
kafka_logs() ( set -euo pipefail; "$KAFKA_SH" logs "$@" )
# kafka_create_topics [name[:partitions] ...]  (default tasks:3 reminders:3 tasks-dlq:1 reminders-dlq:1)
kafka_create_topics() ( set -euo pipefail; "$KAFKA_SH" create-topics "$@" )
# The bootstrap address: KAFKA_BROKER (a test may point it at another
# cluster, such as the relay's --dev-mock-kafka one).
kafka_bootstrap() { echo "$KAFKA_BROKER"; }

# kafka_records TOPIC: every record of TOPIC, from the beginning to its
# current end, as kcat JSON lines (topic, partition, offset, ts, key,
# payload, headers as a [name, value, ...] array); nothing if the topic
# does not answer.
kafka_records() { kcat -b "$(kafka_bootstrap)" -C -t "$1" -o beginning -e -q -J -m 10 2>/dev/null; }

# kafka_consume TOPIC COUNT [TIMEOUT_S=30]: read TOPIC from the beginning until COUNT messages or
# the timeout; print one JSON object per message, sorted by partition then offset:
#   {"topic","partition","offset","ts","key","value","headers":{name:value}}
# (key/value are null for null key/tombstone; a repeated header name keeps its last value).
# Returns 0 if COUNT messages were read, 1 otherwise (what was read is printed either way).
kafka_consume() (
    set -euo pipefail
    local topic=$1 count=$2 secs=${3:-30} raw n rc=0
    raw=$(timeout "$secs" kcat -b "$(kafka_bootstrap)" -C -t "$topic" -o beginning -c "$count" -J -q) || rc=$?
    ((rc == 0 || rc == 124)) || { echo "kafka_consume: kcat failed (rc $rc)" >&2; return 1; }
    jq -c -s 'sort_by(.partition, .offset)[]
        | {topic, partition, offset, ts, key, value: .payload,
           headers: ((.headers // []) as $h
                     | reduce range(0; $h | length; 2) as $i ({}; . + {($h[$i]): $h[$i + 1]}))}' <<<"$raw"
    n=$(grep -c . <<<"$raw" || true)
    ((n >= count)) || { echo "kafka_consume: got $n of $count messages from $topic in ${secs}s" >&2; return 1; }
)

# kafka_topic_count TOPIC: messages in TOPIC as the sum of its partitions' high watermarks
# (a transactional producer's commit markers would count too; the relay's
# idempotent producer writes none).  Prints 0 if TOPIC is unknown or the
# broker does not answer.
kafka_topic_count() (
    set -uo pipefail
    local topic=$1 parts i args=()
    parts=$(kcat -b "$(kafka_bootstrap)" -L -t "$topic" -J -m 5 2>/dev/null | jq '.topics[0].partitions | length' 2>/dev/null)
    [[ $parts =~ ^[0-9]+$ ]] && ((parts > 0)) || { echo 0; return 0; }
    for ((i = 0; i < parts; i++)); do args+=(-t "$topic:$i:-1"); done
    kcat -b "$(kafka_bootstrap)" -Q "${args[@]}" 2>/dev/null | awk '/ offset [0-9]+$/ { s += $NF } END { print s + 0 }'
)

# kafka_wait_count TOPIC N [TIMEOUT_S=30]: poll until TOPIC holds at least N messages; prints the
# count reached. Returns 1 (with a message) on timeout.
kafka_wait_count() (
    set -euo pipefail
    local topic=$1 want=$2 secs=${3:-30} have deadline
    deadline=$((SECONDS + secs))
    while true; do
        have=$(kafka_topic_count "$topic")
        ((have >= want)) && { echo "$have"; return 0; }
        ((SECONDS < deadline)) || { echo "kafka_wait_count: $topic has $have of $want messages after ${secs}s" >&2; return 1; }
        sleep 0.2
    done
)
