#!/usr/bin/env bash
# Event analytics cost.  1) The write path: pgbench, 8 clients, single-row
# INSERTs into an attached table with analytics off and on, interleaved in
# rounds in one run, while a background loop performs maintain()'s rotation
# step (capture + TRUNCATE) every second with a 5 s rotation period.
# 2) _capture_analytics() of 100,000 events, without and with payload.
# Usage: bench/analytics/run.sh [seconds-per-run] [rounds]
#   SYNC=off  synchronous_commit=off (CPU-bound: no disk flush per commit)
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
secs=${1:-15}
rounds=${2:-3}
rotator=
bench_cleanup() { [ -n "$rotator" ] && kill "$rotator" 2>/dev/null; wait 2>/dev/null; }
export PGOPTIONS="-c client_min_messages=warning"
bench_db "${BENCH_PGPORT:-54332}" "$here/setup.sql" "taskevents.rotation_period = 5"

# maintain()'s rotation step, every second, for the whole run
( while sleep 1; do q -d bench -c "SELECT bench_rotate()" >/dev/null 2>&1 || true; done ) &
rotator=$!

declare -A tps
for v in off on; do tps[$v]=0; done
for r in $(seq 1 "$rounds"); do
  for v in off on; do
    [ "$v" = on ] && en=true || en=false
    q -d bench -c "UPDATE taskevents.analytics_settings SET enabled = $en, keep_payload = false" \
      -c "SELECT taskevents.detach('bench_tasks', force => true)" \
      -c "TRUNCATE bench_tasks, taskevents.outbox, taskevents.analytics_events" \
      -c "SELECT taskevents.attach('bench_tasks')" >/dev/null
    q -d bench -c "VACUUM ANALYZE" -c "CHECKPOINT" >/dev/null
    out=$(pgbench -n -c 8 -j 2 -T "$secs" -f "$here/insert.sql" -D tbl=bench_tasks bench 2>&1)
    t=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
    sleep 11   # two rotation periods: the rotation loop captures what was written
    rows=$(q -d bench -c "SELECT count(*) FROM bench_tasks")
    rec=$(q -d bench -c "SELECT count(*) FROM taskevents.analytics_events")
    echo "round $r  analytics $v: tps $t  rows $rows  recorded $rec"
    tps[$v]=$(awk -v a="${tps[$v]}" -v b="$t" 'BEGIN { print a + b }')
  done
done
kill "$rotator"; wait "$rotator" 2>/dev/null || true; rotator=
bench_mean_tps "write path, mean over $rounds rounds of ${secs}s, 8 clients, synchronous_commit=${SYNC:-on}:" \
  '  analytics %-3s %9.0f tps\n' off on
bench_tps_ratio '  on / off = %.3f\n' on off

# 100,000 real events in one outbox partition, copied aside so that every
# measurement captures the same rows
q -d bench -c "SELECT taskevents.detach('bench_tasks', force => true)" \
  -c "TRUNCATE bench_tasks, taskevents.outbox" \
  -c "SELECT taskevents.attach('bench_tasks')" \
  -c "SET taskevents.rotation_period = 86400" \
  -c "INSERT INTO bench_tasks (user_id, title, description, priority, tags)
      SELECT 'user-' || (i % 1000), 'Prepare the quarterly report', 'Collect the numbers and write the summary.',
             'high', '{work,report}' FROM generate_series(1, 100000) i" \
  -c "DROP TABLE IF EXISTS bench_capture_src" \
  -c "CREATE TABLE bench_capture_src AS SELECT * FROM taskevents.outbox" \
  -c "VACUUM ANALYZE bench_capture_src" >/dev/null
echo
echo "_capture_analytics() of 100,000 events (3 runs each):"
for payload in false true; do
  for _ in 1 2 3; do
    q -d bench -F ' ' -c "SELECT ms, captured, bytes FROM bench_capture_ms($payload)"
  done | sort -n | awk -v p="$payload" '{ ms[NR] = $1; n = $2; b = $3 }
    END { printf "  keep_payload=%-5s %7.1f ms median (%s, %s, %s)  %d rows  %.1f MB recorded  %.0f bytes/event\n",
          p, ms[2], ms[1], ms[2], ms[3], n, b / 1048576, b / n }'
done
