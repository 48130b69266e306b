#!/usr/bin/env bash
# examples/subscriber/build.sh: build the reference subscriber into .cache/go/
# at the top of the checkout (ignored by git) and print the binary's path.
# Modules come through the Go module proxy into Go's module cache (outside
# the repository); go.sum pins them.  Rebuilds only when a source file is
# newer than the binary.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${PGTE_GO_BIN:-$root/.cache/go}/taskevents-subscriber
command -v go >/dev/null || { echo "build.sh: go is not installed" >&2; exit 1; }
if [ ! -x "$out" ] || [ -n "$(find "$here" -newer "$out" \( -name '*.go' -o -name go.mod -o -name go.sum \) | head -1)" ]; then
  mkdir -p "$(dirname "$out")"
  (cd "$here" && CGO_ENABLED=0 go build -trimpath -o "$out" .) >&2
fi
echo "$out"
