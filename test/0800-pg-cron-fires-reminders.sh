#!/usr/bin/env bash
# The pg_cron recipe of docs/recurrence-and-reminders.md ("Without a relay,
# pg_cron"), run exactly as the documentation writes it, with the pg_cron
# Debian 12 ships (postgresql-15-cron 1.4.2): a reminder that is due fires
# at the next minute, with its notification, log row and reminder.triggered
# event, and the cron job run succeeded.  Runs in a copy of the PostgreSQL
# installation with pg_cron preloaded (the suite's server stays as it is).
# Waits up to about 75 s (the recipe fires once a minute).
set -euo pipefail
source "$(dirname "$0")/lib/pg.sh"

[ "$(pg_major)" = 15 ] || skip "the tested pg_cron is Debian 12's postgresql-15-cron"
PGTE_PACKAGES=postgresql-15-cron ensure_packages
W=$(mktemp -d "${TMPDIR:-/tmp}/pgte-cron.XXXXXX")
chmod 755 "$W"
trap 'release_pg; rm -rf "$W"' EXIT

# the recipe, as the documentation has it
recipe=$(awk '/^\*\*Without a relay, pg_cron\*\*/ { f = 1 } f && /^```sql/ { g = 1; next } g && /^```/ { exit } g { print }' \
         "$PGTE_ROOT/docs/recurrence-and-reminders.md")
grep -q 'cron.schedule' <<<"$recipe" || fail "no pg_cron recipe found in docs/recurrence-and-reminders.md"

copy_installation "$W/pg"
make -s -C "$PGTE_ROOT" install WITH_RELAY=no DESTDIR="$W/pg" >/dev/null || fail "make install into the copy"
for f in $(dpkg -L postgresql-15-cron); do
  case $f in
    */lib/postgresql/15/lib/pg_cron.so) cp "$f" "$COPY_PKGLIBDIR/" ;;
    */share/postgresql/15/extension/pg_cron*) cp "$f" "$COPY_SHAREDIR/extension/" ;;
  esac
done
[ -f "$COPY_PKGLIBDIR/pg_cron.so" ] || fail "pg_cron.so not found in postgresql-15-cron"

PG_BINDIR=$COPY_BINDIR
PGTE_PGPORT=$((PGTE_PGPORT + 4))
export PGTE_PGSTATE=$W/state
export PGTE_PGCONF="shared_preload_libraries = 'pg_cron'
cron.database_name = 'postgres'
cron.host = '$W/state'"
unset PGHOST
pg_start
PGTE_STARTED_PG=1
[ "$(q -d postgres -c "SELECT default_version FROM pg_available_extensions WHERE name = 'pg_cron'")" = 1.4-1 ] \
  || fail "expected Debian 12's pg_cron 1.4-1"

createdb appdb
q -d appdb -c "CREATE EXTENSION pg_taskevents"
make_tasks_table appdb >/dev/null
# due in an hour, sooner than the 24 h lead: reminded at the next firing
q -d appdb -c "INSERT INTO tasks (user_id, title, due_date) VALUES ('alice', 'soon', now() + interval '1 hour')"
[ "$(q -d appdb -c "SELECT count(*) FROM taskevents.reminder_log")" = 0 ] || fail "fired before pg_cron ran"

q -d postgres -c "$recipe" >/dev/null || fail "the documented recipe failed"
start=$SECONDS
fired() { [ "$(q -d appdb -c "SELECT count(*) FROM taskevents.reminder_log")" -ge 1 ]; }
until fired; do
  [ $((SECONDS - start)) -lt 75 ] || fail "no reminder fired within 75 s of scheduling the pg_cron job ($(q -d postgres -c "SELECT string_agg(status || ': ' || return_message, '; ') FROM cron.job_run_details"))"
  sleep 0.5
done
[ "$(q -d appdb -c "SELECT count(*) FROM taskevents.notifications WHERE user_id = 'alice'")" = 1 ] || fail "no notification"
[ "$(q -d appdb -c "SELECT count(*) FROM taskevents.outbox_events WHERE event->>'type' = 'reminder.triggered'")" = 1 ] \
  || fail "no reminder.triggered event"
[ "$(q -d postgres -c "SELECT count(*) FROM cron.job_run_details WHERE status = 'succeeded'")" -ge 1 ] \
  || fail "the cron job run is not recorded as succeeded"
pass "the documented pg_cron recipe (pg_cron 1.4.2) fired the due reminder after $((SECONDS - start)) s"
