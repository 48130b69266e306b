# shellcheck shell=bash
# shellcheck disable=SC2034  # sets variables for the scripts that source it
# Sourceable helpers for integration tests that need PostgreSQL.
# scripts/test starts one server and exports PGHOST/PGPORT/PGUSER; a test
# run on its own starts (and, on exit, stops) its own.

source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/common.sh"

# Make sure a server answers; start a throwaway one if none does.
ensure_pg() {
  if [ -n "${PGHOST:-}" ] && "$PG_BINDIR/pg_isready" -q 2>/dev/null; then
    return 0
  fi
  pg_start
  PGTE_STARTED_PG=1
}

# Stop the server only if this test started it.
release_pg() {
  [ "${PGTE_STARTED_PG:-0}" = 1 ] && pg_stop
  return 0
}

# psql with the settings tests want: no psqlrc, stop on error, bare output.
q() { psql -X -q -v ON_ERROR_STOP=1 -At "$@"; }

# A fresh database with the extension, named $1.
fresh_db() {
  dropdb --if-exists "$1" >/dev/null 2>&1 || true
  createdb "$1"
  q -d "$1" -c "CREATE EXTENSION pg_taskevents"
}

# owned_db DB ROLE: a new database DB owned by ROLE, a new LOGIN role that
# is no superuser (the security tests' hostile database owner); any old
# DB and ROLE are dropped first.  drop_owned_db DB ROLE removes both and
# never fails (for an EXIT trap).
owned_db() {
  dropdb --if-exists "$1" >/dev/null 2>&1 || true
  q -d postgres -c "DROP ROLE IF EXISTS $2" >/dev/null
  q -d postgres -c "CREATE ROLE $2 LOGIN"
  q -d postgres -c "CREATE DATABASE $1 OWNER $2"
}
drop_owned_db() {
  dropdb --if-exists "$1" >/dev/null 2>&1 || true
  q -d postgres -c "DROP ROLE IF EXISTS $2" >/dev/null 2>&1 || true
}

# make_tasks_table DB [TABLE]: the brief's tasks table (test/lib/tasks.sql),
# attached, in database DB; TABLE defaults to public.tasks.
make_tasks_table() {
  q -d "$1" -v tasks="${2:-public.tasks}" -f "$PGTE_ROOT/test/lib/tasks.sql"
}

# copy_installation DIR: a private copy of the PostgreSQL installation of
# PG_CONFIG (bindir, pkglibdir, sharedir, each at its own path below DIR,
# so that `make install DESTDIR=DIR` installs into the copy; PostgreSQL
# finds its files relative to its binaries), without any pg_taskevents
# files.  For tests that install other files than the suite's server has.
# Sets COPY_BINDIR, COPY_PKGLIBDIR, COPY_SHAREDIR.
copy_installation() {
  local d
  for d in "$("$PG_CONFIG" --bindir)" "$("$PG_CONFIG" --pkglibdir)" "$("$PG_CONFIG" --sharedir)"; do
    mkdir -p "$1$(dirname "$d")"
    cp -a "$d" "$1$d"
  done
  COPY_BINDIR=$1$("$PG_CONFIG" --bindir)
  COPY_PKGLIBDIR=$1$("$PG_CONFIG" --pkglibdir)
  COPY_SHAREDIR=$1$("$PG_CONFIG" --sharedir)
  rm -rf "$COPY_PKGLIBDIR"/pg_taskevents.* "$COPY_PKGLIBDIR"/bitcode/pg_taskevents* "$COPY_SHAREDIR"/extension/pg_taskevents*
}

# PostgreSQL's major version (of PG_CONFIG).
pg_major() { "$PG_CONFIG" --version | sed 's/^PostgreSQL \([0-9]*\).*/\1/'; }

fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "skip: $*"; exit 0; }
pass() { echo "ok: $*"; }
