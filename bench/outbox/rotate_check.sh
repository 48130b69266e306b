#!/usr/bin/env bash
# How long rotate_outbox holds a delivered outbox partition's ACCESS
# EXCLUSIVE lock before it truncates it: the "is anything in it still
# pending?" check (the relay's next fetch waits for that lock).  ROWS
# delivered events in one partition, never analyzed, as when a partition
# has just stopped filling; then ROUNDS alternating timings of the check as
# 0.2.0 had it until 4 Dec (one statement over the partition and every
# consumer position) and as it is now (_outbox_partition_pending(): a txid
# index range per position).  Prints each time, the medians and their ratio.
# Usage: bench/outbox/rotate_check.sh [rows] [rounds]     (default 400000 5)
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
rows=${1:-400000}
rounds=${2:-5}
bench_db "${BENCH_PGPORT:-54341}" "$here/setup.sql"

q -d bench -c "INSERT INTO bench_attached (user_id, title, description)
               SELECT 'user' || (g % 1000), 'task ' || g, 'rotation benchmark task' FROM generate_series(1, $rows) g" >/dev/null
q -d bench -c "DO \$\$ BEGIN PERFORM taskevents.relay_lease('bench', 'h', 0); PERFORM taskevents.relay_tick('bench', 1); END \$\$" \
  -c "DO \$\$ BEGIN PERFORM taskevents.relay_ack('bench', 1, taskevents.relay_last_tick('bench'), 0, true); END \$\$" >/dev/null
part=$(q -d bench -c "SELECT tableoid::regclass FROM taskevents.outbox GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")
[ "$(q -d bench -c "SELECT count(*) FROM taskevents.pending_events")" = 0 ] || die "events still pending"
old="SET search_path = pg_catalog, pg_temp;
     SELECT EXISTS (SELECT 1 FROM $part o, taskevents._consumer_positions() p
                     WHERE p.done_snapshot IS NULL
                        OR (o.txid >= pg_catalog.pg_snapshot_xmin(p.done_snapshot)
                            AND NOT pg_catalog.pg_visible_in_snapshot(o.txid, p.done_snapshot)))"
new="SELECT taskevents._outbox_partition_pending('$part')"
# ms SQL: milliseconds of its last statement, in a fresh session
ms() { q -d bench -c '\timing on' -c "$1" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -1; }
declare -a t_old t_new
for r in $(seq 1 "$rounds"); do
  t_old+=("$(ms "$old")")
  t_new+=("$(ms "$new")")
  echo "round $r: one statement ${t_old[-1]} ms, by the txid index ${t_new[-1]} ms"
done
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
mo=$(median "${t_old[@]}"); mn=$(median "${t_new[@]}")
echo "$rows delivered rows in $part: median one statement $mo ms, by the txid index $mn ms (new session each: planning included): $(awk -v a="$mo" -v b="$mn" 'BEGIN { printf "%.0f", a / b }') x"
