#!/usr/bin/env bash
# The relay as a non-superuser LOGIN role with only grant_relay(); --once;
# bad configuration refused with one line and exit 2; --help/--version;
# SIGHUP reload (a bad file keeps the running config); the password is
# masked in the log.
set -euo pipefail
source "$(dirname "$0")/lib/relay.sh"
rl_setup grants

role=relay_t0180
q -d "$DB" -c "DROP ROLE IF EXISTS $role" 2>/dev/null || true
q -d "$DB" -c "CREATE ROLE $role LOGIN PASSWORD 'sekret-pw'; SELECT taskevents.grant_relay('$role')" >/dev/null
trap 'st=$?; set +e; q -d postgres -c "DROP OWNED BY '$role' CASCADE" -d "$DB" >/dev/null 2>&1; dropdb --if-exists "$DB"; q -d postgres -c "DROP ROLE IF EXISTS '$role'" >/dev/null 2>&1; (exit $st); rl_cleanup' EXIT
rl_write 300 4
rl_once once --db "dbname=$DB user=$role password=sekret-pw" || fail "--once as $role failed"
grep -q 'sekret-pw' "$WORK/once.log" && fail "password in the log"
grep -q '"db":"[^"]*password=\*\*\*\*\*\*\*\*' "$WORK/once.log" || fail "masked conninfo not logged"
grep -q '"level":"error"' "$WORK/once.log" && fail "errors as $role: $(grep error "$WORK/once.log" | head -2)"
rl_verify tasks
[ "$RL_VERIFIED" -eq 300 ] || fail "300 expected"
q -d "$DB" -c "SELECT count(*) FROM taskevents.pending_events" | grep -qx 0 || fail "events still pending"
pass "--once as a role with only grant_relay(): $RL_VERIFIED events"

# bad configuration: exit 2, one line
for args in "--batch-size abc" "--log-level loud" "-X no.such.property=1" "--nope" "--metrics-addr nonsense" "--retry-backoff-ms 1,x"; do
  read -ra argv <<<"$args"
  st=0; "$RELAY" --db "dbname=$DB" --brokers "$KAFKA_BROKER" "${argv[@]}" >"$WORK/bad.log" 2>&1 || st=$?
  [ "$st" -eq 2 ] || fail "'$args' exit $st"
  [ "$(wc -l <"$WORK/bad.log")" -eq 1 ] && jq -e '.level == "error" and (.error | length) > 0' "$WORK/bad.log" >/dev/null \
    || fail "'$args' should log one error line: $(cat "$WORK/bad.log")"
done
TASKEVENTS_BATCH_SIZE=0 "$RELAY" --brokers x >/dev/null 2>&1 && fail "bad env var accepted"
# (to files first: grep -q stops reading early, and with pipefail the
# writer's SIGPIPE would fail the check)
"$RELAY" --help >"$WORK/help.txt" && grep -q -- '--max-inflight' "$WORK/help.txt" || fail "--help"
"$RELAY" --version >"$WORK/version.txt" && grep -q 'taskevents-relay' "$WORK/version.txt" || fail "--version"
pass "bad configuration refused with exit 2 and one line"

# SIGHUP reload from --config
echo "log-level = info" >"$WORK/relay.conf"
rl_relay hup --config "$WORK/relay.conf"
rl_wait 10 rl_log_has hup '"became leader"' || fail "no leader"
echo "log-level = debug" >"$WORK/relay.conf"
kill -HUP "$RL_PID"
rl_wait 5 rl_log_has hup '"configuration reloaded","log_level":"debug"' || fail "reload"
echo "poll-interval-ms = soon" >"$WORK/relay.conf"
kill -HUP "$RL_PID"
rl_wait 5 rl_log_has hup 'reload failed, keeping the running configuration' || fail "bad reload"
q -d "$DB" -c "INSERT INTO tasks (user_id, title) VALUES ('user1', 'after reload')"
kafka_wait_count tasks 301 10 >/dev/null || fail "relay stopped working after a bad reload"
kill -TERM "$RL_PID"; wait "$RL_PID" || fail "exit status"
pass "SIGHUP reloads, a bad file keeps the running configuration"
