# shellcheck shell=bash
# shellcheck disable=SC2034  # sets variables for the scripts that source it
# Helpers for the fault-matrix tests (test/05NN-*.sh).  Source it; it brings
# test/lib/relay.sh (rl_setup, rl_relay, rl_wait, q, fail, pass, ...) and
# defines fl_* functions: the history checker's triggers, concurrent writers
# that keep going through server crashes, and the final check.
#
# The truth about what committed is chk.committed (test/checker/setup.sql),
# written in the same transaction as every task write; the checker compares
# it with everything the broker holds, dead-letter topics included.

source "$(dirname "${BASH_SOURCE[0]}")/relay.sh"

FL_CHECKER=$PGTE_ROOT/test/checker/checker.py
# FL_RELAY: another relay binary to run the fault tests with (an ASan build)
RELAY=${FL_RELAY:-$RELAY}
FL_WRITERS=()

# fl_setup NAME [kafka|nokafka] [ROTATION_S]: rl_setup, then the checker's
# triggers; the outbox partitions rotate every ROTATION_S seconds (default 2),
# so maintain() truncates while the faults happen.
fl_setup() {
  rl_setup "$1" "${2:-kafka}"
  q -d "$DB" -f "$PGTE_ROOT/test/checker/setup.sql" >/dev/null || fail "checker setup"
  q -d "$DB" -c "ALTER DATABASE $DB SET taskevents.rotation_period = ${3:-2}" >/dev/null
  trap fl_cleanup EXIT
}

fl_cleanup() {
  local st=$?
  touch "$WORK/stop-writers" 2>/dev/null || true
  local p
  for p in "${FL_WRITERS[@]}"; do kill "$p" 2>/dev/null || true; done
  set +e; (exit $st); rl_cleanup
}

# fl_writer ID [USERS] [PACE_S] [ROLLBACKS 0|1]: one writer session after
# another (a DO block of 50 transactions each) until fl_writers_stop; each
# transaction does 1-3 inserts, updates, completions or deletes of users
# wID-u0..; with ROLLBACKS, some statements are rolled back to a savepoint
# and some transactions are rolled back whole.  A lost connection (server
# restart) just starts the next session.
fl_writer() {
  local id=$1 users=${2:-5} pace=${3:-0.02} rb=${4:-0}
  local sql="DO \$\$
DECLARE u text; tid bigint; r float8;
BEGIN
  FOR i IN 1..50 LOOP
    FOR j IN 1..(1 + floor(random() * 3))::int LOOP
      u := 'w$id-u' || floor(random() * $users)::int;
      r := random();
      tid := NULL;
      IF r < 0.55 THEN
        INSERT INTO public.tasks (user_id, title) VALUES (u, 'task') RETURNING id INTO tid;
      ELSE
        SELECT id INTO tid FROM public.tasks WHERE user_id = u ORDER BY id DESC
         LIMIT 1 OFFSET floor(random() * 3)::int;
        IF r < 0.80 THEN UPDATE public.tasks SET title = 'updated' WHERE id = tid;
        ELSIF r < 0.93 THEN UPDATE public.tasks SET completed = NOT completed WHERE id = tid;
        ELSE DELETE FROM public.tasks WHERE id = tid;
        END IF;
      END IF;
      IF $rb = 1 AND random() < 0.2 THEN
        BEGIN
          INSERT INTO public.tasks (user_id, title) VALUES (u, 'rolled back to savepoint');
          UPDATE public.tasks SET title = 'savepoint' WHERE id = tid;
          DELETE FROM public.tasks WHERE id = tid;
          RAISE EXCEPTION 'chk_savepoint';
        EXCEPTION WHEN raise_exception THEN NULL;
        END;
      END IF;
    END LOOP;
    IF $rb = 1 AND random() < 0.2 THEN ROLLBACK; ELSE COMMIT; END IF;
    PERFORM pg_sleep($pace);
  END LOOP;
END \$\$"
  (
    trap - EXIT
    until [ -e "$WORK/stop-writers" ]; do
      psql -X -q -d "$DB" -v ON_ERROR_STOP=1 -c "SET application_name = 'chk-writer'" -c "$sql" \
        >>"$WORK/writer-$id.out" 2>&1 || sleep 0.2   # backoff while the server is down
    done
  ) &
  FL_WRITERS+=($!)
}

