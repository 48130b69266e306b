#!/usr/bin/env bash
# PostgreSQL goes away under the relay: first its backend is terminated,
# then (when the test may) the whole server restarts.  The relay reconnects
# with backoff, takes its lease again and resumes from the acknowledged
# position; writes made meanwhile are delivered, order kept.
set -euo pipefail
source "$(dirname "$0")/lib/relay.sh"
rl_setup pgrestart

port=$((KAFKA_PORT + 390))
rl_relay relay --metrics-addr 127.0.0.1:$port --log-level debug
rl_write 100 5
rl_wait 20 rl_all_delivered tasks || fail "first events not delivered"
q -d "$DB" -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'taskevents-relay' AND datname = '$DB'" >/dev/null
rl_write 100 5
rl_wait 10 rl_log_has relay '"database connection lost"' || fail "connection loss not noticed"
rl_wait 20 rl_all_delivered tasks || fail "events after the reconnect not delivered"
rl_verify tasks structured 1
pass "backend terminated: reconnected, $RL_VERIFIED events, $RL_DUPLICATES re-sent"

datadir=${PGHOST:-}/data
if [ -f "$datadir/postmaster.pid" ]; then
  as_pg_user "$PG_BINDIR/pg_ctl" -D "$datadir" -m fast -w stop >/dev/null
  sleep 1
  curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/healthz" | grep -qx 503 || fail "/healthz should be 503 without PostgreSQL"
  as_pg_user "$PG_BINDIR/pg_ctl" -D "$datadir" -l "$datadir/../server.log" -w start >/dev/null
  rl_write 100 5
  rl_wait 30 rl_all_delivered tasks || fail "events after the server restart not delivered"
  rl_verify tasks structured 1
  curl -sf "http://127.0.0.1:$port/healthz" >/dev/null || fail "/healthz not ok after the restart"
  pass "server restarted: reconnected, $RL_VERIFIED events, $RL_DUPLICATES re-sent"
fi
kill -TERM "$RL_PID"; wait "$RL_PID" || fail "exit status"
