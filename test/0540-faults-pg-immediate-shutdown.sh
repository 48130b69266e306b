#!/usr/bin/env bash
# Fault matrix 6: PostgreSQL is shut down with `pg_ctl -m immediate` (a
# crash: no checkpoint, in-doubt commits) in the middle of a drain, twice,
# while four writers commit; then started again.  Whatever a writer had
# committed survives in chk.committed (written in the same transaction), so
# the checker knows exactly what must arrive: nothing lost, order kept.
set -euo pipefail
source "$(dirname "$0")/lib/faults.sh"
fl_setup pgcrash

datadir=${PGHOST:-}/data
[ -f "$datadir/postmaster.pid" ] || { pass "skipped: the server is not ours to crash"; exit 0; }
q -d "$DB" -c "INSERT INTO tasks (user_id, title) SELECT 'bulk-' || (g % 20), 't' || g FROM generate_series(1, 20000) g"
rl_relay relay --batch-size 200 --maintain-interval-ms 500
fl_writers_start 4 5 0.03 1
crash() {   # crash N MIN_MESSAGES
  kafka_wait_count tasks "$2" 60 >/dev/null || fail "crash $1: drain did not reach $2 messages"
  as_pg_user "$PG_BINDIR/pg_ctl" -D "$datadir" -m immediate -w stop >/dev/null || fail "immediate stop"
  rl_wait 10 rl_log_has_n relay '"database connection lost"' "$1" || fail "crash $1: the relay did not notice"
  as_pg_user "$PG_BINDIR/pg_ctl" -D "$datadir" -l "$datadir/../server.log" -w -t 60 start >/dev/null || fail "restart"
  rl_wait 30 rl_log_has_n relay '"became leader"' $(( $1 + 1 )) || fail "crash $1: the relay did not lead again"
}
rl_log_has_n() { [ "$(grep -c "$2" "$WORK/$1.log")" -ge "$3" ]; }
crash 1 3000
crash 2 $(( $(kafka_topic_count tasks) + 3000 ))
rl_wait 30 fl_has_committed $(( $(fl_committed) + 300 )) || fail "writers did not resume after the restart"
fl_writers_stop
fl_check "pg immediate shutdown" 90
recovery=$(grep -c "database system was interrupted\|redo done" "$datadir/../server.log" || true)
pass "2 immediate shutdowns mid-drain (server log: $recovery recovery lines): $FL_SUMMARY"
