#!/usr/bin/env bash
# The relay's statements cannot be redirected through the relay role's
# search_path.  The role's path is set (ALTER ROLE ... SET search_path =
# evil, pg_catalog) to a schema whose objects shadow what the relay's SQL
# uses: an operator / (float8, int4), a domain named float8, operators =
# (name, name), - (timestamptz, timestamptz) and >= (xid8, xid8),
# make_interval(), to_timestamp() and format(text, text) (the last two of
# them what rotate_outbox's check of a partition would meet).  Each of them records a row in evil.hits and raises a
# NOTICE when it runs.  First, as a control, the role's own session shows
# that the trap is live (an unqualified "$4::double precision / 1000" runs
# evil./).  Then the relay works as that role through every statement it
# has (lease, position, tick, fetch, ack, a dead letter, maintain, the
# backlog sample, the reminders probe, release) and delivers; evil.hits
# must stay empty and no NOTICE of it may reach the relay's log, also with
# "-c search_path=evil,pg_catalog" in the conninfo's options.  Other
# options of the conninfo, or of PGOPTIONS, still apply (a read-only
# default makes the relay's first write fail).
set -euo pipefail
source "$(dirname "$0")/lib/relay.sh"
rl_setup pinned_path

role=relay_t0185
q -d postgres -c "DROP ROLE IF EXISTS $role" >/dev/null 2>&1 || true
trap 'st=$?; set +e; for p in "${RL_PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  dropdb --force --if-exists "$DB" >/dev/null 2>&1; q -d postgres -c "DROP ROLE IF EXISTS '$role'" >/dev/null 2>&1
  (exit $st); rl_cleanup' EXIT
q -d "$DB" >/dev/null <<SQL
CREATE ROLE $role LOGIN;
SELECT taskevents.grant_relay('$role');
CREATE SCHEMA evil;
CREATE TABLE evil.hits (what text NOT NULL, at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp());
GRANT USAGE ON SCHEMA evil TO PUBLIC;
GRANT INSERT ON evil.hits TO PUBLIC;
CREATE FUNCTION evil.hit(what text) RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog AS \$\$
BEGIN
  INSERT INTO evil.hits (what) VALUES (what);
  RAISE NOTICE 'evil object ran: %', what;
  RETURN true;
END \$\$;
CREATE FUNCTION evil.div(a pg_catalog.float8, b pg_catalog.int4) RETURNS pg_catalog.float8
  LANGUAGE sql SET search_path = pg_catalog AS \$\$ SELECT CASE WHEN evil.hit('operator /(float8, int4)') THEN a / b END \$\$;
CREATE OPERATOR evil./ (FUNCTION = evil.div, LEFTARG = pg_catalog.float8, RIGHTARG = pg_catalog.int4);
CREATE DOMAIN evil.float8 AS pg_catalog.float8 CHECK (evil.hit('domain float8'));
CREATE FUNCTION evil.name_eq(a pg_catalog.name, b pg_catalog.name) RETURNS boolean
  LANGUAGE sql SET search_path = pg_catalog AS \$\$ SELECT evil.hit('operator =(name, name)') AND a = b \$\$;
CREATE OPERATOR evil.= (FUNCTION = evil.name_eq, LEFTARG = pg_catalog.name, RIGHTARG = pg_catalog.name);
CREATE FUNCTION evil.ts_minus(a timestamptz, b timestamptz) RETURNS interval
  LANGUAGE sql SET search_path = pg_catalog AS \$\$ SELECT CASE WHEN evil.hit('operator -(timestamptz, timestamptz)') THEN a - b END \$\$;
CREATE OPERATOR evil.- (FUNCTION = evil.ts_minus, LEFTARG = timestamptz, RIGHTARG = timestamptz);
CREATE FUNCTION evil.to_timestamp(pg_catalog.float8) RETURNS timestamptz
  LANGUAGE sql SET search_path = pg_catalog AS \$\$ SELECT CASE WHEN evil.hit('to_timestamp(float8)') THEN pg_catalog.to_timestamp(\$1) END \$\$;
