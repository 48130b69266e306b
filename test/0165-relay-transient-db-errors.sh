#!/usr/bin/env bash
# Calls that fail for a reason that passes are tried again; the relay keeps
# its lease and its window.  The relay's role runs with lock_timeout =
# 150ms and a DBA session holds one of the relay's tables ACCESS EXCLUSIVE,
# so the calls that read it fail with SQLSTATE 55P03 (a deadlock, 40P01,
# took the same path in CI before relay_lease() stopped taking FOR UPDATE):
#  1. relay_leases: every renewal fails.  "lease renewal failed, will
#     retry" with the SQLSTATE and the lease left, the retry counter in
#     /metrics; still the leader at the same epoch, and events written
#     meanwhile are delivered while the lock is held; after it, a renewal
#     succeeds.
#  2. relay_ticks: every tick fails.  "database call failed, will retry"
#     (call relay_tick/relay_fetch), its counter; nothing is delivered
#     while the lock is held, everything once it is gone.  An ack still
#     due from step 1 reads relay_ticks too, and may fail and be retried
#     the same way (call relay_ack: 4 Dec's run met it).
#  3. dead_letters: a malformed outbox row goes to tasks-dlq but cannot be
#     recorded (call relay_dead_letter); once the lock is gone it is
#     recorded once, and produced to tasks-dlq once.
# At the end: one "became leader", no "leadership lost", the epoch
# unchanged, every event delivered exactly once, in order per user.
# Before, the first such failure made the relay stand down and lead again,
# re-sending what was in flight.
set -euo pipefail
source "$(dirname "$0")/lib/relay.sh"
rl_setup transient nokafka

