#!/usr/bin/env bash
# The database side of a drain alone: N task events in the outbox, read
# page by page as the relay reads them (bench/relay/fetchpages.c, libpq, no
# Kafka), for each page size: relay_fetch_page() in binary chunks (the
# relay's call) and relay_fetch() rows in text (0.1.0's call), alternating,
# three passes each; prints each pass and the best of each, and the ratio.
#
# Usage: bench/relay/fetch.sh [N=300000] [PAGE_SIZES="100 250 1000"]
# Environment: BENCH_PGPORT (54344), SKIP_BUILD, PG_CONFIG, MODES ("page
# rows"; "rows" alone for a build without relay_fetch_page(), such as
# 0.1.0 or fd412ff, installed in PG_CONFIG's PostgreSQL with SKIP_BUILD).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
n=${1:-300000}
sizes=${2:-"100 250 1000"}
bench_pg_start "${BENCH_PGPORT:-54344}"
cc -O2 -Wall -Wextra -Werror -o "$WORK/fetchpages" "$here/fetchpages.c" -I"$("${PG_CONFIG:-pg_config}" --includedir)" \
  -L"$("${PG_CONFIG:-pg_config}" --libdir)" -lpq
createdb fetchbench
q -d fetchbench -c "CREATE EXTENSION pg_taskevents"
make_tasks_table fetchbench >/dev/null
bench_write_tasks fetchbench "$n"
q -d fetchbench -c "VACUUM ANALYZE taskevents.outbox" \
  -c "SELECT taskevents.relay_lease('fetchbench', 'bench', 0)" -c "SELECT taskevents.relay_tick('fetchbench', 1)" >/dev/null
conn="host=$PGHOST port=$PGPORT dbname=fetchbench user=${PGUSER:-postgres}"
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); $n events, $(q -d fetchbench -c \
  "SELECT round(avg(length(event::text))) FROM taskevents.outbox_events") bytes each on average"
for size in $sizes; do
  for _ in 1 2 3; do
    for mode in ${MODES:-page rows}; do
      "$WORK/fetchpages" "$conn" "$mode" "$size" 1 | tee -a "$WORK/passes"
    done
  done
  best() { grep "^$1 $size:" "$WORK/passes" | awk '{print $8}' | sort -n | head -1; }
  p=$(best page) r=$(best rows)
  if [ -n "$p" ] && [ -n "$r" ]; then
    echo "page size $size: best of 3, relay_fetch_page ${p} s, relay_fetch rows ${r} s: page / rows time $(awk -v a="$p" -v b="$r" 'BEGIN { printf "%.2f", a / b }')"
  else
    echo "page size $size: best of 3: ${p:+relay_fetch_page $p s}${r:+relay_fetch rows $r s}"
  fi
done
