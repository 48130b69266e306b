#!/usr/bin/env bash
# Drains alone, variants in rounds: N task events in the outbox of a
# throwaway PostgreSQL, a broker of its own, then ROUNDS rounds of: kcat -P
# of the same records, and one `taskevents-relay --once` drain per variant
# (each under a new consumer name, so each drains all N from the start).
# Each run prints events/s and the CPU it cost: the relay (user + system),
# its PostgreSQL backends (the postmaster's reaped children, read from
# /proc: the relay's backends are the only ones that exit during a drain)
# and the broker's JVM; at the end each variant's mean and its ratio to
# kcat's mean.  A variant is a command line: the relay binary and its
# flags, so two builds or two sets of -X properties compare in one run.
#
# Usage: bench/relay/drains.sh [N=300000] [ROUNDS=3] [VARIANT ...]
#        (default VARIANT: relay/taskevents-relay of this checkout)
# Environment: BENCH_PGPORT (54346), BENCH_KAFKA_PORT (19702), SKIP_BUILD,
# PG_CONFIG.
#
#   bench/relay/drains.sh 300000 3 relay/taskevents-relay \
#     "relay/taskevents-relay -X linger.ms=1 -X max.in.flight.requests.per.connection=5"
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
n=${1:-300000}
rounds=${2:-3}
shift $(( $# < 2 ? $# : 2 ))
variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=("$PGTE_ROOT/relay/taskevents-relay")
bench_pg_start "${BENCH_PGPORT:-54346}"
[ -n "${SKIP_BUILD:-}" ] || make -s -C "$PGTE_ROOT/relay" >/dev/null
createdb drainbench
q -d drainbench -c "CREATE EXTENSION pg_taskevents" >/dev/null
make_tasks_table drainbench >/dev/null
bench_kafka_start "${BENCH_KAFKA_PORT:-19702}" tasks:3 kcat:3
bench_write_tasks drainbench "$n" >/dev/null
q -d drainbench -c "VACUUM ANALYZE taskevents.outbox" -c "CHECKPOINT" >/dev/null
q -d drainbench -c "COPY (SELECT partition_key || E'\t' || event::text FROM taskevents.outbox_events ORDER BY id) TO STDOUT" \
  >"$WORK/messages.tsv"
postmaster=$(head -1 "$PGTE_PGSTATE/data/postmaster.pid")
broker=$(cat "$KAFKA_STATE_DIR/kafka.pid")
# CPU seconds so far: the postmaster's reaped children (cutime + cstime),
# the broker's JVM (utime + stime)
# (proc_cpu PID I: fields I and I + 1 of /proc/PID/stat after the name)
proc_cpu() { awk -v t="$(getconf CLK_TCK)" -v i="$2" '{ sub(/.*\) /, ""); split($0, f, " "); print (f[i] + f[i + 1]) / t }' "/proc/$1/stat"; }
pg_cpu() { proc_cpu "$postmaster" 14; }
jvm_cpu() { proc_cpu "$broker" 12; }
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); $n events, $(( $(stat -c %s "$WORK/messages.tsv") / n )) bytes each on average"

run() {   # run LABEL CMD...: one timed run, its line into $WORK/runs
  local label=$1 t0 ms p0 j0; shift
  p0=$(pg_cpu); j0=$(jvm_cpu); t0=$(date +%s%N)
  /usr/bin/time -f '%U %S' -o "$WORK/time" "$@" >/dev/null 2>"$WORK/out" || { tail -3 "$WORK/out"; die "$label failed"; }
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  # the relay's backends count once the postmaster has reaped them
  while pgrep -P "$postmaster" -f "postgres: .* drainbench " >/dev/null; do sleep 0.05; done
  awk -v l="$label" -v n="$n" -v ms="$ms" -v p0="$p0" -v p1="$(pg_cpu)" -v j0="$j0" -v j1="$(jvm_cpu)" \
    '{ printf "%s\t%d\t%.2f\t%.2f\t%.2f\n", l, n * 1000 / ms, $1 + $2, p1 - p0, j1 - j0 }' "$WORK/time" | tee -a "$WORK/runs" |
    awk -F'\t' '{ printf "%-70s %7d events/s; CPU s: own %.2f, PostgreSQL %.2f, broker %.2f\n", $1, $2, $3, $4, $5 }'
}
kcat_run() {
  run kcat kcat -P -b "$KAFKA_BROKER" -t kcat -K $'\t' -H "content-type=application/cloudevents+json; charset=UTF-8" \
    -X enable.idempotence=true -X linger.ms=5 -l "$WORK/messages.tsv"
}
kcat_run >/dev/null   # warms the broker up; not counted
: >"$WORK/runs"
c=0
for r in $(seq "$rounds"); do
  kcat_run
  for v in "${variants[@]}"; do
    c=$((c + 1))
    read -ra cmd <<<"$v"
    run "$v" "${cmd[@]}" --db "dbname=drainbench" --brokers "$KAFKA_BROKER" --metrics-addr 0 --once --consumer "c$c"
  done
  echo "(round $r of $rounds)"
done
echo
awk -F'\t' '{ n[$1]++; r[$1] += $2; o[$1] += $3; p[$1] += $4; j[$1] += $5; if (!($1 in seen)) { seen[$1] = 1; order[++k] = $1 } }
  END { for (i = 1; i <= k; i++) { v = order[i]
          printf "%-70s mean %7d events/s (%.2f x kcat); CPU s per drain: own %.2f, PostgreSQL %.2f, broker %.2f\n",
            v, r[v] / n[v], (r[v] / n[v]) / (r["kcat"] / n["kcat"]), o[v] / n[v], p[v] / n[v], j[v] / n[v] } }' "$WORK/runs"