# fl_writers_start N [USERS] [PACE_S] [ROLLBACKS]
fl_writers_start() {
  local n=$1 i; shift
  rm -f "$WORK/stop-writers"
  for i in $(seq 1 "$n"); do fl_writer "$i" "$@"; done
}

fl_writers_stop() {
  touch "$WORK/stop-writers"
  local p
  for p in "${FL_WRITERS[@]}"; do wait "$p" 2>/dev/null || true; done
  FL_WRITERS=()
}

fl_committed() { q -d "$DB" -c "SELECT count(*) FROM chk.committed"; }
fl_has_committed() { [ "$(fl_committed)" -ge "$1" ]; }
fl_pending() { q -d "$DB" -c "SELECT count(*) FROM taskevents.pending_events"; }
fl_drained() { [ "$(fl_pending 2>/dev/null)" = 0 ]; }

# fl_check LABEL [WAIT_S]: wait until the outbox is drained, then run the
# checker; fail on any loss, phantom, changed id, misrouting or reorder.
# Leaves the JSON report in $WORK/check.json and its summary in FL_SUMMARY.
fl_check() {
  local label=$1 wait=${2:-60}
  rl_wait "$wait" fl_drained || fail "$label: $(fl_pending) events still pending after ${wait}s"
  python3 "$FL_CHECKER" --db "$DB" --brokers "$KAFKA_BROKER" --wait 20 --report "$WORK/check.json" \
    >"$WORK/checker.out" 2>&1 || { cat "$WORK/checker.out"; fail "$label: the checker found violations"; }
  FL_SUMMARY=$(head -1 "$WORK/checker.out" | sed 's/^checker: //')
  FL_COMMITTED=$(jq .committed "$WORK/check.json")
  FL_DUPS=$(jq .duplicates "$WORK/check.json")
  FL_DLQ=$(jq .dead_lettered "$WORK/check.json")
  [ "$FL_COMMITTED" -gt 0 ] || fail "$label: nothing committed, nothing checked"
}

# fl_report FIELD: a number from the last checker report.
fl_report() { jq -r ".$1" "$WORK/check.json"; }

# fl_rand_ms LO HI: a random delay in milliseconds, printed as seconds (the
# moment of a fault, not a synchronisation).
fl_rand_s() { awk -v lo="$1" -v hi="$2" -v s="$RANDOM" 'BEGIN { srand(s); printf "%.3f", (lo + rand() * (hi - lo)) / 1000 }'; }

# fl_session NAME: a psql session fed through a fifo, to hold a transaction
# open across other events.  Sets FL_FD (write SQL to it); the output goes to
# $WORK/NAME.out.  fl_session_end NAME FD closes it and waits for psql.
fl_session() {
  mkfifo "$WORK/$1.fifo"
  psql -X -q -At -d "$DB" -v ON_ERROR_STOP=1 -c "SET application_name = 'chk-$1'" -f "$WORK/$1.fifo" \
    >"$WORK/$1.out" 2>&1 &
  eval "FL_PID_$1=$!"
  exec {FL_FD}>"$WORK/$1.fifo"
}
fl_session_end() {
  local pidvar="FL_PID_$1"
  echo '\q' >&"$2"   # explicit: later children hold the fifo open too
  eval "exec $2>&-"
  wait "${!pidvar}" || fail "session $1 failed: $(cat "$WORK/$1.out")"
}
fl_out_has() { grep -q "$2" "$WORK/$1.out"; }
