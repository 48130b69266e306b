#!/usr/bin/env bash
# Fault matrix 12 (regression half): replay the kept fuzz corpus of the
# relay's outbox-row handling (test/fuzz/corpus/, grown by test/fuzz/run.sh
# with libFuzzer) and any crash inputs kept in test/fuzz/crashes/ through
# the fuzz target built without libFuzzer, with ASan and UBSan: no memory
# error, every contract of the target holds. 
set -euo pipefail
source "$(dirname "$0")/lib/pg.sh"
FZ=$PGTE_ROOT/test/fuzz
"$FZ/build.sh" replay >/dev/null 2>&1 || fail "replay build failed"
shopt -s nullglob
inputs=("$FZ"/corpus/* "$FZ"/crashes/*)
[ ${#inputs[@]} -ge 10 ] || fail "corpus too small: ${#inputs[@]} inputs"
out=$("$FZ/build/replay" "${inputs[@]}" 2>&1) || fail "replay failed: $(echo "$out" | tail -20)"
echo "$out" | grep -q "^replayed ${#inputs[@]} inputs$" || fail "not every input replayed: $out"
pass "fuzz corpus: ${#inputs[@]} inputs through ce_scan/ce_unescape/ce_without_data under $(cat "$FZ/build/replay.sanitizers"), no failure"
