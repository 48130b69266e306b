#!/usr/bin/env bash
# Security: the install refuses a schema prepared by someone else, and the
# extension's SECURITY DEFINER event trigger never acts through a
# look-alike schema.  A non-superuser database owner plants a
# taskevents.format(text, text) that records who called it (a better match
# than pg_catalog.format for the install script's calls); CREATE EXTENSION
# by the superuser must refuse (42501) without calling it.  Then, on a
# correct install, the schema is renamed (as only a superuser can) and the
# database owner creates a look-alike taskevents.attached_tables view whose
# INSTEAD OF trigger records its caller: dropping an attached table must not
# run it.  The recorder must never have run as anyone but its owner.
set -euo pipefail
source "$(dirname "$0")/lib/pg.sh"
ensure_pg
DB=sec_install
cleanup() {
  local st=$?
  drop_owned_db "$DB" chk_dbowner
  release_pg
  exit $st
}
trap cleanup EXIT
owned_db "$DB" chk_dbowner

# the database owner's trap: a recorder and a look-alike format()
q -d "$DB" -U chk_dbowner <<'SQL'
CREATE TABLE public.calls (who name, what text);
GRANT INSERT ON public.calls TO PUBLIC;
CREATE SCHEMA taskevents;
CREATE FUNCTION taskevents.format(fmt text, arg text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.calls VALUES (current_user, 'format');
    RETURN pg_catalog.format(fmt, arg);
END;
$$;
SQL
out=$(q -d "$DB" -c "CREATE EXTENSION pg_taskevents" 2>&1) && fail "CREATE EXTENSION accepted a schema owned by chk_dbowner"
grep -q 'schema "taskevents" already exists and is owned by role "chk_dbowner"' <<<"$out" || fail "unclear refusal: $out"
st=$(printf 'CREATE EXTENSION pg_taskevents;\n\\echo state=:LAST_ERROR_SQLSTATE\n' | psql -X -q -At -d "$DB" 2>/dev/null | sed -n 's/^state=//p')
[ "$st" = 42501 ] || fail "refusal had SQLSTATE $st, 42501 expected"
[ "$(q -d "$DB" -c "SELECT count(*) FROM public.calls")" = 0 ] || fail "the planted format() ran: $(q -d "$DB" -c "SELECT who FROM public.calls")"
[ "$(q -d "$DB" -c "SELECT count(*) FROM pg_extension WHERE extname = 'pg_taskevents'")" = 0 ] || fail "extension installed"
pass "a schema owned by the database owner is refused (42501) and its format() never runs"

# a schema the superuser prepared but opened to others is refused too; an
# empty one of its own is used
q -d "$DB" -U chk_dbowner -c "DROP SCHEMA taskevents CASCADE" >/dev/null 2>&1
q -d "$DB" -c "CREATE SCHEMA taskevents; GRANT CREATE ON SCHEMA taskevents TO chk_dbowner"
out=$(q -d "$DB" -c "CREATE EXTENSION pg_taskevents" 2>&1) && fail "CREATE EXTENSION accepted a schema others may create objects in"
grep -q 'others may create objects in it' <<<"$out" || fail "unclear refusal: $out"
q -d "$DB" -c "REVOKE CREATE ON SCHEMA taskevents FROM chk_dbowner"
q -d "$DB" -c "CREATE EXTENSION pg_taskevents" >/dev/null || fail "an empty schema of the installer's own was refused"
pass "a schema open to CREATE by others is refused; an empty one of the installer's is used"

# After install: only a superuser can rename the schema.  If one does, a
# look-alike registry must not be written through by the event trigger.
make_tasks_table "$DB" >/dev/null
q -d "$DB" -c "ALTER TABLE public.tasks OWNER TO chk_dbowner"
st=$(printf 'ALTER SCHEMA taskevents RENAME TO mine;\n\\echo state=:LAST_ERROR_SQLSTATE\n' | psql -X -q -At -d "$DB" -U chk_dbowner 2>/dev/null | sed -n 's/^state=//p')
[ "$st" = 42501 ] || fail "the database owner renamed the extension's schema (SQLSTATE $st)"
q -d "$DB" -c "ALTER SCHEMA taskevents RENAME TO taskevents_real"
q -d "$DB" -U chk_dbowner <<'SQL'
CREATE SCHEMA taskevents;
CREATE VIEW taskevents.attached_tables AS SELECT 'public.tasks'::text::regclass AS task_table;
CREATE FUNCTION taskevents.spy() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.calls VALUES (current_user, 'instead of ' || TG_OP);
    RETURN OLD;
END;
$$;
CREATE TRIGGER spy INSTEAD OF DELETE ON taskevents.attached_tables
    FOR EACH ROW EXECUTE FUNCTION taskevents.spy();
SQL
q -d "$DB" -U chk_dbowner -c "DROP TABLE public.tasks" >/dev/null || fail "DROP TABLE failed"
[ "$(q -d "$DB" -c "SELECT count(*) FROM public.calls WHERE who <> 'chk_dbowner'")" = 0 ] \
  || fail "the look-alike registry's trigger ran as $(q -d "$DB" -c "SELECT who FROM public.calls")"
[ "$(q -d "$DB" -c "SELECT count(*) FROM public.calls")" = 0 ] || fail "the event trigger wrote through the look-alike"
[ "$(q -d "$DB" -c "SELECT rolsuper FROM pg_roles WHERE rolname = 'chk_dbowner'")" = f ] || fail "chk_dbowner became superuser"
pass "after a rename, the event trigger leaves a look-alike taskevents schema alone"