-- the rotation's check of a partition (txid >= xmin, built with format())
CREATE FUNCTION evil.xid8_ge(a pg_catalog.xid8, b pg_catalog.xid8) RETURNS boolean
  LANGUAGE sql SET search_path = pg_catalog AS \$\$ SELECT evil.hit('operator >=(xid8, xid8)') AND a OPERATOR(pg_catalog.>=) b \$\$;
CREATE OPERATOR evil.>= (FUNCTION = evil.xid8_ge, LEFTARG = pg_catalog.xid8, RIGHTARG = pg_catalog.xid8);
CREATE FUNCTION evil.format(pg_catalog.text, pg_catalog.text) RETURNS pg_catalog.text
  LANGUAGE sql SET search_path = pg_catalog AS \$\$ SELECT CASE WHEN evil.hit('format(text, text)') THEN pg_catalog.format(\$1, \$2) END \$\$;
-- relay_backlog()'s count of the events of rows a statement shares
CREATE FUNCTION evil.int84mi(a pg_catalog.int8, b pg_catalog.int4) RETURNS pg_catalog.int8
  LANGUAGE sql SET search_path = pg_catalog AS \$\$ SELECT CASE WHEN evil.hit('operator -(int8, int4)') THEN a OPERATOR(pg_catalog.-) b END \$\$;
CREATE OPERATOR evil.- (FUNCTION = evil.int84mi, LEFTARG = pg_catalog.int8, RIGHTARG = pg_catalog.int4);
CREATE FUNCTION evil.generate_series(pg_catalog.int8, pg_catalog.int8) RETURNS SETOF pg_catalog.int8
  LANGUAGE sql SET search_path = pg_catalog AS \$\$ SELECT pg_catalog.generate_series(\$1, \$2) WHERE evil.hit('generate_series(int8, int8)') \$\$;
ALTER ROLE $role SET search_path = evil, pg_catalog;
SQL
ROLE_DB="dbname=$DB user=$role"

# control: in the role's own session the relay's old lease arithmetic runs evil./
psql -X -q -At -d "$ROLE_DB" -c "SELECT pg_catalog.make_interval(secs => 5000::double precision / 1000)" \
  >"$WORK/control.out" 2>&1 || fail "control query: $(cat "$WORK/control.out")"
[ "$(q -d "$DB" -c "SELECT count(*) FROM evil.hits WHERE what = 'operator /(float8, int4)'")" -ge 1 ] \
  || fail "the trap is not live: evil./ did not run in the role's session; the test would prove nothing"
grep -q 'evil object ran' "$WORK/control.out" || fail "control: no NOTICE from the evil object"
psql -X -q -At -d "$ROLE_DB" -c "SELECT '2'::xid8 >= '1'::xid8, format('outbox_%s', '0'::text)" >"$WORK/control2.out" 2>&1 \
  || fail "control query 2: $(cat "$WORK/control2.out")"
[ "$(q -d "$DB" -c "SELECT count(DISTINCT what) FROM evil.hits WHERE what IN ('operator >=(xid8, xid8)', 'format(text, text)')")" = 2 ] \
  || fail "the traps for >= (xid8) and format() are not live in the role's session; the test would prove nothing"
psql -X -q -At -d "$ROLE_DB" -c "SELECT count(*) FROM generate_series(10::bigint - 2, 10::bigint)" >"$WORK/control3.out" 2>&1 \
  || fail "control query 3: $(cat "$WORK/control3.out")"
[ "$(q -d "$DB" -c "SELECT count(DISTINCT what) FROM evil.hits WHERE what IN ('operator -(int8, int4)', 'generate_series(int8, int8)')")" = 2 ] \
  || fail "the traps for - (int8, int4) and generate_series() are not live in the role's session; the test would prove nothing"
q -d "$DB" -c "TRUNCATE evil.hits"

rl_write 40 4
# a row that is no CloudEvent, written by hand (the outbox keeps the text in
# "event" up to 0.1.0, in "data" with the slot function "_current_slot" later),
# into the partition before the current one: once it is dead-lettered,
# rotate_outbox checks that partition's rows and truncates it
col=$(q -d "$DB" -c "SELECT CASE WHEN EXISTS (SELECT FROM pg_attribute WHERE attrelid = 'taskevents.outbox'::regclass
  AND attname = 'event' AND NOT attisdropped) THEN 'event' ELSE 'data' END")
