# shellcheck shell=bash
# PostgreSQL servers of the version matrix (15, 17, 18) on a Debian 12
# machine, provisioned on first use and cached outside the checkout under
# $PGTE_CACHE (default /var/cache/pg_taskevents), so a second run on the
# same machine starts at once.  Source it after scripts/lib/common.sh.
#
#   15  Debian 12's own packages (postgresql-15, postgresql-server-dev-15).
#   17  Debian 13 (trixie)'s binary packages postgresql-17 and
#       postgresql-server-dev-17 in a `debootstrap --variant=minbase trixie`
#       chroot: another release's packages never go into the host system.
#       The extension is built, installed and its SQL suites are run inside
#       the chroot; the server runs there too, and the host reaches it over
#       its socket (the chroot's socket directory seen from outside) and TCP.
#   18  built from Debian's source package (sid), upstream sources only:
#       ./configure --without-icu --without-readline --without-llvm into
#       $PGTE_CACHE/pg18/install, plus the isolation tester.  Runs natively.
#
# The Debian mirror is the host's (its apt sources), with private apt state
# and source lists under $PGTE_CACHE/apt: the host's sources.list is never
# changed.  PGTE_DEBIAN_MIRROR overrides it.

PGTE_CACHE=${PGTE_CACHE:-/var/cache/pg_taskevents}
PGV_CHROOT=$PGTE_CACHE/trixie-pg17
PGV_PG18=$PGTE_CACHE/pg18

pgv_sudo() { if [ "$(id -u)" -ne 0 ]; then sudo "$@"; else "$@"; fi; }

# The host's Debian mirror: the first non-security URI of its apt sources.
debian_mirror() {
  [ -n "${PGTE_DEBIAN_MIRROR:-}" ] && { echo "$PGTE_DEBIAN_MIRROR"; return; }
  local m f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    m=$(awk '/^URIs:/ { u = $2 } /^$/ { u = "" }
             /^Suites:/ && u != "" && $0 !~ /security/ { print u; exit }' "$f")
    [ -n "$m" ] && { echo "$m"; return; }
  done
  m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
      awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }')
  [ -n "$m" ] || die "no Debian mirror in the host's apt sources; set PGTE_DEBIAN_MIRROR"
  echo "$m"
}

# pgv_apt_private ARGS...: apt-get with a private source list and state
# ($PGTE_CACHE/apt), for looking up and downloading sid's source package.
pgv_apt_private() {
  local d=$PGTE_CACHE/apt
  mkdir -p "$d/parts" "$d/state/lists/partial" "$d/cache/archives/partial" "$d/prefs"
  if [ ! -s "$d/sources.list" ]; then
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $(debian_mirror) sid main" >"$d/sources.list"
  fi
  apt-get -q -o Dir::Etc::SourceList="$d/sources.list" -o Dir::Etc::SourceParts="$d/parts" \
    -o Dir::Etc::Preferences="$d/prefs/none" -o Dir::Etc::PreferencesParts="$d/prefs" \
    -o Dir::State="$d/state" -o Dir::State::Lists="$d/state/lists" -o Dir::Cache="$d/cache" \
    -o Dir::State::status=/var/lib/dpkg/status -o APT::Sandbox::User=root "$@"
}

# pgv_lock DIR / pgv_unlock: hold an exclusive lock on DIR.lock while a
# cache folder is checked and built, so that a second build of the same
# cache (a CI run beside scripts/pgindent, two checkouts) waits for the
# first and then uses its result instead of building in the same folder.
# Released by pgv_unlock or when the process exits (die).
pgv_lock() { mkdir -p "$(dirname "$1")"; exec {PGV_LOCK_FD}>"$1.lock"; flock "$PGV_LOCK_FD"; }
pgv_unlock() { exec {PGV_LOCK_FD}>&-; }

# --- PostgreSQL 18: built from source -----------------------------------

