#!/usr/bin/env bash
# Relay benchmarks against a real local broker (test/kafka/kafka.sh):
#  1. idle cost: the relay leads with nothing to send for IDLE_SECONDS (10):
#     transactions/s of the bench database (pg_stat_database.xact_commit),
#     CPU of the relay and of its PostgreSQL backends, the relay's RSS; then
#     commit -> consumer latency of the first event after that quiet time
#     (and after FIRST_SAMPLES - 1 more quiet times);
#  2. latency at a steady RATE (200) writes/s (pgbench -R), p50/p99/max:
#     statement start (the event's time) -> consumer, commit (pgbench's log)
#     -> consumer, the relay's own histogram over the same window and how
#     often the outbox was read sequentially in it;
#  3. the same at the highest rate the machine sustains: pgbench unthrottled
#     with MAX_CLIENTS (4) clients, relay, broker and consumer beside it;
#  4. drain a backlog of N (1,000,000) task events with `taskevents-relay
#     --once` (its default flags, or DRAIN_FLAGS), and have kcat produce the same N messages (same keys, same
#     values, and once more with the relay's content-type header too: the
#     same records) to the same broker in the same run, once before the
#     drain and once after it: events/s of each and the ratios to kcat's
#     means; the relay's peak RSS and where its time went.
# Usage: [BENCH_EXTRA_SQL=file.sql] [IDLE_SECONDS=10] [FIRST_SAMPLES=3] [MAX_CLIENTS=4]
#        [BASELINE_RELAY=/path/to/another/taskevents-relay] [DRAIN_FLAGS="..."]
#        bench/relay/run.sh [N] [RATE] [SECONDS]
# BASELINE_RELAY: a second binary (an older build) that also drains the same
# backlog in the same run, for a before/after ratio: after the first, or
# before it with BASELINE_FIRST=1 (alternate between runs: order matters).
# RELAY: the binary measured (default relay/taskevents-relay): run the
# script with RELAY=an older build for its idle and latency figures.
# Uses the PostgreSQL in PGHOST/PGPORT if one answers, else starts one.
set -euo pipefail
N=${1:-1000000}
RATE=${2:-200}
SECS=${3:-20}
IDLE_SECONDS=${IDLE_SECONDS:-10}
FIRST_SAMPLES=${FIRST_SAMPLES:-3}
MAX_CLIENTS=${MAX_CLIENTS:-4}
# the drain runs with the relay's defaults (--batch-size 1000,
# --max-inflight 20000) unless DRAIN_FLAGS says otherwise
read -ra drain_flags <<<"${DRAIN_FLAGS:-}"
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/../lib.sh"
RELAY=${RELAY:-$PGTE_ROOT/relay/taskevents-relay}
DB=relay_bench
# shellcheck disable=SC2317  # called by bench_exit (bench/lib.sh)
bench_cleanup() {
  [ -n "${RPID:-}" ] && kill -9 "$RPID" 2>/dev/null
  [ -n "${CPID:-}" ] && pkill -P "$CPID" 2>/dev/null
  dropdb --if-exists "$DB" >/dev/null 2>&1
}
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
TCK=$(getconf CLK_TCK)
# CPU ticks (user + system) of the given pids, summed
cpu_ticks() { local p s=0; for p in "$@"; do s=$(( s + $(awk '{print $14 + $15}' "/proc/$p/stat") )); done; echo $s; }
# psql on the maintenance database, so that reading the statistics of $DB
# is not itself a transaction in $DB
stats() { q -d postgres -c "$1"; }
lat_lines() { wc -l <"$WORK/lat.txt"; }
# sequential scans of the outbox partitions so far and the rows they read
# (the relay's reads are index scans; backends flush these counts about
# once a second)
outbox_seqscans() {
  q -d $DB -c "SELECT coalesce(sum(seq_scan), 0) || ' ' || coalesce(sum(seq_tup_read), 0)
                 FROM pg_stat_user_tables WHERE schemaname = 'taskevents' AND relname LIKE 'outbox\_%'"
}
# seqscan_report BEFORE AFTER: the scans between two outbox_seqscans
# (AFTER is taken when pgbench ends, before the benchmark counts the outbox
# itself)
seqscan_report() {
  local a b n r
  read -r a b <<<"$1"
  read -r n r <<<"$2"
  echo "  outbox read sequentially $((n - a)) times in the phase ($((r - b)) rows)"
}
# wait until the consumer has seen at least $1 messages (at most 30 s)
wait_lines() { local t=0; until [ "$(lat_lines)" -ge "$1" ] || [ $t -ge 300 ]; do sleep 0.1; t=$((t + 1)); done; }
outbox_count() { q -d $DB -c "SELECT count(*) FROM taskevents.outbox_events WHERE topic = 'tasks'"; }
# percentiles of the consumer's latencies from line $1 on
percentiles() {
  python3 - "$WORK/lat.txt" "$1" "$2" <<'PY'
import sys
v = sorted(float(x) for x in open(sys.argv[1]).read().splitlines()[int(sys.argv[2]):] if x.strip())
if not v:
    print("%s: no samples" % sys.argv[3]); sys.exit(1)
p = lambda q: v[min(len(v) - 1, int(q * len(v)))]
print("%s: %d samples, p50 %.1f ms, p99 %.1f ms, max %.1f ms (statement time -> consumer receive)"
      % (sys.argv[3], len(v), p(0.50), p(0.99), v[-1]))
PY
}

