#!/usr/bin/env bash
# Build the cloudevent fuzz target two ways into test/fuzz/build/:
#   replay  - cc with ASan+UBSan and a small main() (replay_main.c): runs the
#             kept corpus, for the test suite (test/0590);
#   fuzz    - clang with libFuzzer+ASan+UBSan (needs libclang-rt-14-dev,
#             installed here when missing): for test/fuzz/run.sh.
# Usage: test/fuzz/build.sh [replay|fuzz|all]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=$HERE/build
mkdir -p "$OUT"
what=${1:-all}
SRC=("$HERE/fuzz_cloudevent.c" "$ROOT/relay/cloudevent.c")
FLAGS=(-g -O1 -I"$ROOT/relay" -fno-omit-frame-pointer)
if [ "$what" = replay ] || [ "$what" = all ]; then
  if echo 'int main(void){return 0;}' | cc -x c -fsanitize=address,undefined -o "$OUT/.probe" - 2>/dev/null; then
    # shellcheck disable=SC2054  # the commas belong to the flag
    SAN=(-fsanitize=address,undefined -fno-sanitize-recover=all)
    echo "ASan+UBSan" >"$OUT/replay.sanitizers"
  else
    SAN=()
    echo "no sanitizers (the compiler has no ASan runtime)" >"$OUT/replay.sanitizers"
  fi
  cc "${FLAGS[@]}" "${SAN[@]}" -o "$OUT/replay" "${SRC[@]}" "$HERE/replay_main.c" -ljansson
  rm -f "$OUT/.probe"
fi
if [ "$what" = fuzz ] || [ "$what" = all ]; then
  CLANG=$(command -v clang || command -v clang-14 || true)
  [ -n "$CLANG" ] || { echo "build.sh: clang not found" >&2; exit 1; }
  if ! echo 'int LLVMFuzzerTestOneInput(const char *d, long n){return 0;}' \
       | "$CLANG" -x c -fsanitize=fuzzer -o "$OUT/.probe" - 2>/dev/null; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends libclang-rt-14-dev >/dev/null
  fi
  rm -f "$OUT/.probe"
  "$CLANG" "${FLAGS[@]}" -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -o "$OUT/fuzz" "${SRC[@]}" -ljansson
fi
