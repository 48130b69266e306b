#!/usr/bin/env bash
# Cost of process_once(): pgbench, 8 clients, one new event per transaction,
# against the floor (a plain one-table inbox, INSERT ... ON CONFLICT DO
# NOTHING, with no retention at all), interleaved in rounds.
# Usage: bench/analytics/inbox.sh [seconds-per-run] [rounds]
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
secs=${1:-15}
rounds=${2:-3}
export PGOPTIONS="-c client_min_messages=warning"
bench_db "${BENCH_PGPORT:-54332}" "$here/inbox_setup.sql"

declare -A tps
for v in process_once plain_insert; do tps[$v]=0; done
for r in $(seq 1 "$rounds"); do
  for v in process_once plain_insert; do
    t=$(pgbench -n -c 8 -j 2 -T "$secs" -f "$here/$v.sql" bench 2>&1 | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
    echo "round $r  $v: tps $t"
    tps[$v]=$(awk -v a="${tps[$v]}" -v b="$t" 'BEGIN { print a + b }')
  done
done
bench_mean_tps "mean over $rounds rounds of ${secs}s, 8 clients, synchronous_commit=${SYNC:-on}:" \
  '  %-13s %8.0f tps\n' process_once plain_insert
bench_tps_ratio '  process_once / plain = %.2f\n' process_once plain_insert
