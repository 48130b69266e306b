# shellcheck shell=bash
# Shared helpers for scripts/ and test/: dependency installation and a
# throwaway PostgreSQL server (PG_CONFIG's, default Debian's 15; 17 and 18 through
# scripts/lib/pgversions.sh) run as an unprivileged user on a private
# port and socket directory.  Source it; it defines functions only.

PGTE_ROOT=${PGTE_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# The PostgreSQL installation to build against and run: PG_CONFIG (exported,
# so every make below uses it); PG_BINDIR defaults to its bindir.
export PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
PG_BINDIR=${PG_BINDIR:-$("$PG_CONFIG" --bindir 2>/dev/null || echo /usr/lib/postgresql/15/bin)}
# below the ephemeral port range (32768-60999), like every fixed port of the
# tests: a client socket cannot be holding it
PGTE_PGPORT=${PGTE_PGPORT:-25329}
PGTE_PGSTATE=${PGTE_PGSTATE:-${TMPDIR:-/tmp}/pgte-pg-$PGTE_PGPORT}

# Debian packages the build, tests and demo need.
PGTE_PACKAGES="postgresql-15 postgresql-server-dev-15 postgresql-client-15 build-essential
  librdkafka-dev libjansson-dev libmicrohttpd-dev libpq-dev kcat jq"

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
# run_kept LOG COMMAND...: run COMMAND, its output shown as it runs and kept
# in LOG; repeat_tail LINES LOG WHAT: repeat the end of a failed LOG, so that
# the tail of a long log (CI's) says what failed (scripts/test, scripts/ci)
run_kept() { local kept=$1; shift; "$@" > >(tee "$kept") 2>&1; }
repeat_tail() { echo; echo "--- $3 failed; its last $1 lines:"; tail -n "$1" "$2"; }

# Install whatever Debian package is missing (needs root, or sudo).
ensure_packages() {
  local missing=() p
  for p in $PGTE_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  local SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq -o DPkg::Lock::Timeout=600 >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    -o DPkg::Lock::Timeout=600 "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
}

# Build and install the extension (and the relay when it exists).
build_install() {
  local SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  make -C "$PGTE_ROOT" -s -j2 >/dev/null || die "make failed"
  $SUDO make -C "$PGTE_ROOT" -s install >/dev/null || die "make install failed"
}

# go_build DIR NAME [VAR=VALUE...]: build the Go program in DIR into
# ${PGTE_GO_BIN:-.cache/go at the top of the checkout}/NAME (ignored by
# git), with VAR=VALUE... in its environment, unless the binary is newer
# than every source file; print the binary's path.  Modules come through
# the Go module proxy into Go's module cache (outside the repository);
# go.sum pins them.
go_build() {
  local dir=$1 out=${PGTE_GO_BIN:-$PGTE_ROOT/.cache/go}/$2
  shift 2
  command -v go >/dev/null || { echo "go_build: go is not installed" >&2; return 1; }
  if [ ! -x "$out" ] || [ -n "$(find "$dir" -newer "$out" \( -name '*.go' -o -name go.mod -o -name go.sum \) | head -1)" ]; then
    mkdir -p "$(dirname "$out")"
    (cd "$dir" && env "$@" go build -trimpath -o "$out" .) >&2 || return 1
  fi
  echo "$out"
}

# install_script DIR: the extension's install script in DIR
# (pg_taskevents--X.Y.Z.sql, not an upgrade script A--B); nothing if none.
install_script() {
  local f
  for f in "$1"/pg_taskevents--*.sql; do
    case ${f##*/} in
      *--*--*) ;;
      *) [ -f "$f" ] && { echo "$f"; return 0; } ;;
    esac
  done
  return 0
}

# The server refuses to run as root: use the postgres system user then.
pg_user() {
  if [ "$(id -u)" -eq 0 ]; then echo postgres; else id -un; fi
}

as_pg_user() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# PGTE_CHROOT (set by scripts/lib/pgversions.sh for PostgreSQL 17): the
# server runs inside this chroot from PGTE_CHROOT_BINDIR (a path inside it).
# PGTE_PGSTATE is then a host path below the chroot; the server is given
# the same directory as seen from inside, and clients on the host reach its
# socket through the host path.
pg_inner() { echo "${1#"${PGTE_CHROOT:-}"}"; }

# pg_server PROGRAM ARGS...: a server program (initdb, pg_ctl) as the
# server's unprivileged user.
pg_server() {
  local prog=$1; shift
  if [ -n "${PGTE_CHROOT:-}" ]; then
    chroot --userspec="$(pg_chroot_ids)" "$PGTE_CHROOT" /usr/bin/env -i PATH=/usr/bin:/bin \
      HOME=/tmp LANG=C.UTF-8 "$PGTE_CHROOT_BINDIR/$prog" "$@"
  else
    as_pg_user "$PG_BINDIR/$prog" "$@"
  fi
}
pg_chroot_ids() { awk -F: '$1 == "postgres" { print $3 ":" $4 }' "$PGTE_CHROOT/etc/passwd"; }

# Start a fresh cluster; extra postgresql.conf lines come from $PGTE_PGCONF.
pg_start() {
  pg_stop quiet
  rm -rf "$PGTE_PGSTATE"
  mkdir -p "$PGTE_PGSTATE"
  if [ -n "${PGTE_CHROOT:-}" ]; then
    chown "$(pg_chroot_ids)" "$PGTE_PGSTATE"
  elif [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$PGTE_PGSTATE"
  fi
  local state
  state=$(pg_inner "$PGTE_PGSTATE")
  pg_server initdb -D "$state/data" -U postgres -A trust -E UTF8 \
    --locale=C.UTF-8 >"$PGTE_PGSTATE/initdb.log" 2>&1 || { cat "$PGTE_PGSTATE/initdb.log"; die "initdb failed"; }
  cat >>"$PGTE_PGSTATE/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PGTE_PGPORT
unix_socket_directories = '$state'
max_connections = 100
max_prepared_transactions = 10
log_min_messages = warning
${PGTE_PGCONF:-}
CONF
  pg_server pg_ctl -D "$state/data" -l "$state/server.log" -w -t 60 start >/dev/null \
    || { tail -20 "$PGTE_PGSTATE/server.log"; die "PostgreSQL did not start"; }
  export PGHOST="$PGTE_PGSTATE" PGPORT="$PGTE_PGPORT" PGUSER=postgres
}

pg_stop() {
  if [ -f "$PGTE_PGSTATE/data/postmaster.pid" ]; then
    pg_server pg_ctl -D "$(pg_inner "$PGTE_PGSTATE")/data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
  fi
}

pg_env() {
  export PGHOST="$PGTE_PGSTATE" PGPORT="$PGTE_PGPORT" PGUSER=postgres
}
