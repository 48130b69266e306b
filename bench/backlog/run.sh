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
source "$here/../lib.sh"
sizes=("$@"); [ ${#sizes[@]} -gt 0 ] || sizes=(10000 100000 1000000 10000000)
RELAY=$PGTE_ROOT/relay/taskevents-relay

bench_pg_start "${BENCH_PGPORT:-54342}" "shared_buffers = '1GB'
max_wal_size = '8GB'
synchronous_commit = off"
bench_kafka_start "${BENCH_KAFKA_PORT:-19642}"
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
createdb backlog
q -d backlog -c "ALTER DATABASE backlog SET taskevents.rotation_period = 86400"
q -d backlog -c "CREATE EXTENSION pg_taskevents"
make_tasks_table backlog >/dev/null

# The fixed cost of a --once run (connect, lease, broker metadata, idempotent
# producer id, final flush), measured on an empty outbox and subtracted.
t0=$(now_ms)
"$RELAY" --db "dbname=backlog" --brokers "$KAFKA_BROKER" --metrics-addr 0 --once 2>/dev/null || die "relay failed"
fixed=$(( $(now_ms) - t0 ))
q -d backlog -c "DELETE FROM taskevents.relay_consumers" >/dev/null
echo "fixed cost of a --once run on an empty outbox: $fixed ms (subtracted below)"
printf '%10s %10s %12s %12s %14s %16s\n' events drain_ms us/event events/s fetch_only_ms fetch_us/event
for n in "${sizes[@]}"; do
  # (an attached table refuses TRUNCATE: detach around it)
  q -d backlog -c "SELECT taskevents.detach('tasks', force => true)" -c "TRUNCATE tasks" -c "SELECT taskevents.attach('tasks')" \
    -c "TRUNCATE taskevents.outbox, taskevents.relay_acks, taskevents.relay_ticks" \
    -c "DELETE FROM taskevents.relay_consumers" >/dev/null
  bench_write_tasks backlog "$n" 'backlog benchmark task'
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
  "$RELAY" --db "dbname=backlog" --brokers "$KAFKA_BROKER" --metrics-addr 0 --once \
    --batch-size 5000 --max-inflight 50000 2>"$PGTE_PGSTATE/relay-$n.log" || die "relay failed, see $PGTE_PGSTATE/relay-$n.log"
  ms=$(( $(now_ms) - t0 ))
  published=$(grep -o '"published":[0-9]*' "$PGTE_PGSTATE/relay-$n.log" | cut -d: -f2)
  [ "${published:-0}" -ge "$n" ] || die "relay published ${published:-0} of $n"
  awk -v n="$n" -v ms="$ms" -v f="$fetch_ms" -v x="$fixed" \
    'BEGIN { d = ms - x; if (d < 1) d = 1; printf "%10d %10d %12.2f %12.0f %14d %16.2f\n", n, ms, d * 1000 / n, n * 1000 / d, f, f * 1000 / n }'
done