metrics_port=$((KAFKA_PORT + 352))
metric() { rl_metric "127.0.0.1:$metrics_port" "$1"; }
retries_logged() { [ "$(grep -c '"lease renewal failed, will retry"' "$WORK/relay.log")" -ge "$1" ]; }
call_retries_logged() { [ "$(grep '"database call failed, will retry"' "$WORK/relay.log" | grep -c "\"call\":\"$1\"")" -ge "$2" ]; }
dead_letters_recorded() { [ "$(q -d "$DB" -c "SELECT count(*) FROM taskevents.dead_letters")" -ge "$1" ]; }
newest_renewal() {
  q -d "$DB" -c "SELECT coalesce(max(renewal_id), 0) FROM taskevents.relay_leases WHERE consumer = 'default'"
}
renewed_since() { [ "$(newest_renewal)" -gt "$1" ]; }

# renewals every 2 s; the lock below is held from a retry on, so the lease
# (6 s from the last renewal) outlives it by seconds
rl_relay relay --dev-mock-kafka --metrics-addr "127.0.0.1:$metrics_port" --lease-ttl-ms 6000 \
  --db "dbname=$DB options='-c lock_timeout=150'"
rl_wait 10 rl_log_has relay '"became leader"' || fail "no leader"
KAFKA_BROKER=$(grep -m1 '"bootstrap_servers"' "$WORK/relay.log" | jq -r .bootstrap_servers)
rl_write 20
rl_wait 20 rl_delivered tasks 20 || fail "the first 20 events were not delivered"
epoch=$(q -d "$DB" -c "SELECT epoch FROM taskevents.relay_consumers WHERE consumer = 'default'")

# the DBA's session, kept open on a coprocess
coproc DBA { psql -X -q -At -v ON_ERROR_STOP=1 -d "$DB" 2>&1; }
# (only this session can read relay_leases while it holds the lock: the
# newest renewal is read here)
echo "BEGIN; LOCK TABLE taskevents.relay_leases IN ACCESS EXCLUSIVE MODE;
      SELECT 'locked ' || coalesce(max(renewal_id), 0) FROM taskevents.relay_leases WHERE consumer = 'default';" >&"${DBA[1]}"
read -r -t 10 line <&"${DBA[0]}" && [[ "$line" == "locked "* ]] || fail "the DBA session did not take the lock: $line"
before=${line#locked }
rl_wait 10 retries_logged 2 || fail "no renewal failed and was retried while relay_leases was locked"
# still leading: events committed now are delivered while the lock is held
rl_write 30
rl_wait 20 rl_delivered tasks 50 || fail "events written while the renewals failed were not delivered"
retries_logged 2 || fail "lost the retry lines"
[ "$(metric taskevents_relay_leader)" = 1 ] || fail "/metrics: no longer the leader"
echo "COMMIT; SELECT 'released';" >&"${DBA[1]}"
read -r -t 10 line <&"${DBA[0]}" && [ "$line" = released ] || fail "the DBA session did not commit: $line"
# a renewal after the lock: a newer lease row
rl_wait 10 renewed_since "$before" || fail "no renewal succeeded after the lock was released"

# 2. relay_ticks locked: the ticks of the commits below fail
echo "BEGIN; LOCK TABLE taskevents.relay_ticks IN ACCESS EXCLUSIVE MODE; SELECT 'locked';" >&"${DBA[1]}"
read -r -t 10 line <&"${DBA[0]}" && [ "$line" = locked ] || fail "the DBA session did not lock relay_ticks: $line"
rl_write 20
rl_wait 10 call_retries_logged relay_tick/relay_fetch 2 || fail "no tick failed and was retried while relay_ticks was locked"
[ "$(kafka_topic_count tasks)" -eq 50 ] || fail "events delivered while relay_ticks was locked: the lock did not hold the ticks"
[ "$(metric taskevents_relay_leader)" = 1 ] || fail "/metrics: no longer the leader while the ticks failed"
echo "COMMIT; SELECT 'released';" >&"${DBA[1]}"
read -r -t 10 line <&"${DBA[0]}" && [ "$line" = released ] || fail "the DBA session did not commit: $line"
rl_wait 20 rl_delivered tasks 70 || fail "the events written while the ticks failed were not delivered after the lock"

# 3. dead_letters locked: an event that is not a CloudEvent is produced to
# tasks-dlq, and its record waits
echo "BEGIN; LOCK TABLE taskevents.dead_letters IN ACCESS EXCLUSIVE MODE; SELECT 'locked';" >&"${DBA[1]}"
read -r -t 10 line <&"${DBA[0]}" && [ "$line" = locked ] || fail "the DBA session did not lock dead_letters: $line"
q -d "$DB" -c "INSERT INTO taskevents.outbox (slot, topic, partition_key, data)
  VALUES (taskevents._current_slot(), 'tasks', 'poison', '{\"specversion\": \"0.3\", \"id\": \"m1\", \"source\": \"s\", \"type\": \"t\"}')" >/dev/null
rl_write 10
rl_wait 10 call_retries_logged relay_dead_letter 2 || fail "no dead-letter record failed and was retried while dead_letters was locked"
[ "$(metric taskevents_relay_leader)" = 1 ] || fail "/metrics: no longer the leader while the record failed"
echo "COMMIT; SELECT 'released';" >&"${DBA[1]}"
read -r -t 10 line <&"${DBA[0]}" && [ "$line" = released ] || fail "the DBA session did not commit: $line"
rl_wait 20 dead_letters_recorded 1 || fail "the dead letter was not recorded after the lock"
rl_wait 20 rl_delivered tasks 80 || fail "the events written while the record failed were not delivered"
echo '\q' >&"${DBA[1]}"

! rl_log_has relay '"leadership lost"' || fail "the relay stood down: $(grep '"leadership lost"' "$WORK/relay.log")"
[ "$(grep -c '"became leader"' "$WORK/relay.log")" = 1 ] || fail "the relay took the lease more than once"
[ "$(q -d "$DB" -c "SELECT epoch FROM taskevents.relay_consumers WHERE consumer = 'default'")" = "$epoch" ] \
  || fail "the epoch moved"
grep '"lease renewal failed, will retry"' "$WORK/relay.log" | jq -e -s \
  'all(.sqlstate == "55P03" and .lease_left_ms > 0 and .retry_in_ms >= 100)' >/dev/null \
  || fail "retry lines without SQLSTATE 55P03 or the lease left: $(grep -m2 'will retry' "$WORK/relay.log")"
n=$(grep -c '"lease renewal failed, will retry"' "$WORK/relay.log")
[ "$(metric taskevents_relay_lease_renewal_retries_total)" = "$n" ] \
  || fail "/metrics counts $(metric taskevents_relay_lease_renewal_retries_total) retries, the log $n"
grep '"database call failed, will retry"' "$WORK/relay.log" | jq -e -s \
  'all((.call == "relay_tick/relay_fetch" or .call == "relay_ack" or .call == "relay_dead_letter") and .sqlstate == "55P03" and .retry_in_ms >= 100)' >/dev/null \
  || fail "call retry lines without the call or SQLSTATE 55P03: $(grep -m2 'database call failed' "$WORK/relay.log")"
[ "$(q -d "$DB" -c "SELECT count(*) || ' ' || string_agg(partition_key || ' ' || (reason LIKE 'invalid cloudevent%')::text, ',') FROM taskevents.dead_letters")" = "1 poison true" ] \
  || fail "dead letters: $(q -d "$DB" -c "SELECT count(*), string_agg(partition_key || ': ' || reason, ', ') FROM taskevents.dead_letters")"
[ "$(kafka_topic_count tasks-dlq)" = 1 ] || fail "tasks-dlq holds $(kafka_topic_count tasks-dlq) messages, 1 expected"
m=$(grep -c '"database call failed, will retry"' "$WORK/relay.log")
[ "$(metric taskevents_relay_db_retries_total)" = "$m" ] \
  || fail "/metrics counts $(metric taskevents_relay_db_retries_total) call retries, the log $m"
rl_verify tasks
pass "renewals failed $n times, ticks and dead-letter records $m times with 55P03 while relay_leases, relay_ticks, dead_letters were locked; the relay kept leading at epoch $epoch, delivered 80 events once each and recorded the dead letter once"
