#!/usr/bin/env bash
# Fault matrix 8: poison events mixed into normal traffic.  While four
# writers commit, one user writes tasks too large for Kafka (retried 1, 2,
# 4 s, then dead-lettered) and hand-written outbox rows that are not valid
# CloudEvents (dead-lettered at once) go in between.  The checker: the
# poison events and only they are on tasks-dlq, with the reason; nothing
# lost, order kept; other users' events keep flowing during the retries
# (write -> Kafka latency p99 under 1.5 s while each oversize event is held
# for 7 s).
set -euo pipefail
source "$(dirname "$0")/lib/faults.sh"
fl_setup poison

rl_relay relay --maintain-interval-ms 500
rl_wait 20 rl_log_has relay '"became leader"' || fail "no leader"
fl_writers_start 4 5 0.03 0
kafka_wait_count tasks 100 30 >/dev/null || fail "nothing delivered"
bad() {   # bad N JSON: a malformed outbox row, recorded as expected on the DLQ
  q -d "$DB" -c "BEGIN;
    INSERT INTO chk.committed (ekey, user_id, wseq, expect) VALUES ('m:$1', 'poison-bad', 0, 'dlq');
    INSERT INTO taskevents.outbox (slot, topic, partition_key, data)
      VALUES (taskevents._current_slot(), 'tasks', 'poison-bad', '$2');
    COMMIT;" >/dev/null
}
q -d "$DB" -c "INSERT INTO tasks (user_id, title, description) VALUES ('poison-big', 'huge 1', repeat('x', 1100000))"
bad 1 '{"specversion": "0.3", "id": "m1", "source": "s", "type": "t", "data": {"chk_key": "m:1"}}'
bad 2 '{"specversion": "1.0", "id": 42, "source": "s", "type": "t", "data": {"chk_key": "m:2"}}'
q -d "$DB" -c "INSERT INTO tasks (user_id, title, description) VALUES ('poison-big', 'huge 2', repeat('y', 1200000))"
bad 3 '{"specversion": "1.0", "source": "s", "type": "t", "data": {"chk_key": "m:3"}}'
bad 4 '{"specversion": "1.0", "id": "m4", "source": "s", "type": "t", "time": 5, "data": {"chk_key": "m:4"}}'
kafka_wait_count tasks-dlq 6 40 >/dev/null || fail "6 dead letters expected, got $(kafka_topic_count tasks-dlq)"
rl_wait 20 fl_has_committed $(( $(fl_committed) + 200 )) || fail "writers stalled"
fl_writers_stop
fl_check "poison" 60
[ "$(fl_report expected_dlq)" -eq 6 ] && [ "$FL_DLQ" -eq 6 ] || fail "6 dead letters expected, got $FL_DLQ"
jq -e '[.dead_letters[] | select(.key | startswith("m:")) | .reason | startswith("invalid cloudevent")] | length == 4 and all' \
  "$WORK/check.json" >/dev/null || fail "malformed rows: wrong reasons: $(jq -c '.dead_letter_reasons' "$WORK/check.json")"
jq -e '[.dead_letters[] | select(.key | startswith("w:")) | .reason == "MSG_SIZE_TOO_LARGE" and .attempts == "4"] | length == 2 and all' \
  "$WORK/check.json" >/dev/null || fail "oversize: wrong reasons: $(jq -c '.dead_letter_reasons' "$WORK/check.json")"
p99=$(fl_report latency_ms.p99)
[ "$p99" -lt 1500 ] || fail "other users slowed down: write -> Kafka p99 ${p99} ms"
pass "6 poison events dead-lettered ($(jq -c .dead_letter_reasons "$WORK/check.json")), others p99 ${p99} ms: $FL_SUMMARY"
