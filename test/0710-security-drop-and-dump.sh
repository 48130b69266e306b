#!/usr/bin/env bash
# No silent loss on removal or backup.  With undelivered events and a dead
# letter in the outbox: DROP EXTENSION (plain, CASCADE, or DROP SCHEMA
# CASCADE) is refused with 2BP01 and leaves everything in place; detach()
# is refused unless forced; after detach(force) a plain DROP EXTENSION is
# still refused; with taskevents.discard_undelivered = on the drop goes
# through.  A non-superuser database owner can pg_dump the database, and the
# dump restores the pending events and the dead letter.
set -euo pipefail
source "$(dirname "$0")/lib/pg.sh"
ensure_pg
DB=sec_drop
work=$(mktemp -d)
chmod 755 "$work"
cleanup() {
  local st=$?
  dropdb --if-exists "${DB}_restored" >/dev/null 2>&1 || true
  drop_owned_db "$DB" chk_owner
  rm -rf "$work"
  release_pg
  exit $st
}
trap cleanup EXIT
owned_db "$DB" chk_owner
q -d "$DB" -c "CREATE EXTENSION pg_taskevents"
make_tasks_table "$DB" >/dev/null
q -d "$DB" -c "ALTER TABLE public.tasks OWNER TO chk_owner"
q -d "$DB" -U chk_owner >/dev/null <<'SQL'
INSERT INTO public.tasks (user_id, title) SELECT 'u' || g % 3, 'task ' || g FROM generate_series(1, 5) g;
SQL
q -d "$DB" >/dev/null <<'SQL'
SELECT taskevents.relay_lease('default', 'test', 0);
SELECT taskevents.relay_dead_letter('default', 1, (SELECT min(id) FROM taskevents.outbox), 'tasks', 'tasks-dlq', 'u1',
         (SELECT event::text FROM taskevents.outbox_events ORDER BY id LIMIT 1), 'test reason', 4, now());
SQL
state() { printf '%s;\n\\echo state=:LAST_ERROR_SQLSTATE\n' "$2" | psql -X -q -At -d "$DB" -U "$1" 2>/dev/null | sed -n 's/^state=//p'; }
events() { q -d "$DB" -c "SELECT count(*) FROM taskevents.pending_events"; }
[ "$(events)" = 5 ] || fail "expected 5 pending events, got $(events)"

# pg_dump as the database owner (not a superuser)
pg_dump -U chk_owner -Fc -d "$DB" -f "$work/dump" 2>"$work/dump.err" || fail "pg_dump as the database owner failed: $(cat "$work/dump.err")"
createdb "${DB}_restored"
pg_restore -d "${DB}_restored" "$work/dump" 2>"$work/restore.err" || fail "restore failed: $(cat "$work/restore.err")"
[ "$(q -d "${DB}_restored" -c "SELECT count(*) FROM taskevents.pending_events")" = 5 ] || fail "the owner's dump lost pending events"
[ "$(q -d "${DB}_restored" -c "SELECT count(*) FROM taskevents.dead_letters")" = 1 ] || fail "the owner's dump lost the dead letter"
pass "the database owner's pg_dump keeps the 5 pending events and the dead letter"

for sql in "DROP EXTENSION pg_taskevents" "DROP EXTENSION pg_taskevents CASCADE" \
           "DROP EXTENSION IF EXISTS other_ext, pg_taskevents CASCADE" "DROP SCHEMA taskevents CASCADE"; do
  st=$(state postgres "$sql")
  [ "$st" = 2BP01 ] || fail "'$sql' gave SQLSTATE $st, 2BP01 expected"
done
msg=$(q -d "$DB" -c "DROP EXTENSION pg_taskevents CASCADE" 2>&1 || true)
grep -q "5 events are undelivered and 1 dead letters are not replayed" <<<"$msg" || fail "unclear refusal: $msg"
[ "$(events)" = 5 ] || fail "a refused drop lost events"
pass "DROP EXTENSION [CASCADE] and DROP SCHEMA CASCADE refused with 2BP01, nothing lost"

[ "$(state postgres "SELECT taskevents.detach('public.tasks')")" = 2BP01 ] || fail "detach() with pending events was not refused"
q -d "$DB" -c "SELECT taskevents.detach('public.tasks', force => true)" >/dev/null
[ "$(state postgres "DROP EXTENSION pg_taskevents")" = 2BP01 ] || fail "DROP EXTENSION after detach() was not refused"
[ "$(events)" = 5 ] || fail "events lost after detach()"
pass "detach() refused unless forced; after it, DROP EXTENSION still refused"

q -d "$DB" -c "SET taskevents.discard_undelivered = on" -c "DROP EXTENSION pg_taskevents" >/dev/null \
  || fail "the documented force path did not drop the extension"
[ "$(q -d "$DB" -c "SELECT count(*) FROM pg_extension WHERE extname = 'pg_taskevents'")" = 0 ] || fail "extension still there"
pass "SET taskevents.discard_undelivered = on lets the superuser drop it"