# commit -> consumer of the events of the pgbench run whose -l logs are
# $WORK/$1.* (client_id transaction_no latency_us script_no epoch us ...,
# written when the client saw the commit return), joined with the
# consumer's arrivals by the title's client id and transaction number
# commit_latency PREFIX [LABEL]: with LABEL, one line for a run of one
# transaction (matched by its time alone), its commit -> consumer and its
# statement start -> consumer
commit_latency() {
  python3 - "$WORK/arrivals.txt" "$WORK/$1" "${2:-}" "$KAFKA_STATE_DIR/logs/gc.log" <<'PY'
import sys, glob, re, datetime
if sys.argv[3]:
    runs = [l.split() for f in glob.glob(sys.argv[2] + ".*") for l in open(f)]
    c, n, lat, _, ep, us = runs[0][:6]
    end = int(ep) + int(us) / 1e6
    start = end - int(lat) / 1e6
    got = [(float(recv), float(t)) for recv, t, cl, k in (l.split() for l in open(sys.argv[1]))
           if int(cl) == int(c) and abs(start - float(t)) < 0.5]
    if not got:
        print("%s: no sample" % sys.argv[3]); sys.exit(0)
    recv, t = got[-1]
    print("%s: commit -> consumer %.1f ms (statement start -> consumer %.1f ms)"
          % (sys.argv[3], (recv - end) * 1000, (recv - t) * 1000))
    sys.exit(0)
done = {}
for f in glob.glob(sys.argv[2] + ".*"):
    for line in open(f):
        c, n, lat, _, ep, us = line.split()[:6]
        done[(int(c), int(n))] = (int(ep) + int(us) / 1e6, int(lat) / 1e6)
v = []
arrivals = [l.split() for l in open(sys.argv[1])]
def gap(cand):   # how far the matched transactions' starts are from the events' times
    g = sorted(abs(done[key][0] - done[key][1] - float(t))
               for _, t, c, k in arrivals[-200:] for key in [(int(c), int(k) - 1 + cand)] if key in done)
    return g[len(g) // 2] if len(g) > 100 else float("inf")
off = min((0, 1, -1), key=gap)   # transaction_no of the client's k-th transaction
# the broker's stop-the-world pauses (test/kafka/kafka.sh logs them):
# [end time] ... Pause ... N.NNNms
pauses = []
try:
    for l in open(sys.argv[4]):
        m = re.match(r"\[(\S+)\].* Pause .* ([0-9.]+)ms$", l.strip())
        if m:
            end = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
            pauses.append((end - float(m.group(2)) / 1000, end))
except OSError:
    pass
spans = []
for recv, t, c, k in arrivals:
    d = done.get((int(c), int(k) - 1 + off))
    if d and abs(d[0] - d[1] - float(t)) < 0.5:   # this run's transaction, not an earlier run's
        v.append((float(recv) - d[0]) * 1000)
        spans.append((d[0], float(recv)))
v.sort()
if not v:
    print("  commit -> consumer: no samples"); sys.exit(0)
p = lambda q: v[min(len(v) - 1, int(q * len(v)))]
print("  commit -> consumer (pgbench saw the commit return): %d samples, p50 %.1f ms, p99 %.1f ms, max %.1f ms"
      % (len(v), p(0.50), p(0.99), v[-1]))
if pauses and spans:
    lo, hi = min(a for a, _ in spans), max(b for _, b in spans)
    run = [(a, b) for a, b in pauses if b > lo and a < hi]
    hit = lambda a, b: any(s < b and e > a for s, e in run)
    slow = [(a, b) for a, b in spans if b - a > 0.010]
    clear = sorted((b - a) * 1000 for a, b in spans if not hit(a, b))
    print("  broker GC: %d stop-the-world pauses in the run (%.0f ms in all, longest %.0f ms); of the %d events over 10 ms, %d spanned one;"
          " the %d that spanned none: p99 %.1f ms"
          % (len(run), sum(e - s for s, e in run) * 1000, max([(e - s) * 1000 for s, e in run] or [0]),
             len(slow), sum(1 for a, b in slow if hit(a, b)), len(clear),
             clear[min(len(clear) - 1, int(0.99 * len(clear)))] if clear else 0))
PY
}

# the relay's own histogram (write -> delivery report) since hist_mark
hist_mark() { curl -s "http://127.0.0.1:$MPORT/metrics" | grep '^taskevents_relay_.*_latency_seconds_bucket' >"$WORK/hist0"; }
relay_hist() {
  curl -s "http://127.0.0.1:$MPORT/metrics" | grep '^taskevents_relay_.*_latency_seconds_bucket' >"$WORK/hist"
  python3 - "$WORK/hist" "$WORK/hist0" <<'PY'
import sys, re
def load(f, name):
    return [(float(m.group(1)) if m.group(1) != "+Inf" else float("inf"), int(m.group(2)))
            for m in (re.search(name + r'_bucket\{le="([^"]+)"} (\d+)', l) for l in open(f)) if m]
for name, what in (("delivery", "write -> delivery report"), ("produce", "handed to librdkafka -> delivery report")):
    full = "taskevents_relay_%s_latency_seconds" % name
    b = [(le, c - c0) for (le, c), (_, c0) in zip(load(sys.argv[1], full), load(sys.argv[2], full))]
    total = b[-1][1] if b else 0
    if total == 0:
        continue
    def q(f):
        for le, c in b:
            if c >= f * total:
                return le
    print("  relay histogram (%s): %d events, p50 <= %gs, p99 <= %gs, %.1f%% under 10 ms, %.1f%% under 50 ms"
          % (what, total, q(0.5), q(0.99), 100.0 * dict(b)[0.01] / total, 100.0 * dict(b)[0.05] / total))
PY
}

# a server of its own is started preloaded, as deployed (the relay is woken
# by commits); a running one is used as it is
export PGTE_PGCONF="shared_preload_libraries = 'pg_taskevents'
${PGTE_PGCONF:-}"
ensure_pg
echo "server: shared_preload_libraries = '$(q -d postgres -c "SHOW shared_preload_libraries")'; relay: $RELAY"
fresh_db $DB
q -d $DB -c "ALTER DATABASE $DB SET taskevents.rotation_period = 86400"
make_tasks_table $DB
# BENCH_EXTRA_SQL: run in the bench database first (e.g. CREATE OR REPLACE of a function to try)
[ -n "${BENCH_EXTRA_SQL:-}" ] && q -d $DB -f "$BENCH_EXTRA_SQL" >/dev/null
bench_kafka_start "${BENCH_KAFKA_PORT:-19692}" tasks:3 kcat:3
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at start; $(uname -r)"

# latency first, on a fresh broker; the consumer timestamps arrival
MPORT=$((KAFKA_PORT + 5))
"$RELAY" --db "dbname=$DB" --brokers "$KAFKA_BROKER" --metrics-addr 127.0.0.1:$MPORT 2>"$WORK/relay2.log" &
RPID=$!
kcat -C -b "$KAFKA_BROKER" -t tasks -o end -u -q -X fetch.wait.max.ms=5 -f '%s\n' 2>/dev/null | python3 -u -c '
import sys, time, json, datetime
out = open(sys.argv[1], "w")
arr = open(sys.argv[2], "w")
for line in iter(sys.stdin.readline, ""):
    now = time.time()
    try:
        ev = json.loads(line)
        t = datetime.datetime.fromisoformat(ev["time"]).timestamp()
    except Exception:
        continue
    out.write("%.3f\n" % ((now - t) * 1000)); out.flush()
    title = (ev.get("data") or {}).get("title") or ""
    if title.startswith("latency "):
        arr.write("%.6f %.6f %s\n" % (now, t, title[8:])); arr.flush()
' "$WORK/lat.txt" "$WORK/arrivals.txt" &
CPID=$!
sleep 2
# warm-up: the producer's first message to a topic waits for metadata and
# the idempotent producer id; measure the steady state after it
# Each task's title names its pgbench client and the client's transaction
# number, so that the consumer's arrival can be joined with the time
# pgbench saw the transaction's commit return (its -l log): commit ->
# consumer, next to statement start -> consumer (the event's time).
printf '%s\n' '\set k :k + 1' \
  "INSERT INTO tasks (user_id, title) VALUES ('user' || (random() * 1000)::int, 'latency ' || :client_id || ' ' || :k);" >"$WORK/ins.sql"
pgbench -n -f "$WORK/ins.sql" -D k=0 -R 50 -T 3 -c 1 $DB >/dev/null 2>&1
sleep 3

# 1. idle cost
BPIDS=$(stats "SELECT string_agg(pid::text, ' ') FROM pg_stat_activity WHERE datname = '$DB' AND application_name LIKE 'taskevents-relay%'")
x0=$(stats "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = '$DB'")
read -ra bpids <<<"$BPIDS"
r0=$(cpu_ticks "$RPID"); b0=$(cpu_ticks "${bpids[@]}"); t0=$(now_ms)
sleep "$IDLE_SECONDS"
x1=$(stats "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = '$DB'")
r1=$(cpu_ticks "$RPID"); b1=$(cpu_ticks "${bpids[@]}"); t1=$(now_ms)
rss_idle=$(awk '/^VmRSS/ {print $2}' "/proc/$RPID/status")
awk -v x=$((x1 - x0)) -v ms=$((t1 - t0)) -v r=$((r1 - r0)) -v b=$((b1 - b0)) -v tck="$TCK" -v nb="$(wc -w <<<"$BPIDS")" -v rss="$rss_idle" 'BEGIN {
  s = ms / 1000.0
  printf "idle %.1f s: %.1f transactions/s in the bench database; CPU: relay %.2f %%, its %d backends %.2f %% of a core; relay RSS %.1f MB\n",
    s, x / s, 100.0 * r / tck / s, nb, 100.0 * b / tck / s, rss / 1024.0 }'
