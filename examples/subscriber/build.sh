#!/usr/bin/env bash
# examples/subscriber/build.sh: build the reference subscriber into .cache/go/
# at the top of the checkout (ignored by git) and print the binary's path
# (go_build of scripts/lib/common.sh: rebuilt only when a source file is
# newer than the binary; a static binary, for the subscriber's image).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/common.sh"
go_build "$(dirname "${BASH_SOURCE[0]}")" taskevents-subscriber CGO_ENABLED=0
