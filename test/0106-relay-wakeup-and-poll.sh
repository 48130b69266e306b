#!/usr/bin/env bash
# How the leader learns of new commits (relay/wake.c).
#  - latch (the library preloaded, as scripts/test runs the server): an idle
#    leader waits in CALL relay_wait() and does not tick: over an idle
#    window it calls relay_tick() a handful of times, not once per
#    --poll-interval-ms, and runs the maintenance list at its idle periods;
#    a commit that writes an event wakes it and the event
#    is delivered; the log and /metrics say "latch".  Each such commit costs
#    the main connection at most 3 statements: the tick with the batch's
#    first page (one statement, not a tick and then a fetch), the tick that
#    finds nothing before the next wait, and the acknowledgement.
#  - poll (a relay role that may not call relay_wait()): the relay says so
#    and polls relay_tick(), and still delivers every event.
# Without the preload the first part is skipped (test/0720 covers the
# extension's side of both modes).
set -euo pipefail
source "$(dirname "$0")/lib/relay.sh"
rl_setup wake nokafka

q -d "$DB" -c "DROP ROLE IF EXISTS wake_poller" -c "CREATE ROLE wake_poller LOGIN" \
  -c "SELECT taskevents.grant_relay('wake_poller')" \
  -c "REVOKE EXECUTE ON PROCEDURE taskevents.relay_wait(integer, bigint) FROM wake_poller" >/dev/null
# below the ephemeral port range (32768-60999), like the other fixed test ports
metrics_port=$((KAFKA_PORT + 350))

# statements the relay ran on its main connection (lease, tick, fetch, ...)
metric() { rl_metric "127.0.0.1:$metrics_port" "$1"; }
calls() { metric taskevents_relay_db_calls_total; }
# maintenance operations run so far (side connection)
maint_runs() { curl -sf "http://127.0.0.1:$metrics_port/metrics" | awk '$1 ~ /^taskevents_relay_maintenance_runs_total/ { n += $2 } END { print n + 0 }'; }
# the leader's CALL relay_wait() is outstanding (its backend waits in it)
waiting() { [ "$(q -d "$DB" -c "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'CALL taskevents.relay_wait%' AND state = 'active'")" = 1 ]; }

