#!/usr/bin/env bash
# Relay benchmarks against a real local broker (test/kafka/kafka.sh):
#  1. drain a backlog of N (default 1,000,000) task events with
#     `taskevents-relay --once`, and have kcat produce the same N messages
#     (same keys, same values) to the same broker in the same run: events/s
#     of each and their ratio; the relay's peak RSS;
#  2. commit → consumer latency at a steady rate (pgbench -R), p50/p99.
# Usage: [BENCH_EXTRA_SQL=file.sql] bench/relay/run.sh [N] [RATE] [SECONDS]
# Uses the PostgreSQL in PGHOST/PGPORT if one answers, else starts one.
set -euo pipefail
N=${1:-1000000}
RATE=${2:-200}
SECS=${3:-20}
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/../../test/lib/pg.sh"
export KAFKA_PORT=${BENCH_KAFKA_PORT:-19692} KAFKA_CONTROLLER_PORT=$(( ${BENCH_KAFKA_PORT:-19692} + 1 ))
export KAFKA_STATE_DIR=${TMPDIR:-/tmp}/pgte-bench-kafka-$KAFKA_PORT
BROKER=127.0.0.1:$KAFKA_PORT
RELAY=$PGTE_ROOT/relay/taskevents-relay
DB=relay_bench
WORK=$(mktemp -d)
cleanup() { set +e; [ -n "${RPID:-}" ] && kill -9 "$RPID" 2>/dev/null; [ -n "${CPID:-}" ] && pkill -P "$CPID" 2>/dev/null; "$PGTE_ROOT/test/kafka/kafka.sh" stop >/dev/null 2>&1 || true; dropdb --if-exists $DB >/dev/null 2>&1 || true; release_pg; rm -rf "$WORK"; }
trap cleanup EXIT
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

ensure_pg
fresh_db $DB
q -d $DB -c "ALTER DATABASE $DB SET taskevents.rotation_period = 86400"
make_tasks_table $DB
# BENCH_EXTRA_SQL: run in the bench database first (e.g. CREATE OR REPLACE of a function to try)
[ -n "${BENCH_EXTRA_SQL:-}" ] && q -d $DB -f "$BENCH_EXTRA_SQL" >/dev/null
"$PGTE_ROOT/test/kafka/kafka.sh" stop >/dev/null 2>&1 || true   # our own state dir: a previous run may still be stopping
"$PGTE_ROOT/test/kafka/kafka.sh" start >"$WORK/kafka.log" 2>&1 || { cat "$WORK/kafka.log"; exit 1; }
"$PGTE_ROOT/test/kafka/kafka.sh" create-topics tasks:3 kcat:3 >>"$WORK/kafka.log" 2>&1

# latency first, on a fresh broker: steady RATE writes/s for SECS seconds,
# the consumer timestamps arrival
MPORT=$((KAFKA_PORT + 5))
"$RELAY" --db "dbname=$DB" --brokers "$BROKER" --metrics-addr 127.0.0.1:$MPORT 2>"$WORK/relay2.log" &
RPID=$!
sleep 2
kcat -C -b "$BROKER" -t tasks -o end -u -q -X fetch.wait.max.ms=5 -f '%s\n' 2>/dev/null | python3 -u -c '
import sys, time, json, datetime
out = open(sys.argv[1], "w")
for line in iter(sys.stdin.readline, ""):
    now = time.time()
    try:
        ev = json.loads(line)
        t = datetime.datetime.fromisoformat(ev["time"]).timestamp()
    except Exception:
        continue
    out.write("%.3f\n" % ((now - t) * 1000)); out.flush()
' "$WORK/lat.txt" &
CPID=$!
sleep 2
# warm-up: the producer's first message to a topic waits for metadata and
# the idempotent producer id; measure the steady state after it
echo "INSERT INTO tasks (user_id, title) VALUES ('user' || (random() * 1000)::int, 'latency');" >"$WORK/ins.sql"
pgbench -n -f "$WORK/ins.sql" -R 50 -T 3 -c 1 $DB >/dev/null 2>&1
sleep 1
skip=$(wc -l <"$WORK/lat.txt")
curl -s "http://127.0.0.1:$MPORT/metrics" | grep '^taskevents_relay_delivery_latency_seconds_bucket' >"$WORK/hist0"
pgbench -n -f "$WORK/ins.sql" -R "$RATE" -T "$SECS" -c 2 -j 2 $DB >"$WORK/pgbench.log" 2>&1
sleep 2
curl -s "http://127.0.0.1:$MPORT/metrics" | grep '^taskevents_relay_delivery_latency_seconds_bucket' >"$WORK/hist"
kill $CPID 2>/dev/null || true; pkill -P $CPID 2>/dev/null || true
kill -TERM $RPID; wait $RPID || true
python3 - "$WORK/lat.txt" "$RATE" "$skip" <<'PY'
import sys
v = sorted(float(x) for x in open(sys.argv[1]).read().splitlines()[int(sys.argv[3]):] if x.strip())
if not v:
    print("latency: no samples"); sys.exit(1)
