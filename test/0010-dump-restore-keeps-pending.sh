#!/usr/bin/env bash
# pg_dump/pg_restore keeps undelivered events (and only those), the
# registry and dead letters; restored into a fresh cluster whose transaction
# counter is behind the source's, the events are still delivered by a new
# relay consumer, with their original CloudEvent ids.
set -euo pipefail
source "$(dirname "$0")/lib/pg.sh"
ensure_pg
work=$(mktemp -d)
chmod 755 "$work"
dst_port=$((PGTE_PGPORT + 7))
cleanup() {
  (PGTE_PGPORT=$dst_port PGTE_PGSTATE=$work/dst pg_stop) || true
  dropdb --if-exists te_dump_src >/dev/null 2>&1 || true
  release_pg
  rm -rf "$work"
}
trap cleanup EXIT

fresh_db te_dump_src
# Push the source's transaction counter well past a new cluster's.
q -d te_dump_src -c "CREATE PROCEDURE burn(n int) LANGUAGE plpgsql AS \$\$
  BEGIN FOR i IN 1..n LOOP PERFORM pg_current_xact_id(); COMMIT; END LOOP; END \$\$"
q -d te_dump_src -c "CALL burn(3000)"
make_tasks_table te_dump_src >/dev/null
q -d te_dump_src >/dev/null <<'SQL'
INSERT INTO tasks (user_id, title) SELECT 'u' || (g % 3), 'task ' || g FROM generate_series(1, 10) g;
-- a relay consumer delivers the first batch ...
SELECT taskevents.relay_lease('default', 'test', 0);
SELECT taskevents.relay_tick('default', 1);
SELECT taskevents.relay_ack('default', 1, 1, 0, true);
-- ... then more is written and stays pending
UPDATE tasks SET completed = true WHERE id <= 3;
SELECT taskevents.publish('audit', 'com.example.custom', '{"k": 1}', 'u9');
SELECT taskevents.relay_dead_letter('default', 1, 1, 'tasks', 'tasks-dlq', 'u1',
         (SELECT event::text FROM taskevents.outbox_events ORDER BY id LIMIT 1), 'test reason', 4, now());
SQL

q -d te_dump_src -c "SELECT event->>'id' FROM taskevents.pending_events ORDER BY id" > "$work/pending_src"
[ "$(wc -l < "$work/pending_src")" -eq 4 ] || fail "expected 4 pending events in the source, got $(wc -l < "$work/pending_src")"

pg_dump -Fc -d te_dump_src -f "$work/dump"

# A new cluster: its transaction counter is far behind the source's.
(
  export PGTE_PGPORT=$dst_port PGTE_PGSTATE=$work/dst
  pg_start
  createdb te_dump_dst
  pg_restore -d te_dump_dst "$work/dump" 2>"$work/restore.err" || { cat "$work/restore.err"; exit 1; }

  q -d te_dump_dst -c "SELECT event->>'id' FROM taskevents.pending_events ORDER BY id" > "$work/pending_dst"
  diff -u "$work/pending_src" "$work/pending_dst" || fail "restored pending events differ"
  [ "$(q -d te_dump_dst -c "SELECT count(*) FROM taskevents.outbox_events")" -eq 4 ] \
    || fail "delivered events were dumped too"
  [ "$(q -d te_dump_dst -c "SELECT count(*) FROM taskevents.dead_letters WHERE reason = 'test reason'")" -eq 1 ] \
    || fail "dead letter lost"
  [ "$(q -d te_dump_dst -c "SELECT count(*) FROM taskevents.attached_tables WHERE task_table = 'public.tasks'::regclass")" -eq 1 ] \
    || fail "registry lost"
  future=$(q -d te_dump_dst -c "SELECT count(*) FROM taskevents.outbox_events WHERE txid >= pg_snapshot_xmax(pg_current_snapshot())")
  [ "$future" -eq 4 ] || fail "expected the restored txids to lie in the new cluster's future (got $future of 4)"

  # A new consumer's first batch is exactly the restored events, in order.
  q -d te_dump_dst -c "SELECT taskevents.relay_lease('default', 'test', 0)" >/dev/null
  tick=$(q -d te_dump_dst -c "SELECT taskevents.relay_tick('default', 1)")
  [ "$tick" = 1 ] || fail "no batch for the restored events (tick '$tick')"
  q -d te_dump_dst -c "SELECT (event::jsonb)->>'id' FROM taskevents.relay_fetch('default', 1, 0, 100)" > "$work/batch"
  diff -u "$work/pending_src" "$work/batch" || fail "first batch after restore differs"

  # New writes keep working and get ids above the restored ones.
  q -d te_dump_dst -c "INSERT INTO tasks (user_id, title) VALUES ('new', 'after restore')"
  q -d te_dump_dst -c "SELECT bool_and(o.id < n.id) FROM taskevents.outbox o, (SELECT max(id) AS id FROM taskevents.outbox) n WHERE o.id <> n.id" | grep -qx t \
    || fail "new outbox ids collide with restored ones"
  pg_stop
)
pass "dump/restore keeps exactly the 4 pending events and delivers them"
