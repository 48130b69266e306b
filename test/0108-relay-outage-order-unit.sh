#!/usr/bin/env bash
# Per-key order across a broker outage, driven by hand through the relay's
# pipeline (relay/keys.c, relay/retry.c) with the producer, the window and
# the database stubbed (test/unit/pipeline_order.c): an event whose
# delivery timed out (an outage) holds its key, so that a later event of
# the key that was delivered meanwhile goes out again after it.  test/0530
# met this case once, under load, with a real broker; here it is the same
# every time.  Built with ASan+UBSan when the compiler has them.
set -euo pipefail
source "$(dirname "$0")/lib/pg.sh"   # fail, pass, PGTE_ROOT
R=$PGTE_ROOT/relay
OUT=$(mktemp -d "${TMPDIR:-/tmp}/pgte-unit.XXXXXX")
trap 'rm -rf "$OUT"' EXIT
SAN=()
if echo 'int main(void){return 0;}' | cc -x c -fsanitize=address,undefined -o "$OUT/probe" - 2>/dev/null; then
  # shellcheck disable=SC2054  # the commas belong to the flag
  SAN=(-fsanitize=address,undefined -fno-sanitize-recover=all)
fi
cc -g -O1 -Wall -Wextra -Werror -Wno-unused-parameter "${SAN[@]}" -I"$R" -o "$OUT/pipeline_order" \
  "$PGTE_ROOT/test/unit/pipeline_order.c" "$R/keys.c" "$R/retry.c" "$R/cloudevent.c" -ljansson \
  || fail "test/unit/pipeline_order.c does not build"
"$OUT/pipeline_order" >"$OUT/log" 2>&1 || { cat "$OUT/log"; fail "per-key order across an outage"; }
grep -q '^ok: the last copy of e2 went out after the last copy of e1' "$OUT/log" || { cat "$OUT/log"; fail "the check did not run"; }
pass "outage order: an event delivered ahead of an earlier one that timed out is sent again after it ($(grep -c '^ok' "$OUT/log") checks${SAN:+, ASan+UBSan})"