# Build (once) and print the pg_config of PostgreSQL 18.
pgv_pg18_config() {
  local inst=$PGV_PG18/install
  pgv_lock "$PGV_PG18"
  if [ -f "$PGV_PG18/.complete" ] && [ -x "$inst/bin/pg_config" ]; then
    pgv_unlock; echo "$inst/bin/pg_config"; return 0
  fi
  PGTE_PACKAGES="bison flex zlib1g-dev libssl-dev dpkg-dev" ensure_packages
  local t0=$SECONDS src
  rm -rf "$PGV_PG18"; mkdir -p "$PGV_PG18/src"
  log "PostgreSQL 18: fetching Debian's source package (sid) with a private apt configuration"
  pgv_apt_private update >"$PGV_PG18/apt.log" 2>&1 || { cat "$PGV_PG18/apt.log" >&2; die "apt-get update (private sid sources) failed"; }
  (cd "$PGV_PG18/src" && pgv_apt_private source --download-only postgresql-18) >>"$PGV_PG18/apt.log" 2>&1 \
    || { tail -20 "$PGV_PG18/apt.log" >&2; die "apt-get source postgresql-18 failed"; }
  src=$(compgen -G "$PGV_PG18/src/postgresql-18_*.orig.tar.*" | head -1 || true)
  [ -n "$src" ] || die "no upstream tarball in postgresql-18's source package"
  log "PostgreSQL 18: building $(basename "$src") (a few minutes on 2 cores)"
  tar -xf "$src" -C "$PGV_PG18/src"
  local dir
  dir=$(find "$PGV_PG18/src" -maxdepth 1 -type d -name 'postgresql-18*' | head -1)
  (
    cd "$dir"
    ./configure --prefix="$inst" --without-icu --without-readline --without-llvm \
      --with-openssl >"$PGV_PG18/configure.log" 2>&1 || { tail -30 "$PGV_PG18/configure.log" >&2; exit 1; }
    make -s -j"$(nproc)" >"$PGV_PG18/make.log" 2>&1 || { tail -30 "$PGV_PG18/make.log" >&2; exit 1; }
    make -s install >>"$PGV_PG18/make.log" 2>&1 &&
      make -s -C src/test/isolation install >>"$PGV_PG18/make.log" 2>&1 || { tail -30 "$PGV_PG18/make.log" >&2; exit 1; }
  ) || die "building PostgreSQL 18 failed (logs in $PGV_PG18)"
  rm -rf "$dir"   # keep the tarball, drop the build tree
  touch "$PGV_PG18/.complete"
  pgv_unlock
  log "PostgreSQL 18 built in $((SECONDS - t0)) s: $inst"
  echo "$inst/bin/pg_config"
}

# --- PostgreSQL 17: a trixie chroot --------------------------------------

# Create (once) the trixie chroot with PostgreSQL 17 and a compiler.
pgv_pg17_chroot() {
  local r=$PGV_CHROOT/root
  pgv_lock "$PGV_CHROOT"
  if [ -f "$PGV_CHROOT/.complete" ] && [ -x "$r/usr/lib/postgresql/17/bin/pg_config" ]; then
    pgv_unlock; return 0
  fi
  PGTE_PACKAGES="debootstrap" ensure_packages
  local t0=$SECONDS mirror
  mirror=$(debian_mirror)
  rm -rf "$PGV_CHROOT"; mkdir -p "$PGV_CHROOT"
  log "PostgreSQL 17: debootstrap --variant=minbase trixie (a few minutes)"
  pgv_sudo debootstrap --variant=minbase trixie "$r" "$mirror" >"$PGV_CHROOT/debootstrap.log" 2>&1 \
    || { tail -20 "$PGV_CHROOT/debootstrap.log" >&2; die "debootstrap trixie failed"; }
  # The server packages want to create a cluster and start it: they must not.
  mkdir -p "$r/etc/postgresql-common/createcluster.d"
  echo "create_main_cluster = false" >"$r/etc/postgresql-common/createcluster.d/pgte.conf"
  printf '#!/bin/sh\nexit 101\n' >"$r/usr/sbin/policy-rc.d"; chmod 755 "$r/usr/sbin/policy-rc.d"
  pgv_chroot_run apt-get update -q >>"$PGV_CHROOT/debootstrap.log" 2>&1 &&
  pgv_chroot_run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      postgresql-17 postgresql-server-dev-17 postgresql-client-17 gcc make libc6-dev \
      >>"$PGV_CHROOT/debootstrap.log" 2>&1 \
    || { tail -20 "$PGV_CHROOT/debootstrap.log" >&2; die "installing postgresql-17 in the chroot failed"; }
  pgv_chroot_run apt-get clean >/dev/null 2>&1 || true
  touch "$PGV_CHROOT/.complete"
  pgv_unlock
  log "PostgreSQL 17 chroot ready in $((SECONDS - t0)) s: $r"
}

# pgv_chroot_run CMD...: run CMD in the trixie chroot, with a clean
# environment (the host's PATH and locale mean nothing there).
pgv_chroot_run() {
  pgv_sudo chroot "$PGV_CHROOT/root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LANG=C.UTF-8 "$@"
}

# --- choosing a version ------------------------------------------------

