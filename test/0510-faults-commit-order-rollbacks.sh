#!/usr/bin/env bash
# Fault matrix 1 and 2: out-of-order commits, rollbacks and savepoints under
# concurrent load.  Three transactions take their outbox positions first and
# are held open while four writers commit (with savepoint rollbacks and
# whole-transaction rollbacks mixed in) and the relay delivers their events;
# the outbox partitions rotate every 2 s meanwhile.  Then one held
# transaction commits, one rolls back to a savepoint and commits, one rolls
# back.  The checker: every committed event delivered (the held ones too),
# nothing rolled back ever published, per-user and per-task order kept.
set -euo pipefail
source "$(dirname "$0")/lib/faults.sh"
fl_setup commitorder

rl_relay relay --maintain-interval-ms 500
rl_wait 20 rl_log_has relay '"became leader"' || fail "no leader"

fl_session h1; H1=$FL_FD
echo "BEGIN; INSERT INTO tasks (user_id, title) VALUES ('held-1', 'first position'), ('held-1', 'second');
      SELECT 'held ' || currval('taskevents.outbox_id_seq');" >&$H1
fl_session h2; H2=$FL_FD
echo "BEGIN; INSERT INTO tasks (user_id, title) VALUES ('held-2', 'kept');
      SAVEPOINT s; INSERT INTO tasks (user_id, title) VALUES ('held-2', 'rolled back to savepoint');
      SELECT 'held';" >&$H2
fl_session h3; H3=$FL_FD
echo "BEGIN; INSERT INTO tasks (user_id, title) VALUES ('held-3', 'rolled back'); SELECT 'held';" >&$H3
for s in h1 h2 h3; do rl_wait 10 fl_out_has $s '^held' || fail "$s did not start"; done
held_id=$(sed -n 's/^held \([0-9]*\)$/\1/p' "$WORK/h1.out")

fl_writers_start 4 5 0.01 1
# later transactions commit and are relayed while the first ones stay open
kafka_wait_count tasks 500 60 >/dev/null || fail "writers' events not delivered while the others were held"
before=$(kafka_topic_count tasks)
last_id=$(q -d "$DB" -c "SELECT last_value FROM taskevents.outbox_id_seq")
truncs=$(grep -c '"maintenance","operation":"rotate_outbox"' "$WORK/relay.log" || true)
echo "ROLLBACK TO SAVEPOINT s; INSERT INTO tasks (user_id, title) VALUES ('held-2', 'after savepoint'); COMMIT;" >&$H2
echo "ROLLBACK;" >&$H3
echo "COMMIT;" >&$H1
fl_session_end h1 $H1; fl_session_end h2 $H2; fl_session_end h3 $H3
q -d "$DB" -c "INSERT INTO tasks (user_id, title) VALUES ('held-1', 'after commit')"
rl_wait 30 fl_has_committed $(( $(fl_committed) + 300 )) || fail "writers stalled"
fl_writers_stop
fl_check "commit order"
# the held events themselves, by name
[ "$(q -d "$DB" -c "SELECT count(*) FROM chk.committed WHERE user_id LIKE 'held-%'")" -eq 5 ] \
  || fail "held sessions: 5 committed events expected"
kcat -b "$KAFKA_BROKER" -C -t tasks -o beginning -e -q -f '%k %s\n' | grep '^held-' >"$WORK/held.txt" || true
[ "$(grep -c '^held-1 ' "$WORK/held.txt")" -ge 3 ] || fail "held-1's events missing: $(cut -c1-200 "$WORK/held.txt")"
grep -q '"title": *"rolled back' "$WORK/held.txt" && fail "a rolled-back write was published"
[ "$(grep -c '^held-2 ' "$WORK/held.txt")" -ge 2 ] || fail "held-2's events missing"
[ "$held_id" -lt "$last_id" ] || fail "the held transaction did not take its position first"
pass "held first-position commit (outbox id $held_id, committed after ids up to $last_id and $before messages were out, $truncs truncations): $FL_SUMMARY"