p = lambda q: v[min(len(v) - 1, int(q * len(v)))]
print("latency at %s writes/s: %d samples, p50 %.1f ms, p99 %.1f ms, max %.1f ms (statement time -> consumer receive)"
      % (sys.argv[2], len(v), p(0.50), p(0.99), v[-1]))
PY
python3 - "$WORK/hist" "$WORK/hist0" <<'PY'
import sys, re
def load(f):
    return [(float(m.group(1)) if m.group(1) != "+Inf" else float("inf"), int(m.group(2)))
            for m in (re.search(r'le="([^"]+)"} (\d+)', l) for l in open(f)) if m]
b = [(le, c - c0) for (le, c), (_, c0) in zip(load(sys.argv[1]), load(sys.argv[2]))]
total = b[-1][1]
def q(f):
    for le, c in b:
        if c >= f * total:
            return le
print("relay histogram (write -> delivery report): %d events, p50 <= %gs, p99 <= %gs, %.1f%% under 50 ms"
      % (total, q(0.5), q(0.99), 100.0 * dict(b)[0.05] / total))
PY

mark=$(q -d $DB -c "SELECT coalesce(max(id), 0) FROM taskevents.outbox")
echo "writing $N events into the outbox..."
t0=$(now_ms)
left=$N
while [ $left -gt 0 ]; do
  n=$(( left < 100000 ? left : 100000 ))
  q -d $DB -c "INSERT INTO tasks (user_id, title, description) SELECT 'user' || (g % 1000), 'task ' || g, 'benchmark task' FROM generate_series(1, $n) g"
  left=$((left - n))
done
echo "  $(( N * 1000 / ($(now_ms) - t0 + 1) )) events/s written (trigger + outbox)"
q -d $DB -c "COPY (SELECT partition_key || E'\t' || event::text FROM taskevents.outbox_events WHERE id > $mark ORDER BY id) TO STDOUT" >"$WORK/messages.tsv"
bytes=$(stat -c %s "$WORK/messages.tsv")
echo "  average message $(( bytes / N )) bytes"

# kcat: the same messages, same broker, librdkafka defaults plus idempotence
t0=$(now_ms)
kcat -P -b "$BROKER" -t kcat -K $'\t' -X enable.idempotence=true -X linger.ms=5 -l "$WORK/messages.tsv"
kcat_ms=$(( $(now_ms) - t0 ))
kcat_rate=$(( N * 1000 / kcat_ms ))
echo "kcat -P:            $N messages in $kcat_ms ms = $kcat_rate msg/s"

t0=$(now_ms)
/usr/bin/time -f '%M' -o "$WORK/rss" "$RELAY" --db "dbname=$DB" --brokers "$BROKER" --metrics-addr 0 --once \
  --batch-size 5000 --max-inflight 50000 2>"$WORK/relay.log"
relay_ms=$(( $(now_ms) - t0 ))
relay_rate=$(( N * 1000 / relay_ms ))
published=$(grep -o '"published":[0-9]*' "$WORK/relay.log" | cut -d: -f2)
[ "${published:-0}" -ge "$N" ] || { echo "relay published ${published:-0} of $N"; tail "$WORK/relay.log"; exit 1; }
# At least once: a relay that lost its lease (starved past --lease-ttl-ms on
# a busy machine) re-sends the page it had not acknowledged.  Say so.
resent=$((published - N))
[ $resent -eq 0 ] || echo "  note: $resent events re-sent after $(grep -c '"leadership lost"' "$WORK/relay.log") lease loss(es): $(grep -m1 '"leadership lost"' "$WORK/relay.log")"
echo "taskevents-relay:   $N events in $relay_ms ms = $relay_rate events/s (peak RSS $(( $(cat "$WORK/rss") / 1024 )) MB)"
echo "ratio relay/kcat:   $(awk "BEGIN { printf \"%.2f\", $relay_rate / $kcat_rate }")"

