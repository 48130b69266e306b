# shellcheck shell=bash
# Start-up shared by the benchmarks (bench/*/run.sh).  Source it first
# (source "$(dirname "$0")/../lib.sh"); it brings test/lib/pg.sh (q,
# make_tasks_table, ensure_pg, pg_start, ...) and test/lib/kafka.sh
# (kafka_use, kafka_start, KAFKA_BROKER, ...), sets $here (the benchmark's
# own folder), makes a work directory $WORK and, on exit, runs the
# benchmark's own bench_cleanup (if it defines one), stops the broker and
# the PostgreSQL it started and removes $WORK.
#
#   bench_pg_start PORT [CONF]       a throwaway PostgreSQL for the run
#   bench_db PORT SETUP [CONF]       the same, with a database bench made by SETUP
#   bench_kafka_start PORT [TOPICS]  a broker of its own, fresh storage
#   bench_write_tasks DB N [DESC]    N task events in the outbox of DB
#   bench_mean_tps, bench_tps_ratio  the summary of pgbench rounds

source "$(dirname "${BASH_SOURCE[0]}")/../test/lib/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../test/lib/kafka.sh"

# shellcheck disable=SC2034  # read by the benchmarks
here=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pgte-bench.XXXXXX")
BENCH_KAFKA=0

bench_exit() {
  local st=$?
  set +e
  if declare -F bench_cleanup >/dev/null; then bench_cleanup; fi
  [ "$BENCH_KAFKA" = 1 ] && kafka_stop >/dev/null 2>&1
  release_pg
  rm -rf "$WORK"
  exit $st
}
trap bench_exit EXIT

# bench_pg_start PORT [CONF]: install what is missing, build and install
# (unless SKIP_BUILD is set), then start a throwaway PostgreSQL on PORT with
# the write benchmarks' settings (shared_buffers 512MB, max_wal_size 4GB,
# synchronous_commit from SYNC, default on) followed by the postgresql.conf
# lines CONF (a later line wins).
bench_pg_start() {
  export PGTE_PGPORT=$1
  export PGTE_PGSTATE=${TMPDIR:-/tmp}/pgte-bench-$PGTE_PGPORT
  export PGTE_PGCONF="shared_buffers = '512MB'
max_wal_size = '4GB'
synchronous_commit = ${SYNC:-on}
shared_preload_libraries = 'pg_taskevents'
${2:-}"
  ensure_packages
  [ -n "${SKIP_BUILD:-}" ] || build_install
  pg_start
  PGTE_STARTED_PG=1
}

# bench_db PORT SETUP [CONF]: bench_pg_start PORT [CONF], then a database
# bench, set up by the psql script SETUP (its output discarded).
bench_db() {
  bench_pg_start "$1" "${3:-}"
  createdb bench
  q -d bench -f "$2" >/dev/null
}

# bench_kafka_start PORT [TOPIC[:PARTITIONS] ...]: a broker of the
# benchmark's own on PORT (controller PORT + 1), fresh storage, with the
# given topics (default: tasks:3 reminders:3 tasks-dlq:1 reminders-dlq:1).
bench_kafka_start() {
  kafka_use "$1"; shift
  kafka_stop >/dev/null 2>&1 || true   # a previous run may still be stopping
  BENCH_KAFKA=1
  kafka_start >"$WORK/kafka.log" 2>&1 || { cat "$WORK/kafka.log"; die "Kafka did not start"; }
  kafka_create_topics "$@" >>"$WORK/kafka.log" 2>&1 || { cat "$WORK/kafka.log"; die "topics not created"; }
}

# bench_write_tasks DB N [DESCRIPTION]: insert N tasks into DB's attached
# table tasks, in transactions of at most 100,000 rows, users user0 to
# user999, each with DESCRIPTION (default "benchmark task"): N events.
bench_write_tasks() {
  local db=$1 left=$2 desc=${3:-benchmark task} k
  while [ "$left" -gt 0 ]; do
    k=$(( left < 100000 ? left : 100000 ))
    q -d "$db" -c "INSERT INTO tasks (user_id, title, description)
                   SELECT 'user' || (g % 1000), 'task ' || g, '$desc' FROM generate_series(1, $k) g"
    left=$((left - k))
  done
}

# The summary of a benchmark that runs pgbench in rounds and sums each
# variant's tps in the associative array tps over $rounds rounds.
# bench_mean_tps TITLE FORMAT VARIANT...: an empty line, TITLE, then each
# VARIANT's mean tps, printed by awk's printf FORMAT (given the variant and
# the mean).  bench_tps_ratio FORMAT A B: tps[A] / tps[B], printed by FORMAT.
# shellcheck disable=SC2154  # tps and rounds: the benchmark's own
bench_mean_tps() {
  local title=$1 fmt=$2 v; shift 2
  echo
  echo "$title"
  for v in "$@"; do
    awk -v v="$v" -v t="${tps[$v]}" -v r="$rounds" -v f="$fmt" 'BEGIN { printf f, v, t / r }'
  done
}
bench_tps_ratio() { awk -v a="${tps[$2]}" -v b="${tps[$3]}" -v f="$1" 'BEGIN { printf f, a / b }'; }
