#!/usr/bin/env bash
# Backlog scaling: the time per event to drain backlogs of growing size must
# stay flat.  For each size N (default 10^4 10^5 10^6 10^7): empty outbox and
# relay state, write N task events (transactions of at most 100,000 rows,
# 1000 users), then `taskevents-relay --once` drains them into a real
# broker.  Prints N, drain time, microseconds per event and events/s, and the
# server-side paging time alone (relay_fetch pages read in psql, no Kafka).
#
# Usage: bench/backlog/run.sh [N ...]
# Environment: BENCH_PGPORT (54342), BENCH_KAFKA_PORT (19642), SKIP_BUILD.
# Needs about 1 GB of broker disk per million events.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export PGTE_PGPORT=${BENCH_PGPORT:-54342}
export PGTE_PGSTATE=${TMPDIR:-/tmp}/pgte-backlog-$PGTE_PGPORT
export KAFKA_PORT=${BENCH_KAFKA_PORT:-19642} KAFKA_CONTROLLER_PORT=$(( ${BENCH_KAFKA_PORT:-19642} + 1 ))
export KAFKA_STATE_DIR=${TMPDIR:-/tmp}/pgte-backlog-kafka-$KAFKA_PORT
source "$here/../../scripts/lib/common.sh"
export PGTE_PGCONF="shared_buffers = '1GB'
max_wal_size = '8GB'
synchronous_commit = off"
sizes=("$@"); [ ${#sizes[@]} -gt 0 ] || sizes=(10000 100000 1000000 10000000)
KAFKA=$PGTE_ROOT/test/kafka/kafka.sh
RELAY=$PGTE_ROOT/relay/taskevents-relay

ensure_packages
[ -n "${SKIP_BUILD:-}" ] || build_install
trap '"$KAFKA" stop >/dev/null 2>&1 || true; pg_stop' EXIT
pg_start
"$KAFKA" start >/dev/null || die "kafka did not start"
"$KAFKA" create-topics tasks:3 reminders:3 tasks-dlq:1 reminders-dlq:1 >/dev/null || die "topics"
q() { psql -X -q -v ON_ERROR_STOP=1 -At "$@"; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
createdb backlog
q -d backlog -c "ALTER DATABASE backlog SET taskevents.rotation_period = 86400"
q -d backlog <<'SQL' >/dev/null
CREATE EXTENSION pg_taskevents;
CREATE TABLE tasks (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, user_id text NOT NULL,
  title text NOT NULL, description text, priority text DEFAULT 'medium', tags text[] DEFAULT '{}',
  due_date timestamptz, is_recurring boolean NOT NULL DEFAULT false, recurring_interval text,
  completed boolean NOT NULL DEFAULT false, created_at timestamptz NOT NULL DEFAULT now());
SELECT taskevents.attach('tasks');
SQL

# The fixed cost of a --once run (connect, lease, broker metadata, idempotent
# producer id, final flush), measured on an empty outbox and subtracted.
t0=$(now_ms)
"$RELAY" --db "dbname=backlog" --brokers "127.0.0.1:$KAFKA_PORT" --metrics-addr 0 --once 2>/dev/null || die "relay failed"
fixed=$(( $(now_ms) - t0 ))
q -d backlog -c "DELETE FROM taskevents.relay_consumers" >/dev/null
echo "fixed cost of a --once run on an empty outbox: $fixed ms (subtracted below)"
printf '%10s %10s %12s %12s %14s %16s\n' events drain_ms us/event events/s fetch_only_ms fetch_us/event
for n in "${sizes[@]}"; do
  # (an attached table refuses TRUNCATE: detach around it)
  q -d backlog -c "SELECT taskevents.detach('tasks', force => true)" -c "TRUNCATE tasks" -c "SELECT taskevents.attach('tasks')" \
    -c "TRUNCATE taskevents.outbox, taskevents.relay_acks, taskevents.relay_ticks" \
    -c "DELETE FROM taskevents.relay_consumers" >/dev/null
  left=$n
  while [ "$left" -gt 0 ]; do
    k=$(( left < 100000 ? left : 100000 ))
    q -d backlog -c "INSERT INTO tasks (user_id, title, description)
                     SELECT 'user' || (g % 1000), 'task ' || g, 'backlog benchmark task' FROM generate_series(1, $k) g"
    left=$((left - k))
  done
  q -d backlog -c "VACUUM ANALYZE taskevents.outbox" >/dev/null
  # server side alone: page through the batch as the relay would, no Kafka
  e=$(q -d backlog -c "SELECT taskevents.relay_lease('probe', 'bench', 0)")
  t=$(q -d backlog -c "SELECT taskevents.relay_tick('probe', $e)")
  t0=$(now_ms)
  q -d backlog -c "DO \$\$ DECLARE last bigint := 0; c bigint; m bigint; BEGIN
      LOOP SELECT count(*), max(id) INTO c, m FROM taskevents.relay_fetch('probe', $t, last, 5000);
           EXIT WHEN c = 0; last := m; END LOOP; END \$\$" >/dev/null
  fetch_ms=$(( $(now_ms) - t0 ))
  q -d backlog -c "DELETE FROM taskevents.relay_consumers WHERE consumer = 'probe'" >/dev/null
  # the relay into Kafka
  t0=$(now_ms)
  "$RELAY" --db "dbname=backlog" --brokers "127.0.0.1:$KAFKA_PORT" --metrics-addr 0 --once \
    --batch-size 5000 --max-inflight 50000 2>"$PGTE_PGSTATE/relay-$n.log" || die "relay failed, see $PGTE_PGSTATE/relay-$n.log"
  ms=$(( $(now_ms) - t0 ))
  published=$(grep -o '"published":[0-9]*' "$PGTE_PGSTATE/relay-$n.log" | cut -d: -f2)
  [ "${published:-0}" -ge "$n" ] || die "relay published ${published:-0} of $n"
  awk -v n="$n" -v ms="$ms" -v f="$fetch_ms" -v x="$fixed" \
    'BEGIN { d = ms - x; if (d < 1) d = 1; printf "%10d %10d %12.2f %12.0f %14d %16.2f\n", n, ms, d * 1000 / n, n * 1000 / d, f, f * 1000 / n }'
done
