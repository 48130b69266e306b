#!/usr/bin/env bash
# Back-to-back commits from two writers while the relay polls: every event
# must be delivered exactly once.  (Regression test for relay_tick(): a
# transaction running at a tick with an xid >= the snapshot's xmax, which
# is the latest *completed* xid + 1, must not be skipped; see "Batches
# by snapshot" in the README.)  Runs on the mock cluster: no broker needed.
set -euo pipefail
source "$(dirname "$0")/lib/relay.sh"
rl_setup concurrent nokafka

rl_relay relay --dev-mock-kafka
rl_wait 10 rl_log_has relay '"became leader"' || fail "no leader"
w() { q -d "$DB" -c "DO \$\$ BEGIN FOR i IN 1..2000 LOOP
  INSERT INTO public.tasks (user_id, title) VALUES ('user' || (i % 5), 'task ' || i);
  IF i % $1 = 0 THEN COMMIT; END IF; END LOOP; END \$\$"; }
w 10 & W1=$!
w 7
wait "$W1"
total=$(q -d "$DB" -c "SELECT count(*) FROM taskevents.outbox_events")
published() { grep -o '"published":[0-9]*' "$WORK/relay.log" | cut -d: -f2; }
rl_wait 20 rl_none_pending || fail "events still pending"
sleep 1
kill -TERM "$RL_PID"; wait "$RL_PID" || fail "exit status"
[ "$(published)" = "$total" ] || fail "published $(published) of $total events: the batching skipped some"
pass "two writers committing back to back: $total of $total events delivered"
