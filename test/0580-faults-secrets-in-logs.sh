#!/usr/bin/env bash
# Fault matrix 11: secrets and payloads stay out of every log.  The relay
# logs in as a role with a sentinel password (over TCP, and with SCRAM
# enforced for that role when the server is ours), once with a key=value
# conninfo and once with a URI in the environment, with a sentinel
# sasl.password, at its most verbose (--log-level debug, librdkafka
# debug=all).  Tasks carry a sentinel title and description, one of them too
# large for Kafka (retries, dead letter, alert line).  Neither sentinel may
# appear in any line of the relay's, PostgreSQL's or Kafka's logs, while the
# title did reach Kafka (the data flowed).
set -euo pipefail
source "$(dirname "$0")/lib/faults.sh"
rl_setup secrets
PW="PwSentinel$RANDOM$RANDOM"
TITLE="TitleSentinel$RANDOM$RANDOM"
q -d postgres -c "DROP ROLE IF EXISTS chk_relay" >/dev/null 2>&1
q -d "$DB" -c "CREATE ROLE chk_relay LOGIN PASSWORD '$PW'; SELECT taskevents.grant_relay('chk_relay')" >/dev/null
port=${PGPORT:-$PGTE_PGPORT}
datadir=${PGHOST:-}/data
hba_added=0
restore_hba() {
  [ "$hba_added" = 1 ] && [ -f "$datadir/pg_hba.conf" ] && sed -i '/# chk 0580$/d' "$datadir/pg_hba.conf" && q -d postgres -c "SELECT pg_reload_conf()" >/dev/null
  q -d postgres -c "DROP ROLE IF EXISTS chk_relay" >/dev/null 2>&1 || true
}
trap 'st=$?; set +e; restore_hba; (exit $st); rl_cleanup' EXIT
if [ -f "$datadir/pg_hba.conf" ]; then
  sed -i "1i host all chk_relay 127.0.0.1/32 scram-sha-256 # chk 0580" "$datadir/pg_hba.conf"
  hba_added=1
  q -d postgres -c "SELECT pg_reload_conf()" >/dev/null
  rl_wait 5 sh -c "! PGPASSWORD=wrong psql -X -h 127.0.0.1 -p $port -U chk_relay -d $DB -c 'SELECT 1' >/dev/null 2>&1" \
    || fail "SCRAM not enforced for chk_relay"
fi
PGPASSWORD=$PW psql -X -h 127.0.0.1 -p "$port" -U chk_relay -d "$DB" -Atc "SELECT 1" >/dev/null || fail "the sentinel password does not log in"
loud=(--log-level debug -X debug=all -X "sasl.password=$PW" -X sasl.username=chk --maintain-interval-ms 500)

rl_relay relay-kv --db "host=127.0.0.1 port=$port dbname=$DB user=chk_relay password=$PW" "${loud[@]}"
rl_wait 20 rl_log_has relay-kv '"became leader"' || fail "relay (key=value conninfo) did not lead"
q -d "$DB" -c "INSERT INTO tasks (user_id, title, description) SELECT 'u' || g % 3, '$TITLE', '$TITLE desc' FROM generate_series(1, 30) g"
q -d "$DB" -c "INSERT INTO tasks (user_id, title, description) VALUES ('u0', '$TITLE', repeat('$TITLE', 60000))"
q -d "$DB" -c "UPDATE tasks SET title = '$TITLE updated' WHERE id % 2 = 0"
kafka_wait_count tasks-dlq 1 40 >/dev/null || fail "oversize sentinel event not dead-lettered"
rl_wait 20 fl_drained || fail "not drained"
kill -TERM "$RL_PID"; wait "$RL_PID" || fail "relay exit status"

TASKEVENTS_DB="postgresql://chk_relay:$PW@127.0.0.1:$port/$DB" "$RELAY" --brokers "$KAFKA_BROKER" --metrics-addr 0 "${loud[@]}" \
  >"$WORK/relay-uri.log" 2>&1 &
RL_PID=$!; RL_PIDS+=("$RL_PID")
rl_wait 20 rl_log_has relay-uri '"became leader"' || fail "relay (URI in the environment) did not lead"
q -d "$DB" -c "DELETE FROM tasks WHERE id % 3 = 0"
rl_wait 20 fl_drained || fail "not drained (URI)"
kill -TERM "$RL_PID"; wait "$RL_PID" || fail "relay exit status (URI)"

lines=$(cat "$WORK"/relay-*.log | wc -l)
[ "$lines" -gt 200 ] || fail "the relay was not verbose ($lines lines)"
kcat -b "$KAFKA_BROKER" -C -t tasks -o beginning -e -q -f '%s\n' | grep -c "$TITLE" >"$WORK/in-kafka" || true
[ "$(cat "$WORK/in-kafka")" -gt 30 ] || fail "the sentinel title did not reach Kafka; the test would prove nothing"
logs=("$WORK"/relay-*.log "$KAFKA_STATE_DIR"/logs/*)
[ -f "${PGHOST:-}/server.log" ] && logs+=("$PGHOST/server.log")
for s in "$PW" "$TITLE"; do
  if grep -l -- "$s" "${logs[@]}" 2>/dev/null >"$WORK/leak"; then
    fail "sentinel ${s%%[0-9]*} found in: $(tr '\n' ' ' <"$WORK/leak"); e.g. $(xargs -d '\n' grep -h -m1 -- "$s" <"$WORK/leak" | cut -c1-300)"
  fi
done
for f in kv uri; do
  grep -m1 '"process up"' "$WORK/relay-$f.log" | jq -e '.db | test("chk_relay") and test("\\*\\*\\*\\*\\*\\*\\*\\*")' >/dev/null \
    || fail "the $f conninfo is not logged masked: $(grep -m1 '"process up"' "$WORK/relay-$f.log")"
done
pass "sentinels absent from ${#logs[@]} log files ($lines relay lines at debug + librdkafka debug=all; scram enforced: $hba_added); title reached Kafka $(cat "$WORK/in-kafka") times"
