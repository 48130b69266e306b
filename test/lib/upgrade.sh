# shellcheck shell=bash
# shellcheck disable=SC2034  # sets variables for its callers and for pg.sh's functions
# Helpers for the upgrade tests (test/07NN-*.sh).  Source it after
# test/lib/pg.sh (or relay.sh).  An upgrade test never touches the
# PostgreSQL installation the rest of the suite uses: it copies that
# installation (bindir, pkglibdir, sharedir: PostgreSQL finds its files
# relative to its binaries) into a work directory, installs the old
# release there, starts its own server from the copy, and later installs
# the current build over the old one with `make install DESTDIR=...`, as a
# package upgrade would replace the files.
#
#   up_setup NAME            work dir $UP_DIR, 0.1.0 built from git, the copy
#                            with 0.1.0 installed, a server from it on
#                            port PGTE_PGPORT + 3 (PGHOST etc. exported)
#   up_install_current       the checkout's build over it (library, control
#                            file, install and upgrade scripts)
#   up_cleanup               stop the server, remove the work dir
#
# The old release comes from the git tag v0.1.0, or from the commit that
# landed as 0.1.0 when the clone has no tags.

UP_OLD_VERSION=0.1.0
UP_OLD_TAG=v0.1.0
UP_OLD_COMMIT=ed6690c5f2d523155d560e5b534d974f01f7610f

# The version the checkout builds (the .control file is the one place).
up_current_version() {
  sed -n "s/^default_version = '\(.*\)'/\1/p" "$PGTE_ROOT/pg_taskevents.control"
}

# 0.1.0 builds against PostgreSQL 15 only (it predates extension/compat.h),
# so an upgrade from it exists on 15 only.  Exits 0 with a "skip:" line on
# other versions.
up_require_pg15() {
  [ "$(pg_major)" = 15 ] || skip "$UP_OLD_VERSION supported PostgreSQL 15 only; no upgrade from it on $(pg_major)"
}

# The commit of the old release, or a clear failure.
up_old_rev() {
  local rev
  rev=$(git -C "$PGTE_ROOT" rev-parse -q --verify "$UP_OLD_TAG^{commit}" 2>/dev/null) ||
  rev=$(git -C "$PGTE_ROOT" rev-parse -q --verify "$UP_OLD_COMMIT^{commit}" 2>/dev/null) ||
    fail "neither the tag $UP_OLD_TAG nor commit $UP_OLD_COMMIT is in this clone: fetch them (git fetch --tags, or git fetch --unshallow in a shallow clone)"
  echo "$rev"
}

# up_build_old [relay]: the old release's library and install script (and
# its relay) in $UP_DIR/old.
up_build_old() {
  local rev
  rev=$(up_old_rev)
  mkdir -p "$UP_DIR/old"
  git -C "$PGTE_ROOT" archive "$rev" | tar -x -C "$UP_DIR/old" || fail "git archive $rev"
  make -s -C "$UP_DIR/old" PG_CONFIG="$PG_CONFIG" pg_taskevents.so "pg_taskevents--$UP_OLD_VERSION.sql" \
    >"$UP_DIR/old-build.log" 2>&1 || { cat "$UP_DIR/old-build.log"; fail "building $UP_OLD_VERSION failed"; }
  if [ "${1:-}" = relay ]; then
    make -s -C "$UP_DIR/old/relay" PG_CONFIG="$PG_CONFIG" >>"$UP_DIR/old-build.log" 2>&1 \
      || { cat "$UP_DIR/old-build.log"; fail "building the $UP_OLD_VERSION relay failed"; }
    UP_OLD_RELAY=$UP_DIR/old/relay/taskevents-relay
  fi
}

# The copy of the PostgreSQL installation the test installs into.
up_copy_installation() {
  UP_PREFIX=$UP_DIR/pg
  copy_installation "$UP_PREFIX"
  UP_BINDIR=$COPY_BINDIR
}

up_install_old() {
  install -m 755 "$UP_DIR/old/pg_taskevents.so" "$COPY_PKGLIBDIR/"
  install -m 644 "$UP_DIR/old/pg_taskevents.control" "$UP_DIR/old/pg_taskevents--$UP_OLD_VERSION.sql" \
    "$COPY_SHAREDIR/extension/"
}

up_install_current() {
  make -s -C "$PGTE_ROOT" install WITH_RELAY=no DESTDIR="$UP_PREFIX" >"$UP_DIR/install.log" 2>&1 \
    || { cat "$UP_DIR/install.log"; fail "make install of the current build failed"; }
}

# up_setup NAME [relay]
up_setup() {
  up_require_pg15
  UP_DIR=$(mktemp -d "${TMPDIR:-/tmp}/pgte-upgrade-$1.XXXXXX")
  chmod 755 "$UP_DIR"
  up_build_old "${2:-}"
  make -s -C "$PGTE_ROOT" WITH_RELAY=no >/dev/null || fail "make failed"
  up_copy_installation
  up_install_old
  # our own server, from the copy
  PG_BINDIR=$UP_BINDIR
  PGTE_PGPORT=$((PGTE_PGPORT + 3))
  PGTE_PGSTATE=$UP_DIR/state
  unset PGHOST
  pg_start
  PGTE_STARTED_PG=1
  [ "$(q -d postgres -c "SELECT default_version FROM pg_available_extensions WHERE name = 'pg_taskevents'")" = "$UP_OLD_VERSION" ] \
    || fail "the copy does not offer pg_taskevents $UP_OLD_VERSION"
}

up_cleanup() {
  release_pg
  [ -n "${UP_DIR:-}" ] && rm -rf "$UP_DIR"
  return 0
}