slotfn=$(q -d "$DB" -c "SELECT coalesce(to_regproc('taskevents._current_slot')::text, 'taskevents.current_slot')")
q -d "$DB" -c "INSERT INTO taskevents.outbox (slot, topic, partition_key, $col)
  VALUES (($slotfn() + 2) % 3, 'tasks', 'user1', '{\"specversion\": \"0.3\"}')"
old_slot=$(q -d "$DB" -c "SELECT ($slotfn() + 2) % 3")
old_slot_truncated() { [ "$(q -d "$DB" -c "SELECT count(*) FROM taskevents.outbox WHERE slot = $old_slot")" = 0 ]; }
rl_write 20 4
rl_relay relay --db "$ROLE_DB options='-c search_path=evil,pg_catalog'" \
  --maintain-interval-ms 200 --backlog-interval-ms 200 --reminders-interval-ms 100
rl_wait 20 rl_log_has relay '"became leader"' || fail "no leader"
kafka_wait_count tasks-dlq 1 20 >/dev/null || fail "malformed row not dead-lettered"
rl_wait 20 rl_all_delivered tasks || fail "not delivered"
# let maintain() and the backlog sample run a few times with the work done
rl_wait 10 rl_none_pending || fail "events still pending"
rl_wait 10 old_slot_truncated || fail "rotate_outbox did not truncate the delivered partition $old_slot"
sleep 1
kill -TERM "$RL_PID"; wait "$RL_PID" || fail "relay exit status"
rl_log_has relay '"lease released"' || fail "no release"
rl_verify tasks
[ "$RL_VERIFIED" -eq 60 ] || fail "60 events expected on tasks, got $RL_VERIFIED"
[ "$(q -d "$DB" -c "SELECT count(*) FROM taskevents.dead_letters")" = 1 ] || fail "dead letter not recorded"
# 12 events of one statement (one outbox row) pending: the role's own call
# of relay_backlog() counts them per event, through - and generate_series()
q -d "$DB" -c "INSERT INTO tasks (user_id, title) SELECT 'late', 'late ' || g FROM generate_series(1, 12) g"
[ "$(q -d "$DB" -c "SELECT count(*) FROM taskevents.outbox o WHERE o.earlier <> ''")" -ge 1 ] \
  || fail "the 12 events do not share a row: the backlog's per-event count is not exercised"
backlog=$(psql -X -q -At -d "$ROLE_DB" -c "SELECT pending FROM taskevents.relay_backlog('default')" 2>&1) \
  || fail "relay_backlog() as the relay's role: $backlog"
[ "$backlog" = 12 ] || fail "relay_backlog() as the relay's role: $backlog pending, 12 expected"
hits=$(q -d "$DB" -c "SELECT coalesce(string_agg(DISTINCT what, '; '), '') FROM evil.hits")
[ -z "$hits" ] || fail "the relay's statements ran hostile objects from its role's search_path: $hits"
grep -q 'evil object ran' "$WORK/relay.log" && fail "NOTICE of an evil object in the relay log: $(grep -m1 'evil object ran' "$WORK/relay.log")"
grep -q '"level":"error"' "$WORK/relay.log" && fail "errors: $(grep -m2 '"level":"error"' "$WORK/relay.log")"
# the conninfo's own options, and PGOPTIONS, are kept beside the pin
for how in conninfo PGOPTIONS; do
  if [ $how = conninfo ]; then
    rl_relay "ro-$how" --db "$ROLE_DB options='-c default_transaction_read_only=on'"
  else
    PGOPTIONS='-c default_transaction_read_only=on' rl_relay "ro-$how" --db "postgresql:///$DB?user=$role"
  fi
  rl_wait 10 rl_log_has "ro-$how" 'read-only transaction' || fail "options from the $how were dropped: $(tail -3 "$WORK/ro-$how.log")"
  kill -9 "$RL_PID"; wait "$RL_PID" 2>/dev/null || true
done
pass "relay as a role with search_path = evil, pg_catalog: $RL_VERIFIED events and 1 dead letter, no hostile object ran"
