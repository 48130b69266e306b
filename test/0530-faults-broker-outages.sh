#!/usr/bin/env bash
# Fault matrix 4 and 5: the broker goes away under load.  First it is
# stopped for longer than the relay's delivery timeout (message.timeout.ms
# is 3 s here, the outage over 7 s): what librdkafka still queues must come
# back to the relay before it can time out there; then
# it is killed (SIGKILL) and started, and stopped and started, once
# more each, while four writers keep committing.  The checker: nothing
# lost, order kept, and nothing dead-lettered because of an outage.
set -euo pipefail
source "$(dirname "$0")/lib/faults.sh"
fl_setup outages

rl_relay relay -X message.timeout.ms=3000 --maintain-interval-ms 500
rl_wait 20 rl_log_has relay '"became leader"' || fail "no leader"
fl_writers_start 4 5 0.05 0
kafka_wait_count tasks 200 30 >/dev/null || fail "nothing delivered before the outage"

elapsed_since() { [ $(( $(date +%s) - $1 )) -ge "$2" ]; }
rl_log_has_n() { [ "$(grep -c "$2" "$WORK/$1.log")" -ge "$3" ]; }
outage() {   # outage N SIGNAL MIN_S: stop the broker, keep it down MIN_S while writes go on, start it
  local n=$1 how=$2 min=$3 t0 c0
  t0=$(date +%s); c0=$(fl_committed)
  "kafka_$how" >>"$WORK/kafka-restarts.log" 2>&1
  local t_stop=$(( $(date +%s) - t0 ))
  rl_wait 30 rl_log_has relay '"kafka unavailable, circuit open' || fail "outage $n: the relay did not notice"
  # down for at least MIN_S seconds and 100 more committed events
  rl_wait $((min + 30)) elapsed_since "$t0" "$min" || true
  rl_wait 30 fl_has_committed $((c0 + 100)) || fail "outage $n: writes stalled while Kafka was down"
  local t_start; t_start=$(date +%s)
  KAFKA_KEEP_DATA=1 kafka_start >>"$WORK/kafka-restarts.log" 2>&1 || fail "outage $n: broker did not restart"
  down=$(( $(date +%s) - t0 )); t_start=$(( $(date +%s) - t_start ))
  local c1; c1=$(fl_committed)
  rl_wait 60 rl_log_has_n relay '"kafka available, circuit closed"' "$n" || fail "outage $n: circuit did not close"
  kafka_wait_count tasks "$c1" 60 >/dev/null || fail "outage $n: backlog of $c1 events not delivered"
  echo "outage $n ($how): ${down}s down (stopping ${t_stop}s, starting ${t_start}s)" >>"$WORK/outages.txt"
}
outage 1 stop 7
outage 2 kill 1
outage 3 stop 1
fl_writers_stop
fl_check "broker outages" 90
[ "$FL_DLQ" -eq 0 ] || fail "$FL_DLQ events dead-lettered because of the outages"
[ "$(q -d "$DB" -c "SELECT count(*) FROM taskevents.dead_letters")" -eq 0 ] || fail "dead letters recorded"
opens=$(grep -c '"kafka unavailable, circuit open' "$WORK/relay.log")
# what the producer held when an outage outlasted 2/3 of message.timeout.ms:
# taken back, so none of it timed out inside librdkafka (test/0108 shows
# why that matters)
takes=$(grep -c "took back the producer's queue" "$WORK/relay.log" || true)
held=$(grep "took back the producer's queue" "$WORK/relay.log" | grep -o '"producer_queue":[0-9]*' | awk -F: '{ n += $2 } END { print n + 0 }')
pass "$(paste -sd, "$WORK/outages.txt" | sed 's/,/, /g'); circuit opened $opens times; the producer's queue taken back $takes times ($held messages); $FL_SUMMARY"
