#!/usr/bin/env bash
# Soak and bloat: 8 pgbench clients at a steady write rate with the relay
# draining into a real local broker, in two phases of SOAK_SECONDS each:
#   plain  - nothing else running;
#   held   - a REPEATABLE READ transaction that has taken its snapshot (ran a
#            SELECT) is held open for the whole phase, so vacuum can remove
#            nothing that died after it started.
# Every SOAK_SAMPLE seconds it records: committed writes/s (pgbench),
# events delivered/s and the delivery latency p50/p99 (write -> delivery
# report, from the relay's histogram), outbox heap and index size
# (pg_relation_size / pg_indexes_size over the partitions), dead tuples
# (pg_stat_user_tables.n_dead_tup of the outbox partitions and of the relay's
# state: relay_consumers and the partitions of relay_ticks, relay_acks and
# relay_leases) and the tasks table's size, to a CSV and a markdown
# summary under bench/soak/results/.  Targets (issue 5):
#   held throughput >= 0.9 x plain throughput;
#   held outbox size <= 2 x its steady size (median of the plain phase's
#   second half).
# Usage: [SOAK_SECONDS=1800] [SOAK_RATE=400] [SOAK_SAMPLE=10] [SOAK_ROTATION=30] [SKIP_BUILD=1] bench/soak/run.sh
# Own servers: PostgreSQL on SOAK_PGPORT (54363), Kafka on SOAK_KAFKA_PORT
# (19332, controller +1), relay metrics on 19335; all on 127.0.0.1.
set -euo pipefail
SOAK_SECONDS=${SOAK_SECONDS:-1800}
SOAK_RATE=${SOAK_RATE:-400}          # transactions/s, all 8 clients together
SOAK_SAMPLE=${SOAK_SAMPLE:-10}
SOAK_ROTATION=${SOAK_ROTATION:-30}   # taskevents.rotation_period, seconds
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/../lib.sh"
MPORT=19335
RELAY=$PGTE_ROOT/relay/taskevents-relay
DB=soak
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$HERE/results; mkdir -p "$OUT"
CSV=$OUT/soak-$STAMP.csv; MD=$OUT/soak-$STAMP.md
bench_cleanup() {
  [ -n "${HOLD_FD:-}" ] && { echo 'ROLLBACK;' >&"$HOLD_FD"; echo '\q' >&"$HOLD_FD"; } 2>/dev/null || true
  [ -n "${BPID:-}" ] && kill "$BPID" 2>/dev/null || true
  [ -n "${RPID:-}" ] && kill -TERM "$RPID" 2>/dev/null && wait "$RPID" 2>/dev/null || true
}
trap 'echo "soak: failed at line $LINENO" >&2' ERR

bench_pg_start "${SOAK_PGPORT:-54363}" "shared_buffers = 256MB
max_wal_size = '1GB'
synchronous_commit = on"
createdb $DB
q -d $DB -c "CREATE EXTENSION pg_taskevents" -c "ALTER DATABASE $DB SET taskevents.rotation_period = $SOAK_ROTATION"
make_tasks_table $DB >/dev/null
q -d $DB -c "INSERT INTO tasks (user_id, title) SELECT 'user' || g % 1000, 'seed' FROM generate_series(1, 10000) g"
bench_kafka_start "${SOAK_KAFKA_PORT:-19332}"
"$RELAY" --db "host=$PGHOST port=$PGPORT dbname=$DB user=postgres" --brokers "$KAFKA_BROKER" \
  --metrics-addr 127.0.0.1:$MPORT 2>"$WORK/relay.log" &
