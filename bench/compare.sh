#!/usr/bin/env bash
# Side by side: seed, fanout-1k, fanout-10k and capacity against flowcast,
# Node ws and nginx+nchan in one invocation; prints every figure with its
# ratio flowcast/peer and rewrites docs/benchmarks.md.
#   bench/compare.sh [--size full|tiny] [--runs N] [--no-doc]
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
build="${FCB_BUILD:-$root/build}"
size=full runs=3 doc=1
while [ $# -gt 0 ]; do
  case "$1" in
    --size) size="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --no-doc) doc=0; shift ;;
    *) echo "usage: bench/compare.sh [--size full|tiny] [--runs N] [--no-doc]" >&2; exit 2 ;;
  esac
done
resdir="$build/bench-results"
mkdir -p "$resdir"
out="$resdir/compare-$size.jsonl"
rm -f "$out"
"$here/run.sh" --size "$size" --runs "$runs" --targets "flowcast ws nchan" --results "$out" \
  seed fanout-1k fanout-10k capacity
rc=$?
/usr/bin/python3 "$here/report.py" --compare "$out"
if [ "$doc" = 1 ]; then
  /usr/bin/python3 "$here/report.py" --perf "$resdir/perf-fanout-10k.txt" \
    --out "$root/docs/benchmarks.md" "$resdir/results-full.jsonl" "$out"
fi
exit $rc