# commit -> consumer of the first event after each quiet time: a
# one-transaction pgbench run (a new session, like an application's first
# write after a pause), FIRST_SAMPLES (3) times, IDLE_SECONDS apart; the
# first sample follows the idle-cost window above
for i in $(seq 1 "$FIRST_SAMPLES"); do
  [ "$i" -gt 1 ] && sleep "$IDLE_SECONDS"
  skip=$(lat_lines)
  pgbench -n -f "$WORK/ins.sql" -D k=0 -l --log-prefix="$WORK/first-$i" -t 1 -c 1 $DB >"$WORK/pgbench-first-$i.log" 2>&1
  wait_lines $((skip + 1))
  commit_latency "first-$i" "first event after ${IDLE_SECONDS} s idle ($i of $FIRST_SAMPLES)"
done

# 2. steady RATE
skip=$(lat_lines); oc=$(outbox_count)
hist_mark
seq0=$(outbox_seqscans)
pgbench -n -f "$WORK/ins.sql" -D k=0 -l --log-prefix="$WORK/rate" -R "$RATE" -T "$SECS" -c 2 -j 2 $DB >"$WORK/pgbench.log" 2>&1
seq1=$(outbox_seqscans)
wait_lines $((skip + $(outbox_count) - oc))
percentiles "$skip" "latency at $RATE writes/s"
commit_latency rate
relay_hist
seqscan_report "$seq0" "$seq1"

