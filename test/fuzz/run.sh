#!/usr/bin/env bash
# Fuzz the relay's outbox-row handling (relay/cloudevent.c) with libFuzzer
# for a fixed budget; a benchmark-like run, not part of scripts/test.
# New interesting inputs are merged into test/fuzz/corpus/ (keep them: the
# suite replays them, test/0590), crashes land in test/fuzz/crashes/ (copy a
# fixed one into the corpus as its regression input).
# Usage: test/fuzz/run.sh [SECONDS=60]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SECS=${1:-60}
"$HERE/build.sh" fuzz
mkdir -p "$HERE/crashes" "$HERE/build/new"
rc=0
"$HERE/build/fuzz" -max_total_time="$SECS" -max_len=4096 -timeout=10 -print_final_stats=1 \
  -artifact_prefix="$HERE/crashes/" -dict="$HERE/cloudevent.dict" "$HERE/build/new" "$HERE/corpus" \
  >"$HERE/build/fuzz.log" 2>&1 || rc=$?
tail -n 15 "$HERE/build/fuzz.log"
# keep a minimal corpus: merge what the run found into corpus/
"$HERE/build/fuzz" -merge=1 "$HERE/corpus" "$HERE/build/new" >"$HERE/build/merge.log" 2>&1 || true
rm -rf "$HERE/build/new"
echo "corpus: $(find "$HERE/corpus" -mindepth 1 -maxdepth 1 | wc -l) inputs; crashes: $(find "$HERE/crashes" -mindepth 1 -maxdepth 1 | wc -l)"
exit $rc
