#!/usr/bin/env bash
# Write cost of the C trigger: pgbench, 8 clients, single-row INSERTs into
# an unattached table, an attached table and a table with a hand-written
# PL/pgSQL outbox trigger, interleaved in rounds in one run, on one
# throwaway server.  Prints tps per variant, the ratios and WAL bytes per
# insert.  Usage: bench/outbox/run.sh [seconds-per-run] [rounds]
#   SYNC=off  runs with synchronous_commit=off (CPU-bound: shows the
#             trigger's own cost instead of the disk flush)
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
secs=${1:-15}
rounds=${2:-3}
bench_db "${BENCH_PGPORT:-54340}" "$here/setup.sql"

declare -A tps wal
for v in plain attached plpgsql; do tps[$v]=0; wal[$v]=0; done
for r in $(seq 1 "$rounds"); do
  for v in plain attached plpgsql; do
    q -d bench -c "SELECT taskevents.detach('bench_attached', force => true)" >/dev/null
    q -d bench -c "TRUNCATE bench_plain, bench_attached, bench_plpgsql, bench_outbox, taskevents.outbox" >/dev/null
    q -d bench -c "SELECT taskevents.attach('bench_attached')" >/dev/null
    q -d bench -c "VACUUM ANALYZE" -c "CHECKPOINT" >/dev/null
    lsn0=$(q -d bench -c "SELECT pg_current_wal_lsn()")
    out=$(pgbench -n -c 8 -j 2 -T "$secs" -f "$here/insert.sql" -D tbl="bench_$v" bench 2>&1)
    lsn1=$(q -d bench -c "SELECT pg_current_wal_lsn()")
    t=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
    rows=$(q -d bench -c "SELECT count(*) FROM bench_$v")
    bytes=$(q -d bench -c "SELECT pg_wal_lsn_diff('$lsn1', '$lsn0')")
    w=$(awk -v b="$bytes" -v n="$rows" 'BEGIN { printf "%.0f", b / n }')
    echo "round $r  $v: tps $t  rows $rows  WAL bytes/insert $w"
    tps[$v]=$(awk -v a="${tps[$v]}" -v b="$t" 'BEGIN { print a + b }')
    wal[$v]=$(awk -v a="${wal[$v]}" -v b="$w" 'BEGIN { print a + b }')
  done
done
echo
echo "mean over $rounds rounds of ${secs}s, 8 clients, synchronous_commit=${SYNC:-on}:"
for v in plain attached plpgsql; do
  awk -v v="$v" -v t="${tps[$v]}" -v w="${wal[$v]}" -v r="$rounds" -v p="${tps[plain]}" \
    'BEGIN { printf "  %-9s %9.0f tps  %5.2f x unattached  %6.0f WAL bytes/insert\n", v, t / r, t / p, w / r }'
done
bench_tps_ratio '  attached / plpgsql = %.2f\n' attached plpgsql