# 3. as fast as the machine goes with everything running
skip=$(lat_lines); oc=$(outbox_count)
hist_mark
seq0=$(outbox_seqscans)
pgbench -n -f "$WORK/ins.sql" -D k=0 -l --log-prefix="$WORK/max" -T "$SECS" -c "$MAX_CLIENTS" -j 2 $DB >"$WORK/pgbench-max.log" 2>&1
seq1=$(outbox_seqscans)
wait_lines $((skip + $(outbox_count) - oc))
rate=$(grep -o 'tps = [0-9.]*' "$WORK/pgbench-max.log" | head -1 | cut -d' ' -f3)
percentiles "$skip" "latency at the highest rate, ${rate%.*} writes/s ($MAX_CLIENTS unthrottled clients)"
commit_latency max
relay_hist
seqscan_report "$seq0" "$seq1"
kill $CPID 2>/dev/null || true; pkill -P $CPID 2>/dev/null || true
kill -TERM $RPID; wait $RPID || true
RPID=

# 4. drain
mark=$(q -d $DB -c "SELECT coalesce(max(id), 0) FROM taskevents.outbox")
echo "writing $N events into the outbox..."
t0=$(now_ms)
bench_write_tasks $DB "$N"
echo "  $(( N * 1000 / ($(now_ms) - t0 + 1) )) events/s written (trigger + outbox)"
# autovacuum of the new rows and a checkpoint of their WAL now, not during
# one of the timed runs below (either fell on a drain or a kcat run by
# chance and moved the ratio by a third from one run to the next)
q -d $DB -c "VACUUM ANALYZE taskevents.outbox" -c "CHECKPOINT" >/dev/null
q -d $DB -c "COPY (SELECT partition_key || E'\t' || event::text FROM taskevents.outbox_events WHERE id > $mark ORDER BY id) TO STDOUT" >"$WORK/messages.tsv"
bytes=$(stat -c %s "$WORK/messages.tsv")
echo "  average message $(( bytes / N )) bytes"