# pgv_use VERSION: provision VERSION if needed and point the helpers of
# common.sh at it (PG_CONFIG, PG_BINDIR, PATH; PGTE_CHROOT for 17).  15
# keeps PG_CONFIG as it is (Debian's, or a private copy).
pgv_use() {
  case $1 in
    15) ;;
    17)
      pgv_pg17_chroot
      export PGTE_CHROOT=$PGV_CHROOT/root PGTE_CHROOT_BINDIR=/usr/lib/postgresql/17/bin
      # shellcheck disable=SC2034  # read by pg_start (common.sh)
      PGTE_PGSTATE=$PGTE_CHROOT/var/tmp/pgte-pg-$PGTE_PGPORT
      ;;
    18)
      PG_CONFIG=$(pgv_pg18_config) || exit 1
      export PG_CONFIG
      PG_BINDIR=$("$PG_CONFIG" --bindir)
      export PATH=$PG_BINDIR:$PATH   # its own psql, pg_dump, ...
      ;;
    *) die "PostgreSQL $1 is not in the matrix (15, 17, 18)" ;;
  esac
  local v
  v=$(pgv_pg_config --version) || die "no pg_config for PostgreSQL $1"
  case $v in "PostgreSQL $1".*) ;; *) die "PostgreSQL $1 wanted, $v found (PG_CONFIG=$PG_CONFIG)" ;; esac
}

# pgv_pg_config ARGS...: the chosen version's pg_config.
pgv_pg_config() {
  if [ -n "${PGTE_CHROOT:-}" ]; then
    pgv_chroot_run "$PGTE_CHROOT_BINDIR/pg_config" "$@"
  else
    "$PG_CONFIG" "$@"
  fi
}

# The checkout as built inside the chroot: a copy of the working tree
# (uncommitted changes included, build products and .git left out).
PGV_CHROOT_SRC=/build/pg_taskevents

# pgv_build_install: build and install the extension for the chosen
# version (and, natively, the relay: the relay is the host's in any case).
pgv_build_install() {
  if [ -z "${PGTE_CHROOT:-}" ]; then build_install; return; fi
  build_relay_host
  local dst=$PGTE_CHROOT$PGV_CHROOT_SRC
  rm -rf "$dst"; mkdir -p "$dst"
  # shellcheck disable=SC2153  # PGTE_ROOT: set by common.sh, sourced first
  tar -C "$PGTE_ROOT" --exclude=.git --exclude='*.o' --exclude='*.so' --exclude='*.bc' \
    --exclude=./results --exclude=./output_iso --exclude=./relay/taskevents-relay \
    --exclude=./test/kafka/target --exclude=./.cache -cf - . | tar -xf - -C "$dst"
  pgv_chroot_run make -C "$PGV_CHROOT_SRC" -s -j2 WITH_RELAY=no PG_CONFIG="$PGTE_CHROOT_BINDIR/pg_config" >/dev/null \
    || die "make failed (PostgreSQL 17, in the chroot)"
  pgv_chroot_run make -C "$PGV_CHROOT_SRC" -s install WITH_RELAY=no PG_CONFIG="$PGTE_CHROOT_BINDIR/pg_config" >/dev/null \
    || die "make install failed (PostgreSQL 17, in the chroot)"
}

build_relay_host() {
  make -C "$PGTE_ROOT" -s relay >/dev/null || die "relay build failed"
}

# The directory the extension was built in (for check-exports and the
# pg_regress output).
pgv_build_dir() {
  if [ -n "${PGTE_CHROOT:-}" ]; then echo "$PGTE_CHROOT$PGV_CHROOT_SRC"; else echo "$PGTE_ROOT"; fi
}

# pgv_installcheck: pg_regress and the isolation specs against the running
# server; prints regression.diffs on failure.
pgv_installcheck() {
  local status=0 dir
  dir=$(pgv_build_dir)
  if [ -n "${PGTE_CHROOT:-}" ]; then
    pgv_chroot_run env PGHOST="$(pg_inner "$PGHOST")" PGPORT="$PGPORT" PGUSER=postgres \
      make -C "$PGV_CHROOT_SRC" -s installcheck WITH_RELAY=no PG_CONFIG="$PGTE_CHROOT_BINDIR/pg_config" || status=$?
  else
    make -C "$PGTE_ROOT" -s installcheck || status=$?
  fi
  if [ $status -ne 0 ]; then
    local f
    for f in "$dir/regression.diffs" "$dir/output_iso/regression.diffs"; do
      [ -f "$f" ] && { echo "=== $f"; cat "$f"; }
    done
  fi
  return $status
}
