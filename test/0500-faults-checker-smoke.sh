#!/usr/bin/env bash
# The history checker itself: a clean run under four concurrent writers
# passes; then it must catch what it exists to catch.  A committed event
# that never reached Kafka (a chk.committed row with no message) is "lost",
# a message for a write that never committed is "phantom", and a user's
# events produced out of commit order are an order violation.  The checker
# exits non-zero on each.
set -euo pipefail
source "$(dirname "$0")/lib/faults.sh"
fl_setup smoke

rl_relay relay
rl_wait 20 rl_log_has relay '"became leader"' || fail "no leader"
fl_writers_start 4 5 0.01 1
rl_wait 30 fl_has_committed 600 || fail "writers too slow: $(fl_committed) events"
fl_writers_stop
fl_check "clean run"
pass "clean run: $FL_SUMMARY"

# lost: a committed event the relay never saw
q -d "$DB" -c "INSERT INTO chk.committed (ekey, user_id, wseq) VALUES ('w:999999999', 'nobody', 999999999)"
python3 "$FL_CHECKER" --db "$DB" --brokers "$KAFKA_BROKER" >"$WORK/c1.out" 2>&1 && fail "checker missed a lost event"
grep -q 'lost 1,' "$WORK/c1.out" || fail "lost not reported: $(cat "$WORK/c1.out")"
q -d "$DB" -c "DELETE FROM chk.committed WHERE ekey = 'w:999999999'"

# phantom and order: produce by hand a message for an uncommitted write, and
# one user's two events in reverse order, straight to the topic
u=$(q -d "$DB" -c "SELECT user_id FROM chk.committed WHERE ekey LIKE 'w:%' GROUP BY user_id ORDER BY user_id LIMIT 1")
mk() { printf '{"specversion":"1.0","id":"%s","source":"s","type":"task.updated","partitionkey":"%s","data":{"wseq":%s,"user_id":"%s"}}' "$1" "$u" "$2" "$u"; }
q -d "$DB" -c "INSERT INTO chk.committed (ekey, user_id, task_id, wseq, pid, txid) VALUES
  ('w:900000001', '$u', 't1', 900000001, 1, '1'), ('w:900000002', '$u', 't1', 900000002, 1, '2')"
{ mk phantom-1 800000001; echo; mk order-2 900000002; echo; mk order-1 900000001; echo; } \
  | kcat -b "$KAFKA_BROKER" -P -t tasks -k "$u" -H 'content-type=application/cloudevents+json; charset=UTF-8' 2>/dev/null
python3 "$FL_CHECKER" --db "$DB" --brokers "$KAFKA_BROKER" >"$WORK/c2.out" 2>&1 && fail "checker missed phantom and reorder"
grep -q 'order violations 2,' "$WORK/c2.out" || fail "reorder not reported: $(cat "$WORK/c2.out")"
grep -q 'phantom 1,' "$WORK/c2.out" || fail "phantom not reported: $(cat "$WORK/c2.out")"
pass "checker catches a lost event, a phantom and a reordered pair"