# BASELINE_RELAY drain: a new consumer name starts from the outbox's first event
baseline_drain() {
  # a new consumer name: it starts from the outbox's first event
  total=$(q -d $DB -c "SELECT count(*) FROM taskevents.outbox_events")
  t0=$(now_ms)
  /usr/bin/time -f '%M' -o "$WORK/rss-base" "$BASELINE_RELAY" --db "dbname=$DB" --brokers "$KAFKA_BROKER" --metrics-addr 0 \
    --once --consumer baseline ${drain_flags[@]+"${drain_flags[@]}"} 2>"$WORK/relay-base.log"
  base_ms=$(( $(now_ms) - t0 ))
  published=$(grep -o '"published":[0-9]*' "$WORK/relay-base.log" | cut -d: -f2)
  [ "${published:-0}" -ge "$total" ] || { echo "baseline published ${published:-0} of $total"; tail "$WORK/relay-base.log"; exit 1; }
  base_rate=$(( published * 1000 / base_ms ))
  echo "baseline relay:     $published events in $base_ms ms = $base_rate events/s (peak RSS $(( $(cat "$WORK/rss-base") / 1024 )) MB)"
}

# kcat: the same messages, same broker, librdkafka defaults plus
# idempotence; run before the drains and again after them, because its own
# rate moves from run to run (380,000 to 475,000 msg/s on the same VM): the
# ratios are to the mean of the two.  A first kcat run warms the broker up
# and is not counted: a cold broker took 352,733 msg/s and the same broker
# 490,918 msg/s after the drains, in one run.
#
# Two kcat peers.  "same records": with the header the relay puts on every
# record in structured mode (the CloudEvents Kafka binding's content-type),
# so that kcat produces exactly the records the relay does.  "no headers":
# key and value only, the peer of the runs before 3 Dec.  The header costs
# kcat 10 % of its rate in the first run with both (370,000-378,000 against
# 396,000-433,000 msg/s).
# (With DRAIN_FLAGS in binary mode the relay's records carry ce_* headers
# instead, and neither peer is the same records.)
CT_HEADER='content-type=application/cloudevents+json; charset=UTF-8'
kcat_run() {
  local t0 ms label=$1
  shift
  t0=$(now_ms)
  kcat -P -b "$KAFKA_BROKER" -t kcat -K $'\t' -X enable.idempotence=true -X linger.ms=5 "$@" -l "$WORK/messages.tsv"
  ms=$(( $(now_ms) - t0 ))
  echo "kcat -P ($label):    $N messages in $ms ms = $(( N * 1000 / ms )) msg/s" >&2
  echo $(( N * 1000 / ms ))
}
kcat_run "warm-up, not counted" >/dev/null
kcat_first=$(kcat_run "no headers, first")
kcath_first=$(kcat_run "same records, first" -H "$CT_HEADER")

