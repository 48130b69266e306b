#!/usr/bin/env bash
# test/kafka/smoke.sh: proves the test Kafka broker works end to end: start it, create the topics,
# produce 3 keyed messages with a header via kcat, consume and check them, check that
# restart-broker keeps the data, stop it. Exits non-zero on any mismatch.
# Uses its own ports (18092/18093 unless KAFKA_PORT/KAFKA_CONTROLLER_PORT are set) so that it
# does not clash with a broker already running on the default ones.
set -euo pipefail
port=${KAFKA_PORT:-18092} controller_port=${KAFKA_CONTROLLER_PORT:-18093}
# shellcheck source=SCRIPTDIR/../lib/kafka.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/kafka.sh"
kafka_use "$port" "$controller_port"

fail() { echo "smoke: FAIL: $*" >&2; exit 1; }
timed() {   # timed LABEL CMD...: run CMD, report its wall time
    local t0=$EPOCHREALTIME
    "${@:2}"
    printf 'smoke: %-15s %6.2f s\n' "$1" "$(bc <<<"$EPOCHREALTIME - $t0")" >&2
}

trap 'kafka_stop >/dev/null' EXIT
timed start kafka_start
timed create-topics kafka_create_topics
timed create-again kafka_create_topics   # idempotent: topics exist already

printf '%s\n' 'k1|{"n":1}' 'k2|{"n":2}' 'k3|{"n":3}' |
    kcat -b "$(kafka_bootstrap)" -P -t tasks -K '|' -H ce_type=smoke.test -H trace=abc
[[ $(kafka_wait_count tasks 3 10) == 3 ]] || fail "tasks should hold exactly 3 messages"

check() {   # check JSON-LINES: the 3 messages, by key, with value and headers
    local got
    got=$(jq -s -c 'sort_by(.key) | map([.key, .value, .headers.ce_type, .headers.trace])' <<<"$1")
    [[ $got == '[["k1","{\"n\":1}","smoke.test","abc"],["k2","{\"n\":2}","smoke.test","abc"],["k3","{\"n\":3}","smoke.test","abc"]]' ]] ||
        fail "unexpected messages: $got"
}
msgs=$(kafka_consume tasks 3 10) || fail "could not consume 3 messages"
check "$msgs"
kafka_consume tasks 4 1 >/dev/null 2>&1 && fail "kafka_consume should fail when fewer messages arrive"
[[ $(kafka_topic_count reminders) == 0 ]] || fail "reminders should be empty"

timed restart-broker kafka_restart_broker
msgs=$(kafka_consume tasks 3 10) || fail "messages lost across restart-broker"
check "$msgs"

timed stop kafka_stop
kafka_status >/dev/null 2>&1 && fail "broker still running after stop"
echo "smoke: OK"
