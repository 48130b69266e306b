#!/usr/bin/env bash
# The leader runs the maintenance list, which has the reminders' operation
# (fire_reminders, every second): a task due within the reminder lead time
# gets its reminder.triggered event on the reminders topic within about a
# second, and the relay logs what the operation did.  A reminder that fails
# (here a trigger of the application's refuses the update that marks it
# sent) is a warning in the relay's log and a count in /metrics.  A burst
# of due reminders is fired batch after batch, not a batch per period.
set -euo pipefail
source "$(dirname "$0")/lib/relay.sh"
rl_setup reminders nokafka

# below the ephemeral port range (32768-60999): a client socket took
# PGTE_PGPORT + 1310 once ("address in use")
metrics=127.0.0.1:$((KAFKA_PORT + 360))
rl_relay relay --dev-mock-kafka --metrics-addr "$metrics"
rl_wait 10 rl_log_has relay '"maintenance list".*"operation":"fire_reminders"' || fail "fire_reminders not in the relay's maintenance list"
rl_wait 10 rl_log_has relay '"became leader"' || fail "no leader"
KAFKA_BROKER=$(grep -m1 '"bootstrap_servers"' "$WORK/relay.log" | jq -r .bootstrap_servers)
t0=$(date +%s%N)
q -d "$DB" -c "INSERT INTO tasks (user_id, title, due_date) VALUES ('alice', 'soon', now() + interval '1 hour')"
triggered() { kafka_records reminders | jq -e -s 'any(.[]; (.payload | fromjson | .type) == "reminder.triggered" and .key == "alice")' >/dev/null; }
rl_wait 10 triggered || fail "no reminder.triggered on the reminders topic"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
rl_log_has relay '"maintenance","operation":"fire_reminders","done":1' || fail "no log line for the fired reminder"
pass "reminder fired by the relay's maintenance list and delivered within ${ms} ms (includes the consumer's polling)"

q -d "$DB" -c "CREATE FUNCTION refuse_reminder() RETURNS trigger LANGUAGE plpgsql AS
                 \$\$ BEGIN IF NEW.title = 'refused' THEN RAISE EXCEPTION 'not this one'; END IF; RETURN NEW; END \$\$" \
  -c "CREATE TRIGGER refuse_reminder BEFORE UPDATE ON tasks FOR EACH ROW EXECUTE FUNCTION refuse_reminder()" \
  -c "INSERT INTO tasks (user_id, title, due_date) VALUES ('bob', 'refused', now() + interval '1 hour')" >/dev/null
rl_wait 10 rl_log_has relay '"level":"warn","msg":"maintenance operation reported failures","operation":"fire_reminders","done":0,"failed":1' \
  || fail "no warning for the failed reminder"
failed=$(rl_metric "$metrics" 'taskevents_relay_maintenance_failed_total{operation="fire_reminders"}')
[ "$failed" = 1 ] || fail "/metrics counts ${failed:-no} failed reminders, not 1"
[ "$(q -d "$DB" -c "SELECT state FROM taskevents.reminders r JOIN tasks t ON t.id::text = r.task_id WHERE t.title = 'refused'")" = failed ] \
  || fail "the reminder is not marked failed"

# a burst: 2,500 reminders due at once are fired a batch (1,000) after the
# other, each run right after the one before (an operation that did
# something runs again at once), not one batch per period (1 s)
q -d "$DB" -c "INSERT INTO tasks (user_id, title, due_date)
               SELECT 'burst', 'burst ' || g, now() + interval '1 hour' FROM generate_series(1, 2500) g" >/dev/null
burst_fired() { [ "$(grep -c '"operation":"fire_reminders","done":\(1000\|500\),' "$WORK/relay.log")" -ge 3 ]; }
rl_wait 30 burst_fired || fail "the burst was not fired in batches of 1000, 1000, 500"
grep '"msg":"maintenance","operation":"fire_reminders","done":\(1000\|500\),' "$WORK/relay.log" | tail -3 \
  | jq -r .ts >"$WORK/burst-ts"
gap=$(python3 -c 'import sys, datetime as d
t = [d.datetime.fromisoformat(l.strip().replace("Z", "+00:00")) for l in open(sys.argv[1])]
print(int((t[-1] - t[0]).total_seconds() * 1000))' "$WORK/burst-ts")
[ "$gap" -lt 1000 ] || fail "the burst's three batches took $gap ms: one per period, not one after the other"
kill -TERM "$RL_PID"; wait "$RL_PID" || fail "exit status"
pass "a reminder that failed: a warning line, taskevents_relay_maintenance_failed_total{operation=\"fire_reminders\"} 1, marked failed; a burst of 2,500 fired in 3 batches within ${gap} ms"
