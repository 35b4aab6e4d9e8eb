#!/usr/bin/env bash
# Profiles flowcast during the fanout-10k scenario: perf record -g on the
# server (CPU 0) while flowcast-bench (CPU 1) drives it; writes the top
# symbols to build/bench-results/perf-fanout-10k.txt (a markdown fragment
# that bench/report.py puts into docs/benchmarks.md). Needs perf.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/lib.sh"
command -v perf >/dev/null || { fcb_log "perf not installed (apt-get install linux-perf)"; exit 1; }
resdir="$FCB_BUILD/bench-results"
mkdir -p "$resdir"
fcb_init
FCB_SIZE=full
fcb_start_flowcast "" || exit 1
perf record -q -g -F 999 -p "$SERVER_PID" -o "$FCB_TMP/perf.data" >/dev/null 2>&1 &
perf_pid=$!
FCB_PIDS+=("$perf_pid")
FCB_RESULTS="$FCB_TMP/profile.jsonl" fcb_bench flowcast fanout-10k --subscribers 10000 \
  --workflows 1 --publishers 64 --window 64 --rate 0 --duration 10
kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null
fcb_forget_pid "$perf_pid"
fcb_stop_server
{
  echo "\`perf record -g -F 999 -p <flowcast pid>\` during fanout-10k (10,000 subscribers,"
  echo "one workflow); self time by symbol, top 25 (\`perf report --no-children\`):"
  echo
  echo '```'
  perf report -i "$FCB_TMP/perf.data" --no-children --sort symbol --stdio 2>/dev/null |
    grep -E '^ +[0-9.]+%' | head -n 25 | sed 's/ *$//'
  echo '```'
  echo
  echo "By shared object:"
  echo
  echo '```'
  perf report -i "$FCB_TMP/perf.data" --no-children --sort dso --stdio 2>/dev/null |
    grep -E '^ +[0-9.]+%' | head -n 8 | sed 's/ *$//'
  echo '```'
} >"$resdir/perf-fanout-10k.txt"
fcb_log "wrote $resdir/perf-fanout-10k.txt"
