#!/usr/bin/env bash
# Cost of recurrence and reminders, on one throwaway server:
#  1. pgbench completing recurring vs non-recurring tasks (both with a
#     scheduled reminder that completion cancels; the recurring one also
#     inserts the next instance, its task.created and its reminder), rounds
#     interleaved in one run: tps of each and the ratio;
#  2. fire_due_reminders() on 100,000 due reminders in batches of 1,000:
#     total time and reminders per second;
#  3. the cost per reminder of firing 10,000 due reminders while the
#     reminders table grows to 1,000,000 rows (fired and future ones).
# Usage: bench/schedule/run.sh [seconds-per-run] [rounds]
#   SYNC=off        synchronous_commit=off (CPU cost instead of fsync)
#   SKIP_BUILD=1    do not build and install first
#   FIRE_N=100000   reminders fired in part 2
#   SIZES="100000 250000 500000 1000000"   reminders table sizes in part 3
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
secs=${1:-10}
rounds=${2:-3}
fire_n=${FIRE_N:-100000}
bench_db "${BENCH_PGPORT:-54341}" "$here/setup.sql"
export PGDATABASE=bench   # q and psql below
now_ms() { date +%s%3N; }
# due_bench_fire N: insert N tasks of bench_fire due in 2 hours (their
# reminder, 24 h lead, is due now)
due_bench_fire() {
  q -c "INSERT INTO bench_fire (user_id, title, due_date)
        SELECT 'user' || (i % 1000), 'task ' || i, now() + interval '2 hours'
          FROM generate_series(1, $1) i" >/dev/null
}
# fire_all N: fire the N due reminders in batches of 1000, each batch its
# own transaction, all in one session as the relay's maintenance connection
# runs them (a session per batch would time connection start-up and the
# preparation of the kept plans, once per batch); sets FIRED and FIRE_MS
# (wall time)
fire_all() {
  local t0 batches=$(( $1 / 1000 + 1 ))
  t0=$(now_ms)
  FIRED=$(for _ in $(seq "$batches"); do echo "SELECT taskevents.fire_due_reminders(now(), 1000);"; done |
          q | awk '{ n += $1 } END { print n + 0 }')
  FIRE_MS=$(( $(now_ms) - t0 ))
  [ "$FIRED" -eq "$1" ] || { echo "fired $FIRED of $1 due reminders" >&2; exit 1; }
}

echo "== 1. completing a task: recurring vs non-recurring (${secs}s x $rounds rounds, 4 clients)"
# enough open tasks for every round: ids 1..pool, due in 30 days
pool=$(( secs * rounds * 10000 ))
for t in rec once; do
  q -c "INSERT INTO bench_$t (id, user_id, title, description, tags, due_date, is_recurring, recurring_interval)
        SELECT i, 'user' || (i % 1000), 'task ' || i, 'description of task ' || i, '{bench}',
               now() + interval '30 days' + i * interval '1 second',
               '$t' = 'rec', CASE WHEN '$t' = 'rec' THEN 'daily' END
          FROM generate_series(1, $pool) i" >/dev/null
done
q -c "VACUUM ANALYZE" >/dev/null
declare -A tps
tps[rec]=0; tps[once]=0
for r in $(seq 1 "$rounds"); do
  for t in once rec; do
    q -c "CHECKPOINT" >/dev/null
    out=$(pgbench -n -c 4 -j 2 -T "$secs" -f "$here/complete_$t.sql" bench 2>&1)
    v=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
    echo "round $r  $t: tps $v"
    tps[$t]=$(awk -v a="${tps[$t]}" -v b="$v" 'BEGIN { print a + b }')
  done
done
for t in rec once; do
  q -c "SELECT 'check bench_$t: ' || count(*) FILTER (WHERE completed) || ' completed, '
               || count(*) FILTER (WHERE id > 10000000) || ' next instances, '
               || count(*) FILTER (WHERE id <= $pool AND NOT completed) || ' of $pool still open' FROM bench_$t"
done
awk -v a="${tps[rec]}" -v b="${tps[once]}" -v r="$rounds" 'BEGIN {
  printf "mean: recurring %.0f tps, non-recurring %.0f tps, recurring / non-recurring = %.2f\n", a / r, b / r, a / b }'

echo
echo "== 2. firing $fire_n due reminders in batches of 1000"
# (0.1.0's detach() has no force argument: bench/README.md's before/after
# runs this script against both versions)
force=$(q -c "SELECT CASE WHEN to_regprocedure('taskevents.detach(regclass, boolean)') IS NULL THEN '' ELSE ', force => true' END")
q -c "SELECT taskevents.detach('bench_rec'$force), taskevents.detach('bench_once'$force)" \
  -c "TRUNCATE bench_rec, bench_once, taskevents.reminders" >/dev/null
due_bench_fire "$fire_n"
q -c "VACUUM ANALYZE" >/dev/null
fire_all "$fire_n"
awk -v n="$FIRED" -v ms="$FIRE_MS" 'BEGIN {
  printf "fired %d reminders in %.1f s: %.0f reminders/s, %.3f ms per reminder\n", n, ms / 1000, n * 1000 / ms, ms / n }'

echo
echo "== 3. cost per reminder as taskevents.reminders grows (10,000 fired per step)"
for size in ${SIZES:-100000 250000 500000 1000000}; do
  have=$(q -c "SELECT count(*) FROM taskevents.reminders")
  add=$(( size - have - 10000 ))
  if [ "$add" -gt 0 ]; then
    # filler: 4 of 5 fired, 1 of 5 scheduled for next year (in the index)
    q -c "INSERT INTO taskevents.reminders (task_table, task_id, user_id, due_at, remind_at, state, fired_at)
          SELECT 'bench_fire'::regclass, 'filler-' || ($have + i), 'user' || (i % 1000),
                 now() + interval '1 year' + i * interval '1 second', now() + interval '1 year',
                 CASE WHEN i % 5 = 0 THEN 'scheduled' ELSE 'fired' END,
                 CASE WHEN i % 5 = 0 THEN NULL ELSE now() END
            FROM generate_series(1, $add) i" >/dev/null
  fi
  due_bench_fire 10000
  q -c "VACUUM ANALYZE taskevents.reminders" >/dev/null
  rows=$(q -c "SELECT count(*) FROM taskevents.reminders")
  fire_all 10000
  awk -v rows="$rows" -v n="$FIRED" -v ms="$FIRE_MS" 'BEGIN {
    printf "reminders table %8d rows: fired %d in %.2f s, %.3f ms per reminder\n", rows, n, ms / 1000, ms / n }'
done
q -c "EXPLAIN (COSTS OFF) SELECT m.reminder_id FROM taskevents.reminders m
       WHERE m.state = 'scheduled' AND m.remind_at <= now() ORDER BY m.remind_at LIMIT 1000 FOR UPDATE SKIP LOCKED"