if [ "$(q -d "$DB" -c "SELECT taskevents.relay_wakeup_mode()")" = latch ]; then
  # a long lease: no renewal within the counts below (one every 20 s)
  rl_relay latch --dev-mock-kafka --metrics-addr "127.0.0.1:$metrics_port" --lease-ttl-ms 60000
  rl_wait 10 rl_log_has latch '"became leader"' || fail "no leader"
  rl_wait 10 rl_log_has latch '"wakeup mode","mode":"latch"' || fail "the relay did not take the latch mode"
  KAFKA_BROKER=$(grep -m1 '"bootstrap_servers"' "$WORK/latch.log" | jq -r .bootstrap_servers)
  [ "$(metric taskevents_relay_wakeup_mode)" = 1 ] || fail "/metrics does not say latch"
  # idle: a window of 3 s costs the main connection the lease renewals
  # (every --lease-ttl-ms / 3) and little else, not a tick every
  # --poll-interval-ms (5 ms: about 600)
  rl_wait 10 rl_log_has latch '"maintenance list"' || fail "no maintenance list"
  t0=$(calls); m0=$(maint_runs)
  sleep 3   # the idle window measured (a count over a window, not a wait for a condition)
  idle_calls=$(( $(calls) - t0 )); idle_maint=$(( $(maint_runs) - m0 ))
  [ "$idle_calls" -le 6 ] || fail "an idle leader made $idle_calls calls in 3 s"
  # nothing written, no reminder scheduled: fire_reminders (every 1 s while
  # events flow) is stretched to 10 s, the rotations to 50 s
  [ "$idle_maint" -le 1 ] || fail "an idle leader ran $idle_maint maintenance operations in 3 s"
  for i in 1 2 3; do
    c0=$(calls)
    q -d "$DB" -c "INSERT INTO tasks (user_id, title) VALUES ('wake', 'after idle $i')"
    rl_wait 10 rl_delivered tasks "$i" || fail "event $i after an idle period not delivered"
    # acknowledged (at most 100 ms after the delivery), then quiet again
    rl_wait 10 rl_none_pending || fail "event $i not acknowledged"
    rl_wait 10 waiting || fail "the leader did not wait again after event $i"
    per_commit=$(( $(calls) - c0 ))
    [ "$per_commit" -le 3 ] || fail "a commit after idle cost $per_commit statements on the main connection (tick with first page, empty tick, ack: 3)"
  done
  # acknowledged at most every 100 ms, also when nothing is left in flight:
  # 30 commits 10 ms apart (pg_sleep shapes the load; nothing waits on it),
  # each delivered before the next, cost a handful of relay_ack() writes,
  # not one each
  a0=$(q -d "$DB" -c "SELECT coalesce(max(ack_id), 0) FROM taskevents.relay_acks")
  burst=()
  for i in $(seq 1 30); do
    burst+=(-c "INSERT INTO tasks (user_id, title) VALUES ('wake', 'burst $i')" -c "SELECT pg_catalog.pg_sleep(0.01)")
  done
  q -d "$DB" "${burst[@]}" >/dev/null
  rl_wait 10 rl_delivered tasks 33 || fail "the 30 events of the burst were not delivered"
  rl_wait 10 rl_none_pending || fail "the burst was not acknowledged"
  acks=$(( $(q -d "$DB" -c "SELECT max(ack_id) FROM taskevents.relay_acks") - a0 ))
  [ "$acks" -le 8 ] || fail "30 commits 10 ms apart cost $acks acknowledgements"
  wakeups=$(metric taskevents_relay_wakeups_total)
  [ "${wakeups:-0}" -ge 3 ] || fail "relay_wait() answered ${wakeups:-0} times for 3 commits"
  kill -TERM "$RL_PID"; wait "$RL_PID" || fail "exit status"
  pass "latch: $idle_calls calls on the main connection and $idle_maint maintenance runs in 3 idle seconds; each of 3 commits woke the leader ($wakeups answers), was delivered and cost at most 3 statements; 30 commits in 0.3 s cost $acks acknowledgements"
else
  echo "skip: latch part (pg_taskevents is not in this server's shared_preload_libraries)"
fi

# poll: the role may not call relay_wait() (a new mock cluster: counts
# start at 0; the consumer's position is past the events above)
rl_relay poll --dev-mock-kafka --db "dbname=$DB user=wake_poller" --metrics-addr "127.0.0.1:$metrics_port"
rl_wait 10 rl_log_has poll '"became leader"' || fail "no leader (poll)"
KAFKA_BROKER=$(grep -m1 '"bootstrap_servers"' "$WORK/poll.log" | jq -r .bootstrap_servers)
q -d "$DB" -c "INSERT INTO tasks (user_id, title) SELECT 'poll', 'task ' || g FROM generate_series(1, 5) g"
rl_wait 10 rl_delivered tasks 5 || fail "poll mode: events not delivered"
rl_wait 10 rl_log_has poll '"wakeup mode","mode":"poll"' || fail "the relay did not say it polls"
[ "$(metric taskevents_relay_wakeup_mode)" = 2 ] || fail "/metrics does not say poll"
q -d "$DB" -c "INSERT INTO tasks (user_id, title) VALUES ('poll', 'later')"
rl_wait 10 rl_delivered tasks 6 || fail "poll mode: a later event not delivered"
kill -TERM "$RL_PID"; wait "$RL_PID" || fail "exit status (poll)"
q -d "$DB" -c "DROP OWNED BY wake_poller" -c "DROP ROLE wake_poller" >/dev/null
pass "poll: a role without relay_wait() polls, says so in the log and /metrics, and delivers every event"
