#!/usr/bin/env bash
# How the leader learns of new commits (relay/wake.c).
#  - latch (the library preloaded, as scripts/test runs the server): an idle
#    leader waits in CALL relay_wait() and does not tick: over an idle
#    window it calls relay_tick() a handful of times, not once per
#    --poll-interval-ms, and runs the maintenance list at its idle periods;
#    a commit that writes an event wakes it and the event
#    is delivered; the log and /metrics say "latch".
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
delivered() { [ "$(kafka_topic_count tasks)" -ge "$1" ]; }

if [ "$(q -d "$DB" -c "SELECT taskevents.relay_wakeup_mode()")" = latch ]; then
  rl_relay latch --dev-mock-kafka --metrics-addr "127.0.0.1:$metrics_port"
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
    q -d "$DB" -c "INSERT INTO tasks (user_id, title) VALUES ('wake', 'after idle $i')"
    rl_wait 10 delivered "$i" || fail "event $i after an idle period not delivered"
  done
  wakeups=$(metric taskevents_relay_wakeups_total)
  [ "${wakeups:-0}" -ge 3 ] || fail "relay_wait() answered ${wakeups:-0} times for 3 commits"
  kill -TERM "$RL_PID"; wait "$RL_PID" || fail "exit status"
  pass "latch: $idle_calls calls on the main connection and $idle_maint maintenance runs in 3 idle seconds; each of 3 commits woke the leader ($wakeups answers) and was delivered"
else
  echo "skip: latch part (pg_taskevents is not in this server's shared_preload_libraries)"
fi

# poll: the role may not call relay_wait() (a new mock cluster: counts
# start at 0; the consumer's position is past the events above)
rl_relay poll --dev-mock-kafka --db "dbname=$DB user=wake_poller" --metrics-addr "127.0.0.1:$metrics_port"
rl_wait 10 rl_log_has poll '"became leader"' || fail "no leader (poll)"
KAFKA_BROKER=$(grep -m1 '"bootstrap_servers"' "$WORK/poll.log" | jq -r .bootstrap_servers)
q -d "$DB" -c "INSERT INTO tasks (user_id, title) SELECT 'poll', 'task ' || g FROM generate_series(1, 5) g"
rl_wait 10 delivered 5 || fail "poll mode: events not delivered"
rl_wait 10 rl_log_has poll '"wakeup mode","mode":"poll"' || fail "the relay did not say it polls"
[ "$(metric taskevents_relay_wakeup_mode)" = 2 ] || fail "/metrics does not say poll"
q -d "$DB" -c "INSERT INTO tasks (user_id, title) VALUES ('poll', 'later')"
rl_wait 10 delivered 6 || fail "poll mode: a later event not delivered"
kill -TERM "$RL_PID"; wait "$RL_PID" || fail "exit status (poll)"
q -d "$DB" -c "DROP OWNED BY wake_poller" -c "DROP ROLE wake_poller" >/dev/null
pass "poll: a role without relay_wait() polls, says so in the log and /metrics, and delivers every event"
