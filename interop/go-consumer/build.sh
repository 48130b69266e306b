#!/usr/bin/env bash
# interop/go-consumer/build.sh: build the Go interop consumer into
# .cache/go/ at the top of the checkout (ignored by git) and print the
# binary's path (go_build of scripts/lib/common.sh: rebuilt only when a
# source file is newer than the binary).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/common.sh"
go_build "$(dirname "${BASH_SOURCE[0]}")" go-consumer GOFLAGS=-mod=mod
