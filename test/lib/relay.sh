# shellcheck shell=bash
# shellcheck disable=SC2034  # sets variables for the scripts that source it
# Helpers for the relay integration tests (test/01NN-*.sh).  Source it; it
# brings test/lib/pg.sh (q, fresh_db, make_tasks_table, fail, pass) and
# test/lib/kafka.sh (kafka_start, kafka_records, kafka_wait_count,
# KAFKA_BROKER, ...) and defines rl_* functions.  Each test gets its own
# database, its own Kafka broker (test/kafka/kafka.sh, fresh storage) and a
# work directory; the EXIT trap stops whatever the test started.

source "$(dirname "${BASH_SOURCE[0]}")/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/kafka.sh"

RELAY=$PGTE_ROOT/relay/taskevents-relay
RL_PIDS=()
RL_KAFKA=0

# rl_setup NAME [kafka|nokafka]: database relay_NAME with an attached tasks
# table, a fresh broker with the default topics, a work dir in $WORK.
rl_setup() {
  DB=relay_$1
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/relay-test-$1.XXXXXX")
  trap rl_cleanup EXIT
  [ -x "$RELAY" ] || make -s -C "$PGTE_ROOT/relay" >/dev/null || fail "relay build failed"
  ensure_pg
  fresh_db "$DB"
  # one outbox partition for the whole test, so the expected events stay
  # readable in taskevents.outbox even after maintain() has run
  q -d "$DB" -c "ALTER DATABASE $DB SET taskevents.rotation_period = 86400"
  make_tasks_table "$DB"
  # RELAY_TEST_EXTRA_SQL: a file run in the test database (to try a proposed
  # change of the extension's functions without reinstalling it)
  [ -n "${RELAY_TEST_EXTRA_SQL:-}" ] && q -d "$DB" -f "$RELAY_TEST_EXTRA_SQL" >/dev/null
  if [ "${2:-kafka}" = kafka ]; then
    kafka_start >"$WORK/kafka-start.log" 2>&1 || { cat "$WORK/kafka-start.log"; fail "kafka did not start"; }
    RL_KAFKA=1
    kafka_create_topics >>"$WORK/kafka-start.log" 2>&1 || fail "topics not created"
  fi
}

