#!/usr/bin/env bash
# Profiles flowcast during fan-out to 10,000 subscribers, two ways, and writes
# build/bench-results/perf-fanout-10k.txt (a markdown fragment that
# bench/report.py puts into docs/benchmarks.md):
# - perf record -g on the server (CPU 0) during fanout-10k while
#   flowcast-bench (CPU 1) drives it: where the CPU goes, kernel included;
# - valgrind --tool=callgrind on a lighter load (the server runs ~50x slower
#   under it): flowcast's own code, instruction by instruction, which perf
#   sees only as a small slice next to the kernel.
# Needs perf and valgrind (scripts/setup-bench).
#   bench/profile.sh        the above
#   bench/profile.sh tls    perf only, flowcast over TLS (--tls-cert) during
#                           the tls-handshake churn and tls-fanout-1k, into
#                           build/bench-results/perf-tls-{handshake,fanout}.txt
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/lib.sh"
command -v perf >/dev/null || { fcb_log "perf not installed (apt-get install linux-perf)"; exit 1; }
resdir="$FCB_BUILD/bench-results"
mkdir -p "$resdir"
fcb_init
FCB_SIZE=full

# The top N rows of the perf profile by KEY (symbol, dso), self time.
perf_top() {
  perf report -i "$FCB_TMP/perf.data" --no-children --sort "$1" --stdio 2>/dev/null |
    grep -E '^ +[0-9.]+%' | head -n "$2" | sed 's/ *$//'
}

# perf_tls NAME flowcast-bench-flags...: flowcast with TLS under perf record
# while flowcast-bench runs with the flags; self time by symbol and by
# shared object into perf-tls-NAME.txt.
perf_tls() {
  local name="$1"; shift
  FCB_TLS=1 fcb_start_flowcast "" || return 1
  perf record -q -g -F 999 -p "$SERVER_PID" -o "$FCB_TMP/perf.data" >/dev/null 2>&1 &
  local perf_pid=$!
  FCB_PIDS+=("$perf_pid")
  FCB_TLS=1 FCB_RESULTS="$FCB_TMP/profile.jsonl" fcb_bench flowcast "$name" "$@"
  kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null
  fcb_forget_pid "$perf_pid"
  fcb_stop_server
  {
    echo "\`perf record -g -F 999 -p <flowcast pid>\` (flowcast over TLS) during $name;"
    echo "self time by symbol, top 30, then by shared object:"
    echo
    echo '```'
    perf_top symbol 30
    echo '```'
    echo
    echo '```'
    perf_top dso 10
    echo '```'
  } >"$resdir/perf-tls-$name.txt"
  fcb_log "wrote $resdir/perf-tls-$name.txt"
}

if [ "${1:-}" = tls ]; then
  perf_tls handshake --churn 10000 --churn-stage tls --connect-concurrency 32 --duration 60 &&
    perf_tls fanout --subscribers 1000 --workflows 1 --publishers 1 --pipeline 8 --window 64 \
      --rate 0 --duration 10
  exit $?
fi
command -v valgrind >/dev/null || { fcb_log "valgrind not installed (apt-get install valgrind)"; exit 1; }
fcb_start_flowcast "" || exit 1
perf record -q -g -F 999 -p "$SERVER_PID" -o "$FCB_TMP/perf.data" >/dev/null 2>&1 &
perf_pid=$!
FCB_PIDS+=("$perf_pid")
FCB_RESULTS="$FCB_TMP/profile.jsonl" fcb_bench flowcast fanout-10k --subscribers 10000 \
  --workflows 1 --publishers 64 --window 64 --rate 0 --duration 10
kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null
fcb_forget_pid "$perf_pid"
fcb_stop_server

# callgrind: 10,000 subscribers, 20 changes/s for 5 s (200,000 deliveries a
# second would take minutes under valgrind). A graceful stop writes the
# profile, and closing 10,000 connections under valgrind takes a while.
FCB_WAIT_S=60 FCB_WRAP="valgrind --tool=callgrind --callgrind-out-file=$FCB_TMP/callgrind.out" \
  fcb_start_flowcast "" || exit 1
FCB_RESULTS="$FCB_TMP/profile.jsonl" fcb_bench flowcast fanout-10k-callgrind --subscribers 10000 \
  --workflows 1 --publishers 4 --rate 20 --duration 5 --drain 60 --connect-concurrency 64
kill -TERM "$SERVER_PID"
for _ in $(seq 1200); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
fcb_stop_server
[ -s "$FCB_TMP/callgrind.out" ] || { fcb_log "callgrind wrote no profile"; exit 1; }

{
  echo "\`perf record -g -F 999 -p <flowcast pid>\` during fanout-10k (10,000 subscribers,"
  echo "one workflow); self time by symbol, top 25 (\`perf report --no-children\`):"
  echo
  echo '```'
  perf_top symbol 25
  echo '```'
  echo
  echo "By shared object:"
  echo
  echo '```'
  perf_top dso 8
  echo '```'
  echo
  echo "\`valgrind --tool=callgrind\` on the server (user space only) during a lighter fan-out:"
  echo "10,000 subscribers on one workflow, 20 changes/s for 5 s (\`--rate 20\`), including"
  echo "the 10,000 handshakes; instructions by function, top 25 (\`callgrind_annotate\`):"
  echo
  echo '```'
  callgrind_annotate --inclusive=no "$FCB_TMP/callgrind.out" 2>/dev/null |
    grep -E '^ *[0-9,]+ +\(' | head -n 25 | sed -e 's/ *$//' -e 's#/[^ ]*/##'
  echo '```'
} >"$resdir/perf-fanout-10k.txt"
fcb_log "wrote $resdir/perf-fanout-10k.txt"