RPID=$!
# one write a transaction: 70 % new tasks, 30 % updates of a recent task
cat >"$WORK/write.sql" <<'SQL'
\set u random(0, 999)
\set r random(1, 10)
\set back random(0, 2000)
INSERT INTO tasks (user_id, title) SELECT 'user' || :u, 'soak' WHERE :r <= 7;
UPDATE tasks SET title = 'soak updated', priority = 'high' WHERE :r > 7 AND id = (SELECT max(id) FROM tasks) - :back;
SQL
metrics() { curl -sf "http://127.0.0.1:$MPORT/metrics" || true; }
# p from histogram bucket differences: the upper bound of the bucket holding the p-th percentile
hist_pct() {  # hist_pct FILE_BEFORE FILE_AFTER P
  python3 - "$1" "$2" "$3" <<'PY'
import sys, re
def buckets(f):
    b = {}
    for line in open(f):
        m = re.match(r'taskevents_relay_delivery_latency_seconds_bucket\{le="([^"]+)"\} (\S+)', line)
        if m:
            b[float("inf") if m.group(1) == "+Inf" else float(m.group(1))] = float(m.group(2))
    return b
a, b, p = buckets(sys.argv[1]), buckets(sys.argv[2]), float(sys.argv[3])
d = sorted((le, b[le] - a.get(le, 0)) for le in b)
tot = d[-1][1] if d else 0
if tot <= 0:
    print("")
else:
    for le, c in d:
        if c >= p / 100 * tot:
            print("%.0f" % (le * 1000) if le != float("inf") else "inf"); break
PY
}
counter() { { grep "^$2 " "$1" || true; } | awk '{print $2}' | head -1; }
sizes() {
  q -d $DB -F, -c "SELECT
    (SELECT sum(pg_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'taskevents' AND c.relname ~ '^outbox_[0-9]+$'),
    (SELECT sum(pg_indexes_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'taskevents' AND c.relname ~ '^outbox_[0-9]+$'),
    (SELECT coalesce(sum(n_dead_tup), 0) FROM pg_stat_user_tables WHERE schemaname = 'taskevents' AND relname ~ '^outbox_[0-9]+$'),
    (SELECT coalesce(sum(n_dead_tup), 0) FROM pg_stat_user_tables WHERE schemaname = 'taskevents'
        AND (relname ~ '^relay_(ticks|acks|leases)_[0-9]+$' OR relname = 'relay_consumers')),
    (SELECT pg_total_relation_size('public.tasks')),
    (SELECT coalesce(n_dead_tup, 0) FROM pg_stat_user_tables WHERE relid = 'public.tasks'::regclass),
    (SELECT (taskevents.relay_backlog('default')).pending)"
}
echo "phase,t_s,writes_per_s,events_per_s,lat_p50_ms,lat_p99_ms,outbox_heap_bytes,outbox_index_bytes,outbox_dead_tup,relay_state_dead_tup,tasks_bytes,tasks_dead_tup,backlog" >"$CSV"

phase() {  # phase NAME
  local name=$1 t0 now prev_m cur_m prev_pub cur_pub
  pgbench -n -f "$WORK/write.sql" -R "$SOAK_RATE" -T "$SOAK_SECONDS" -c 8 -j 2 -P "$SOAK_SAMPLE" $DB \
    >"$WORK/pgbench-$name.out" 2>"$WORK/pgbench-$name.progress" &
  BPID=$!
  t0=$(date +%s); prev_m=$WORK/m0; metrics >"$prev_m"; local prev_ms cur_ms; prev_ms=$(date +%s%N)
  while kill -0 "$BPID" 2>/dev/null; do
    sleep "$SOAK_SAMPLE"   # the sampling period
    now=$(( $(date +%s) - t0 )); cur_m=$WORK/m$now; metrics >"$cur_m"; cur_ms=$(date +%s%N)
    # writes/s: pgbench's own progress line for the last interval
    local tps; tps=$({ grep -o 'progress: [0-9.]* s, [0-9.]* tps' "$WORK/pgbench-$name.progress" || true; } | tail -1 | awk '{print $4}')
    prev_pub=$(counter "$prev_m" taskevents_relay_events_published_total); cur_pub=$(counter "$cur_m" taskevents_relay_events_published_total)
    local eps=""; [ -n "$prev_pub" ] && [ -n "$cur_pub" ] && eps=$(awk -v a="$prev_pub" -v b="$cur_pub" -v s="$(( (cur_ms - prev_ms) / 1000000 ))" 'BEGIN{printf "%.1f", (b-a)/(s/1000)}')
    echo "$name,$now,${tps:-},$eps,$(hist_pct "$prev_m" "$cur_m" 50),$(hist_pct "$prev_m" "$cur_m" 99),$(sizes)" >>"$CSV"
    tail -1 "$CSV" >&2
    prev_m=$cur_m; prev_ms=$cur_ms
  done
  wait "$BPID" || { cat "$WORK/pgbench-$name.out"; exit 1; }
  BPID=
  cp "$WORK/pgbench-$name.out" "$OUT/soak-$STAMP-pgbench-$name.txt"
}

log "soak: $SOAK_SECONDS s per phase, $SOAK_RATE writes/s, 8 clients, rotation $SOAK_ROTATION s"
phase plain
# held: REPEATABLE READ, snapshot taken by a SELECT, open for the whole phase
mkfifo "$WORK/hold.fifo"
psql -X -q -At -d $DB -f "$WORK/hold.fifo" >"$WORK/hold.out" 2>&1 &
exec {HOLD_FD}>"$WORK/hold.fifo"
echo "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 'snapshot', count(*) FROM tasks;" >&"$HOLD_FD"
until grep -q '^snapshot' "$WORK/hold.out"; do sleep 0.1; done
held_xmin=$(q -d $DB -c "SELECT backend_xmin FROM pg_stat_activity WHERE state = 'idle in transaction' AND backend_xmin IS NOT NULL LIMIT 1")
[ -n "$held_xmin" ] || { echo "the held transaction has no xmin" >&2; exit 1; }
phase held
still=$(q -d $DB -c "SELECT count(*) FROM pg_stat_activity WHERE backend_xmin = '$held_xmin'")
echo 'COMMIT;' >&"$HOLD_FD"; echo '\q' >&"$HOLD_FD"; exec {HOLD_FD}>&-; HOLD_FD=

python3 - "$CSV" "$MD" "$SOAK_SECONDS" "$SOAK_RATE" "$SOAK_ROTATION" "$held_xmin" "$still" <<'PY'
import csv, sys, statistics
rows = list(csv.DictReader(open(sys.argv[1])))
md, secs, rate, rot, xmin, still = sys.argv[2:8]
def f(r, k):
    try: return float(r[k])
    except (ValueError, KeyError, TypeError): return None
def col(ph, k, tail=False):
    rs = [r for r in rows if r["phase"] == ph]
    if tail: rs = rs[len(rs) // 2:]
    return [v for v in (f(r, k) for r in rs) if v is not None]
def med(v): return statistics.median(v) if v else float("nan")
tp = {ph: statistics.mean(col(ph, "writes_per_s")) if col(ph, "writes_per_s") else float("nan") for ph in ("plain", "held")}
ev = {ph: statistics.mean(col(ph, "events_per_s")) if col(ph, "events_per_s") else float("nan") for ph in ("plain", "held")}
size = lambda ph, tail=False: [a + b for a, b in zip(col(ph, "outbox_heap_bytes", tail), col(ph, "outbox_index_bytes", tail))]
steady = med(size("plain", True))
held_max = max(size("held")) if size("held") else float("nan")
r_tp = tp["held"] / tp["plain"]
r_size = held_max / steady if steady else float("nan")
ok_tp, ok_size = r_tp >= 0.9, r_size <= 2.0
out = []
out.append("# Soak result %s\n" % md.rsplit("soak-", 1)[1].split(".")[0])
out.append("%s s per phase, target %s writes/s (pgbench -R, 8 clients), rotation_period %s s; held phase: REPEATABLE READ snapshot with xmin %s (still held at the end: %s).\n" % (secs, rate, rot, xmin, "yes" if still != "0" else "NO"))
out.append("| measure | plain | held xmin | ratio / target | met |")
out.append("|---|---|---|---|---|")
out.append("| committed writes/s (mean of samples) | %.1f | %.1f | %.3f (>= 0.9) | %s |" % (tp["plain"], tp["held"], r_tp, "yes" if ok_tp else "**no**"))
out.append("| events delivered/s | %.1f | %.1f | %.3f | |" % (ev["plain"], ev["held"], ev["held"] / ev["plain"] if ev["plain"] else float("nan")))
for k, lab in (("lat_p50_ms", "delivery latency p50 ms (median / max of samples)"), ("lat_p99_ms", "delivery latency p99 ms (median / max of samples)")):
    pv, hv = col("plain", k), col("held", k)
    out.append("| %s | %s / %s | %s / %s | | |" % (lab, med(pv), max(pv) if pv else "-", med(hv), max(hv) if hv else "-"))
out.append("| outbox heap+index bytes: steady (plain, 2nd half median) / max | %d / %d | max %d | %.2f x steady (<= 2) | %s |" % (steady, max(size("plain")), held_max, r_size, "yes" if ok_size else "**no**"))
out.append("| outbox dead tuples max | %d | %d | | |" % (max(col("plain", "outbox_dead_tup") or [0]), max(col("held", "outbox_dead_tup") or [0])))
out.append("| relay tick/ack dead tuples max | %d | %d | | |" % (max(col("plain", "relay_state_dead_tup") or [0]), max(col("held", "relay_state_dead_tup") or [0])))
out.append("| tasks table bytes at end / dead tuples max | %d / %d | %d / %d | | |" % (col("plain", "tasks_bytes")[-1], max(col("plain", "tasks_dead_tup")), col("held", "tasks_bytes")[-1], max(col("held", "tasks_dead_tup"))))
out.append("| relay backlog max (events) | %d | %d | | |" % (max(col("plain", "backlog") or [0]), max(col("held", "backlog") or [0])))
out.append("\nSamples: %s\n" % sys.argv[1].rsplit("/", 1)[1])
open(md, "w").write("\n".join(out) + "\n")
print("\n".join(out))
sys.exit(0 if ok_tp and ok_size else 3)
PY