rl_cleanup() {
  local st=$? p
  for p in "${RL_PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  if [ $st -ne 0 ] && [ -n "${WORK:-}" ]; then
    for p in "$WORK"/*.log; do [ -f "$p" ] && { echo "=== $p (tail)"; tail -n 15 "$p"; }; done
    # RL_KEEP_FAILED=DIR: keep a failed test's work directory (logs, the
    # checker's files) in DIR for a closer look
    if [ -n "${RL_KEEP_FAILED:-}" ]; then
      mkdir -p "$RL_KEEP_FAILED" && cp -r "$WORK" "$RL_KEEP_FAILED/" && echo "kept $WORK in $RL_KEEP_FAILED"
    fi
  fi
  [ "$RL_KAFKA" = 1 ] && kafka_stop >/dev/null 2>&1
  [ -n "${DB:-}" ] && dropdb --if-exists "$DB" >/dev/null 2>&1
  release_pg
  [ -n "${WORK:-}" ] && rm -rf "$WORK"
  exit $st
}

# The tests' relay command line: this test's database and broker, no
# metrics listener; the callers add ARGS after it (a later flag wins: --db,
# --metrics-addr; with --dev-mock-kafka the broker is librdkafka's
# in-process mock cluster).  Sets RL_CMD.
rl_cmd() { RL_CMD=("$RELAY" --db "dbname=$DB" --brokers "$KAFKA_BROKER" --metrics-addr 0); }

# rl_relay NAME [ARGS...]: start a relay in the background, log in
# $WORK/NAME.log; sets RL_PID (the relay's own pid).
rl_relay() {
  local name=$1; shift
  rl_cmd
  "${RL_CMD[@]}" "$@" >"$WORK/$name.log" 2>&1 &
  RL_PID=$!
  RL_PIDS+=("$RL_PID")
}

# rl_once NAME [ARGS...]: one --once run in the foreground, log in
# $WORK/NAME.log; returns the relay's exit status.
rl_once() {
  local name=$1; shift
  rl_cmd
  "${RL_CMD[@]}" --once "$@" >"$WORK/$name.log" 2>&1
}

# rl_draining NAME N PREFIX [ARGS...]: N tasks of 50 users (titles PREFIX1
# ... PREFIXN) written in one transaction, then relay NAME started on them
# (rl_relay NAME --log-level debug ARGS...); returns once it has
# acknowledged a first batch, in the middle of the drain (fails the test
# after 20 s).  For the tests that stop a relay while it drains.
rl_draining() {
  local name=$1 n=$2 prefix=$3; shift 3
  q -d "$DB" -c "INSERT INTO tasks (user_id, title) SELECT 'user' || (g % 50), '$prefix' || g FROM generate_series(1, $n) g"
  rl_relay "$name" --log-level debug "$@"
  rl_wait 20 rl_log_has "$name" '"msg":"acked"' || fail "no progress"
}

# rl_wait TIMEOUT_S COMMAND...: poll until COMMAND succeeds.
rl_wait() {
  local deadline=$(( $(date +%s%N) / 1000000 + $1 * 1000 )); shift
  until "$@"; do
    [ $(( $(date +%s%N) / 1000000 )) -ge $deadline ] && return 1
    sleep 0.1
  done
}

rl_log_has() { grep -qs "$2" "$WORK/$1.log"; }

# rl_delivered TOPIC N: TOPIC holds at least N messages (for rl_wait)
rl_delivered() { [ "$(kafka_topic_count "$1")" -ge "$2" ]; }

# rl_none_pending: no event of $DB is pending (every one acknowledged)
rl_none_pending() { [ "$(q -d "$DB" -c "SELECT count(*) FROM taskevents.pending_events")" = 0 ]; }

# rl_metric ADDR NAME: the value of metric NAME (with its labels, as
# /metrics prints them) at ADDR, empty when there is none.  The page is read
# whole: under pipefail, curl | grep -q fails when grep quits before curl
# has written the page.
rl_metric() {
  curl -sf --max-time 5 "http://$1/metrics" | awk -v m="$2" '$1 == m { v = $2 } END { if (v != "") print v }'
}

# The expected stream of TOPIC: "key<TAB>ce_id" in outbox order, without
# the events that went to a dead-letter topic.  (0.1.0 kept the events
# themselves in taskevents.outbox: the upgrade test reads it before the
# update.)
rl_expected() {
  local events
  events=$(q -d "$DB" -c "SELECT coalesce(to_regclass('taskevents.outbox_events')::text, 'taskevents.outbox')") || return 1
  q -d "$DB" -F $'\t' -c "SELECT o.partition_key, o.event->>'id' FROM $events o
     WHERE o.topic = '$1' AND NOT EXISTS (SELECT 1 FROM taskevents.dead_letters d WHERE d.outbox_id = o.id)
     ORDER BY o.id"
}
# (a failing query fails these too, rather than expecting nothing)
rl_expected_count() { local e; e=$(rl_expected "$1") || return 1; if [ -z "$e" ]; then echo 0; else wc -l <<<"$e"; fi; }
rl_all_delivered() { local want; want=$(rl_expected_count "$1") || return 1; [ "$(kafka_topic_count "$1")" -ge "$want" ]; }

# rl_verify TOPIC [binary] [ALLOW_DUP]: contents of TOPIC against the outbox.
#  - every message a valid CloudEvent 1.0 with the right content type
#    (structured) or ce_* headers (binary), key = partition key = user id;
#  - the set of ids equals the outbox's; duplicates only if ALLOW_DUP=1;
#  - per key, the order of first appearance equals outbox id order.
rl_verify() {
  local topic=$1 mode=${2:-structured} allow_dup=${3:-0}
  kafka_records "$topic" >"$WORK/got-$topic.json"
  rl_expected "$topic" >"$WORK/want-$topic.tsv"
  local bad
  if [ "$mode" = binary ]; then
    bad=$(jq -c '(.headers // [] | [range(0; length; 2) as $i | {(.[$i]): .[$i + 1]}] | add // {}) as $h
      | (.payload | fromjson? // "x") as $d
      | select($h["content-type"] != "application/json" or $h.ce_specversion != "1.0"
               or ($h.ce_id // "") == "" or ($h.ce_source // "") == "" or ($h.ce_type // "") == ""
               or $h.ce_partitionkey != .key or ($d | type) != "object" or $d.user_id != .key)
      | .offset' "$WORK/got-$topic.json" | head -3)
    jq -r '(.headers | [range(0; length; 2) as $i | {(.[$i]): .[$i + 1]}] | add) as $h | [.key, $h.ce_id] | @tsv' \
      "$WORK/got-$topic.json" >"$WORK/got-$topic.tsv"
  else
    bad=$(jq -c '(.headers // [] | [range(0; length; 2) as $i | {(.[$i]): .[$i + 1]}] | add // {}) as $h
      | (.payload | fromjson? // "x") as $e
      | select($h["content-type"] != "application/cloudevents+json; charset=UTF-8"
               or ($e | type) != "object" or $e.specversion != "1.0"
               or ($e.id | type) != "string" or ($e.source | type) != "string" or ($e.type | type) != "string"
               or $e.partitionkey != .key or ($e.data.user_id // .key) != .key)
      | .offset' "$WORK/got-$topic.json" | head -3)
    jq -r '[.key, (.payload | fromjson | .id)] | @tsv' "$WORK/got-$topic.json" >"$WORK/got-$topic.tsv"
  fi
  [ -z "$bad" ] || fail "$topic: invalid messages at offsets $bad"
  local total uniq
  total=$(wc -l <"$WORK/got-$topic.tsv")
  awk -F'\t' '!seen[$2]++' "$WORK/got-$topic.tsv" >"$WORK/got-$topic.first.tsv"
  uniq=$(wc -l <"$WORK/got-$topic.first.tsv")
  [ "$allow_dup" = 1 ] || [ "$total" -eq "$uniq" ] || fail "$topic: $((total - uniq)) duplicate messages"
  # sets equal
  diff <(cut -f2 "$WORK/want-$topic.tsv" | sort) <(cut -f2 "$WORK/got-$topic.first.tsv" | sort) >"$WORK/setdiff" \
    || fail "$topic: delivered ids differ from the outbox: $(head -5 "$WORK/setdiff" | tr '\n' ' ')"
  # per-key order (stable sort by key keeps each key's sequence)
  diff <(sort -s -t$'\t' -k1,1 "$WORK/want-$topic.tsv") <(sort -s -t$'\t' -k1,1 "$WORK/got-$topic.first.tsv") >/dev/null \
    || fail "$topic: per-key order differs from outbox order"
  RL_VERIFIED=$uniq
  RL_DUPLICATES=$((total - uniq))
}

# rl_write N [USERS]: N task writes (inserts, then updates of some) spread
# over USERS users, in separate transactions of 10 rows.
rl_write() {
  local n=$1 users=${2:-5}
  q -d "$DB" -c "DO \$\$ BEGIN FOR i IN 1..$n LOOP
      INSERT INTO public.tasks (user_id, title) VALUES ('user' || (i % $users), 'task ' || i);
      IF i % 10 = 0 THEN COMMIT; END IF; END LOOP; END \$\$"
}
