#!/usr/bin/env bash
# Per-key order across a broker outage, driven by hand through the relay's
# pipeline (relay/keys.c, relay/retry.c, relay/circuit.c) with the window
# and the database stubbed and librdkafka modelled by a queue with
# message.timeout.ms (test/unit/pipeline_order.c).  1: the broker goes away
# with two events of a key queued in librdkafka and comes back between
# their timeouts: the relay takes them back first, so the first cannot time
# out there while the second is delivered (4 Dec's CI run met that in
# test/0530: a later event first in the topic).  2: the second was already
# in a request: it is sent again after the first.  The same every time;
# built with ASan+UBSan when the compiler has them.
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
  "$PGTE_ROOT/test/unit/pipeline_order.c" "$R/keys.c" "$R/retry.c" "$R/circuit.c" "$R/cloudevent.c" -ljansson \
  || fail "test/unit/pipeline_order.c does not build"
"$OUT/pipeline_order" >"$OUT/log" 2>&1 || { cat "$OUT/log"; fail "per-key order across an outage"; }
grep -q '^ok: e4 reached the topic before e5' "$OUT/log" && grep -q '^ok: the last copy of e2 went out after the last copy of e1' "$OUT/log" ||
  { cat "$OUT/log"; fail "the checks did not run"; }
pass "outage order: the relay takes back the producer's queue before message.timeout.ms, so a later event of a key never reaches the topic first; one already in a request is sent again after the earlier one ($(grep -c '^ok' "$OUT/log") checks${SAN:+, ASan+UBSan})"
