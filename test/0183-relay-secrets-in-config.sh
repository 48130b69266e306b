#!/usr/bin/env bash
# Secrets in the configuration never reach the relay's log, whichever way
# they come in.  A running relay gets sentinel values for sslpassword and
# password in its conninfo, PGPASSWORD, and every kind of secret librdkafka
# property (*password*, *secret*, ssl.key.pem, sasl.oauthbearer.config),
# from flags and from TASKEVENTS_KAFKA_*; its "process up" line shows each
# of them as ******** by name, and shows sasl.username (echo works).  One
# sentinel is also given as client.id, which is no secret by name: the log
# layer still replaces it, also inside librdkafka's own debug lines.  Then
# mistyped flags and malformed values that carry a sentinel are refused
# (exit 2, one line) naming the flag only.  No sentinel may appear anywhere.
# (No broker needed: the relay runs against an unreachable one.)  The one
# *secret* property, sasl.oauthbearer.client.secret, needs a librdkafka
# built with OIDC support; without it, the relay refuses it, and the
# refusal must not echo its value either.
set -euo pipefail
source "$(dirname "$0")/lib/relay.sh"
rl_setup secrets_config nokafka
S=Sentinel$RANDOM$RANDOM
NOBROKER=127.0.0.1:1

# probe: the producer is created before the metrics address is checked
"$RELAY" --brokers $NOBROKER -X "sasl.oauthbearer.client.secret=${S}probe" --metrics-addr nonsense \
  >"$WORK/probe.log" 2>&1 && fail "probe: bad --metrics-addr accepted"
OIDC=(); want_oidc=false
if grep -q 'metrics-addr' "$WORK/probe.log"; then
  OIDC=(env "TASKEVENTS_KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET=${S}env"); want_oidc=true
else
  grep -q 'sasl.oauthbearer.client.secret.*not supported in this build' "$WORK/probe.log" \
    || fail "unexpected refusal of sasl.oauthbearer.client.secret: $(cat "$WORK/probe.log")"
fi
PGPASSWORD=${S}pgpass "${OIDC[@]}" \
  "$RELAY" --db "dbname=$DB sslpassword=${S}sslpw password=${S}pw" --brokers $NOBROKER --metrics-addr 0 \
  --log-level debug -X debug=generic -X "sasl.password=${S}sasl" -X "ssl.key.password=${S}keypw" \
  -X "ssl.keystore.password=${S}kspw" -X "ssl.key.pem=${S}pem" -X "sasl.oauthbearer.config=principal=${S}oauth" \
  -X sasl.username=visible-user -X "client.id=${S}sasl" >"$WORK/run.log" 2>&1 &
RL_PID=$!; RL_PIDS+=("$RL_PID")
rl_wait 15 rl_log_has run '"became leader"' || fail "relay did not lead"
kill -TERM "$RL_PID"; wait "$RL_PID" || fail "relay exit status"
up=$(grep -m1 '"process up"' "$WORK/run.log")
jq -e '(.db | test("sslpassword=\\*{8}") and test("(^| )password=\\*{8}") and test("dbname="))
  and .kafka_properties["sasl.password"] == "********" and .kafka_properties["ssl.key.password"] == "********"
  and .kafka_properties["ssl.keystore.password"] == "********" and .kafka_properties["ssl.key.pem"] == "********"
  and .kafka_properties["sasl.oauthbearer.config"] == "********"
  and (.kafka_properties["sasl.oauthbearer.client.secret"] == "********" or ($oidc | not))
  and .kafka_properties["sasl.username"] == "visible-user" and .kafka_properties["client.id"] == "********"' \
  --argjson oidc $want_oidc <<<"$up" >/dev/null || fail "process up line not masked as expected: $up"
grep -q '"facility":"INIT".*\*\*\*\*\*\*\*\*#producer' "$WORK/run.log" \
  || fail "librdkafka's own init line should show client.id replaced: $(grep -m1 '"facility":"INIT"' "$WORK/run.log" | cut -c1-200)"
pass "running relay: conninfo, PGPASSWORD and $((5 + ${#OIDC[@]} / 2)) secret librdkafka properties masked; client.id=<secret> replaced in librdkafka's lines"

# refused configurations: exit 2, one error line, the sentinel nowhere
n=0
refuse() {
  local st=0 name=$1; shift
  n=$((n + 1))
  "$@" >"$WORK/bad-$n.log" 2>&1 || st=$?
  [ "$st" -eq 2 ] || fail "$name: exit $st, expected 2: $(head -c 300 "$WORK/bad-$n.log")"
  [ "$(wc -l <"$WORK/bad-$n.log")" -eq 1 ] && jq -e '.level == "error" and (.error | length) > 0' "$WORK/bad-$n.log" >/dev/null \
    || fail "$name: expected one error line: $(head -c 300 "$WORK/bad-$n.log")"
}
refuse "mistyped long flag with =" "$RELAY" --brokers $NOBROKER "--sasl-password=${S}a"
grep -q '"unknown option \\"--sasl-password\\"' "$WORK/bad-$n.log" || fail "flag not named: $(cat "$WORK/bad-$n.log")"
refuse "mistyped long flag, value after it" "$RELAY" --brokers $NOBROKER --db-password "${S}b"
refuse "unknown short flag with attached value" "$RELAY" --brokers $NOBROKER "-P${S}c"
grep -q '"unknown option \\"-P\\"' "$WORK/bad-$n.log" || fail "flag not named: $(cat "$WORK/bad-$n.log")"
refuse "stray value after a boolean flag" "$RELAY" --brokers $NOBROKER --once "${S}d"
refuse "-X with : instead of =" "$RELAY" --brokers $NOBROKER -X "sasl.password:${S}e"
refuse "conninfo without =" "$RELAY" --brokers $NOBROKER --db "host=127.0.0.1 ${S}f"
refuse "URI with a mistyped parameter" "$RELAY" --brokers $NOBROKER --db "postgresql://u:${S}g@h/db?sslpasword=${S}g"
printf 'brokers = %s\nsasl.password = %sh\n' "$NOBROKER" "$S" >"$WORK/bad.conf"
refuse "secret key as a config file option" "$RELAY" --config "$WORK/bad.conf"
grep -q 'unknown option \\"sasl.password\\"' "$WORK/bad-$n.log" || fail "config option not named: $(cat "$WORK/bad-$n.log")"
refuse "mistyped TASKEVENTS_KAFKA_ variable" env "TASKEVENTS_KAFKA_SASL_PASWORD=${S}i" "$RELAY" --brokers $NOBROKER
pass "$n refused configurations, each one line naming the flag only"

if grep -l -- "$S" "$WORK"/*.log >"$WORK/leak"; then
  fail "sentinel in $(tr '\n' ' ' <"$WORK/leak"): $(xargs -d '\n' grep -h -m1 -- "$S" <"$WORK/leak" | cut -c1-300)"
fi
pass "no sentinel in $(cat "$WORK"/*.log | wc -l) log lines"
