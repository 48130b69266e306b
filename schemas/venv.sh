#!/usr/bin/env bash
# schemas/venv.sh: create (once) the Python virtual environment the schema
# and manifest tests use, in .cache/py at the top of the checkout (ignored by
# git), with the pinned packages of schemas/requirements.txt; print the path
# of its python.  Re-installs when requirements.txt changes.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${PGTE_VENV:-$root/.cache/py}
req=$root/schemas/requirements.txt
stamp=$venv/.requirements-$(sha1sum "$req" | cut -c1-12)
if [ ! -f "$stamp" ]; then
  # Debian's python3 has no venv module without the python3-venv package
  if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >&2
  fi
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$req" >&2
  touch "$stamp"
fi
echo "$venv/bin/python"
