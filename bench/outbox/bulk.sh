#!/usr/bin/env bash
# Write cost of the C trigger for multi-row statements: one INSERT ... SELECT
# of ROWS rows (no due dates: events only, no reminders), then one UPDATE of all of them (title changed: ROWS
# task.updated events), into the unattached and the attached table of
# bench/outbox/setup.sql, alternating in rounds on one throwaway server.
# Prints each statement's time, the attached/unattached throughput ratios
# (unattached time / attached time) and WAL bytes per row.
# Usage: [INDEXES="both txid id none"] bench/outbox/bulk.sh [rows] [rounds]     (default 100000 3)
#   SYNC=off as in run.sh (one statement per transaction: it hardly matters)
#   INDEXES: the outbox indexes to run with, one set of rounds each, in the
#     order given (default "both", the extension as installed): "txid" keeps
#     only (txid, id), "id" only (id), "none" neither.  A floor, not a
#     configuration: without both the relay cannot read its batches in id
#     order with flat cost (README.md, "The outbox"); the other variants say
#     how much of the events' cost is the indexes and how much the rest.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
rows=${1:-100000}
rounds=${2:-3}
bench_db "${BENCH_PGPORT:-54340}" "$here/setup.sql"

# ms STATEMENT: run it in psql with \timing; prints the milliseconds
ms() { q -d bench -c '\timing on' -c "$1" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -1; }

# outbox_indexes VARIANT: give the outbox the indexes of VARIANT (see INDEXES)
outbox_indexes() {
  local sql=(-c "DROP INDEX IF EXISTS taskevents.outbox_id_idx"
             -c "DROP INDEX IF EXISTS taskevents.outbox_txid_idx")
  case $1 in
    both|id) sql+=(-c "CREATE INDEX outbox_id_idx ON taskevents.outbox (id) WITH (deduplicate_items = off)") ;;&
    both|txid) sql+=(-c "CREATE INDEX outbox_txid_idx ON taskevents.outbox (txid, id) WITH (deduplicate_items = off)") ;;
    id|none) ;;
    *) die "INDEXES: unknown variant $1 (both, txid, id, none)" ;;
  esac
  q -d bench "${sql[@]}" >/dev/null
}

# rounds_of VARIANT: the rounds with the outbox indexes of VARIANT, then their sums
rounds_of() {
  local variant=$1 r v lsn0 lsn1 lsn2 ins upd wi wu events
  local -A sum
  [ "$variant" = both ] || outbox_indexes "$variant"
  for r in $(seq 1 "$rounds"); do
    for v in plain attached; do
      q -d bench -c "SELECT taskevents.detach('bench_attached', force => true)" >/dev/null
      q -d bench -c "TRUNCATE bench_plain, bench_attached, taskevents.outbox" >/dev/null
      q -d bench -c "SELECT taskevents.attach('bench_attached')" >/dev/null
      q -d bench -c "VACUUM ANALYZE" -c "CHECKPOINT" >/dev/null
      lsn0=$(q -d bench -c "SELECT pg_current_wal_lsn()")
      ins=$(ms "INSERT INTO bench_$v (user_id, title, description)
                SELECT 'user' || (g % 1000), 'task ' || g, 'bulk benchmark task' FROM generate_series(1, $rows) g")
      lsn1=$(q -d bench -c "SELECT pg_current_wal_lsn()")
      upd=$(ms "UPDATE bench_$v SET title = title || ' (renamed)'")
      lsn2=$(q -d bench -c "SELECT pg_current_wal_lsn()")
      wi=$(q -d bench -c "SELECT round(pg_wal_lsn_diff('$lsn1', '$lsn0') / $rows)")
      wu=$(q -d bench -c "SELECT round(pg_wal_lsn_diff('$lsn2', '$lsn1') / $rows)")
      events=$(q -d bench -c "SELECT count(*) FROM taskevents.outbox_events")
      echo "round $r  $v: INSERT ... SELECT $ins ms ($wi WAL bytes/row), UPDATE $upd ms ($wu WAL bytes/row), $events events"
      sum[$v-ins]=$(awk -v a="${sum[$v-ins]:-0}" -v b="$ins" 'BEGIN { print a + b }')
      sum[$v-upd]=$(awk -v a="${sum[$v-upd]:-0}" -v b="$upd" 'BEGIN { print a + b }')
    done
  done
  echo
  echo "sum over $rounds rounds of $rows rows, synchronous_commit=${SYNC:-on}, outbox indexes: $variant:"
  awk -v p="${sum[plain-ins]}" -v a="${sum[attached-ins]}" \
    'BEGIN { printf "  INSERT ... SELECT: unattached %.0f ms, attached %.0f ms: attached / unattached throughput %.2f\n", p, a, p / a }'
  awk -v p="${sum[plain-upd]}" -v a="${sum[attached-upd]}" \
    'BEGIN { printf "  UPDATE:            unattached %.0f ms, attached %.0f ms: attached / unattached throughput %.2f\n", p, a, p / a }'
  [ "$variant" = both ] || outbox_indexes both
}

for variant in ${INDEXES:-both}; do
  rounds_of "$variant"
done
