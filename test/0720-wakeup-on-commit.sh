#!/usr/bin/env bash
# Wake on commit (extension/wakeup.c).  With pg_taskevents in
# shared_preload_libraries: relay_wakeup_mode() says latch; a waiting
# CALL relay_wait() returns when a transaction that wrote an event commits
# (not at its timeout, and not for a rollback or a commit that wrote no
# event), returns at once when the counter it was given is stale, and holds
# no snapshot while it waits (backend_xmin NULL: it does not hold back
# vacuum).  Without the preload: mode poll, relay_wait() returns NULL at
# once.  Its own server (it needs the preload), no broker.
set -euo pipefail
source "$(dirname "$0")/lib/pg.sh"
export PGTE_PGPORT=$((PGTE_PGPORT + 11))
export PGTE_PGSTATE=${TMPDIR:-/tmp}/pgte-pg-$PGTE_PGPORT
work=$(mktemp -d)
cleanup() { local st=$?; pg_stop; rm -rf "$work"; exit $st; }
trap cleanup EXIT

ms() { echo $(( $(date +%s%N) / 1000000 )); }

PGTE_PGCONF="shared_preload_libraries = 'pg_taskevents'" pg_start
fresh_db wake
q -d wake >/dev/null <<'SQL'
CREATE TABLE t (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, user_id text NOT NULL,
                completed boolean NOT NULL DEFAULT false);
SELECT taskevents.attach('t', due_date_column => NULL, is_recurring_column => NULL,
                         recurring_interval_column => NULL);
CREATE TABLE plain (i int);
SQL
[ "$(q -d wake -c "SELECT taskevents.relay_wakeup_mode()")" = latch ] || fail "not in latch mode with the preload"
c=$(q -d wake -c "CALL taskevents.relay_wait(0, NULL)")
[ -n "$c" ] || fail "no counter in latch mode"

# a stale counter returns at once
t0=$(ms); q -d wake -c "CALL taskevents.relay_wait(5000, $((c + 7)))" >/dev/null
[ $(( $(ms) - t0 )) -lt 2000 ] || fail "a stale counter did not return at once"

# woken by the commit of a transaction that wrote an event, not before:
# a rollback and a commit without events first, then the event
q -d wake -c "CALL taskevents.relay_wait(20000, $c)" >"$work/woken" &
waiter=$!
rl_pid() { q -d wake -c "SELECT pid FROM pg_stat_activity WHERE query LIKE 'CALL taskevents.relay_wait(20000%' AND state = 'active'"; }
for _ in $(seq 1 100); do [ -n "$(rl_pid)" ] && break; sleep 0.05; done
[ -n "$(rl_pid)" ] || fail "the waiting CALL is not running"
[ "$(q -d wake -c "SELECT backend_xmin IS NULL AND backend_xid IS NULL FROM pg_stat_activity WHERE pid = $(rl_pid)")" = t ] \
  || fail "the waiting backend holds a snapshot or a transaction id"
q -d wake -c "BEGIN" -c "INSERT INTO t (user_id) VALUES ('rolled back')" -c "ROLLBACK" >/dev/null
q -d wake -c "INSERT INTO plain VALUES (1)" >/dev/null
sleep 0.3   # the waiter must still be waiting after these two
kill -0 "$waiter" 2>/dev/null || fail "woken by a rollback or a commit without events"
t0=$(ms)
q -d wake -c "INSERT INTO t (user_id) VALUES ('a')" >/dev/null
wait "$waiter" || fail "relay_wait failed"
woke=$(( $(ms) - t0 ))
[ "$(cat "$work/woken")" = $((c + 1)) ] || fail "counter after one commit: $(cat "$work/woken"), expected $((c + 1))"
[ $woke -lt 2000 ] || fail "woken ${woke} ms after the commit"
pass "latch mode: woken ${woke} ms after a commit that wrote an event; not by a rollback or a commit without events; no snapshot held while waiting"

# inside a transaction block it refuses, instead of waiting with a snapshot
st=$(printf 'BEGIN;\nCALL taskevents.relay_wait(100, %s);\n\\echo state=:LAST_ERROR_SQLSTATE\n' "$((c + 1))" \
     | psql -X -q -At -d wake 2>/dev/null | sed -n 's/^state=//p')
[ "$st" = 25000 ] || fail "relay_wait in a transaction block gave $st, 25000 expected"

# without the preload: poll mode
pg_stop
pg_start
fresh_db wake
[ "$(q -d wake -c "SELECT taskevents.relay_wakeup_mode()")" = poll ] || fail "not in poll mode without the preload"
t0=$(ms)
[ "$(q -d wake -c "CALL taskevents.relay_wait(5000, 3)")" = "" ] || fail "relay_wait returned a counter in poll mode"
[ $(( $(ms) - t0 )) -lt 2000 ] || fail "relay_wait waited in poll mode"
pass "poll mode without the preload: relay_wait returns NULL at once"