[ -n "${BASELINE_RELAY:-}" ] && [ "${BASELINE_FIRST:-0}" = 1 ] && baseline_drain
t0=$(now_ms)
/usr/bin/time -f '%M' -o "$WORK/rss" "$RELAY" --db "dbname=$DB" --brokers "$KAFKA_BROKER" --metrics-addr 0 --once \
  ${drain_flags[@]+"${drain_flags[@]}"} 2>"$WORK/relay.log"
relay_ms=$(( $(now_ms) - t0 ))
relay_rate=$(( N * 1000 / relay_ms ))
published=$(grep -o '"published":[0-9]*' "$WORK/relay.log" | cut -d: -f2)
[ "${published:-0}" -ge "$N" ] || { echo "relay published ${published:-0} of $N"; tail "$WORK/relay.log"; exit 1; }
# At least once: a relay that lost its lease (starved past --lease-ttl-ms on
# a busy machine) re-sends the page it had not acknowledged.  Say so.
resent=$((published - N))
[ $resent -eq 0 ] || echo "  note: $resent events re-sent after $(grep -c '"leadership lost"' "$WORK/relay.log") lease loss(es): $(grep -m1 '"leadership lost"' "$WORK/relay.log")"
echo "taskevents-relay:   $N events in $relay_ms ms = $relay_rate events/s (peak RSS $(( $(cat "$WORK/rss") / 1024 )) MB)"
grep '"process down"' "$WORK/relay.log" | python3 -c '
import json, sys
d = json.loads(sys.stdin.read())
if "db_wait_ms" in d:
    print("  the relay waited %d ms for PostgreSQL and %d ms with nothing to do (delivery reports)"
          % (d["db_wait_ms"], d["idle_wait_ms"]))'
[ -n "${BASELINE_RELAY:-}" ] && [ "${BASELINE_FIRST:-0}" != 1 ] && baseline_drain
kcat_second=$(kcat_run "no headers, after")
kcath_second=$(kcat_run "same records, after" -H "$CT_HEADER")
kcat_rate=$(( (kcat_first + kcat_second) / 2 ))
kcath_rate=$(( (kcath_first + kcath_second) / 2 ))
ratio() { awk "BEGIN { printf \"%.2f\", $1 / $2 }"; }
echo "ratio relay/kcat, same records: $(ratio "$relay_rate" "$kcath_rate") (to the mean of the two kcat runs, $kcath_rate msg/s; $(ratio "$relay_rate" "$kcath_first") to the first, $(ratio "$relay_rate" "$kcath_second") to the second)"
echo "ratio relay/kcat, no headers:   $(ratio "$relay_rate" "$kcat_rate") (to the mean of the two kcat runs, $kcat_rate msg/s; $(ratio "$relay_rate" "$kcat_first") to the first, $(ratio "$relay_rate" "$kcat_second") to the second)"
[ -n "${BASELINE_RELAY:-}" ] && echo "ratio baseline/kcat: same records $(ratio "$base_rate" "$kcath_rate"), no headers $(ratio "$base_rate" "$kcat_rate")"
exit 0
