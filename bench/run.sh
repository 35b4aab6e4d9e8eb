#!/usr/bin/env bash
# Runs benchmark scenarios against one or more servers and collects one JSON
# line per run (flowcast-bench --json) in a results file.
#   bench/run.sh [--size full|tiny] [--runs N] [--targets "flowcast ws nchan"]
#                [--results FILE] [SCENARIO... | all]
# Scenarios: seed fanout-1k fanout-10k many-workflows ingest capacity storm
# io-threads (flowcast on both cores, one against two I/O threads); the TLS
# ones (bench/tls.sh): tls-idle tls-handshake tls-fanout-1k jwt-connect; the
# cluster (bench/cluster.sh): cluster. The server runs on CPU 0 and
# flowcast-bench on CPU 1 (taskset); ingest, storm and cluster run against
# flowcast only. Needs build/flowcast and build/flowcast-bench (make release)
# and, for the peers, scripts/setup-bench.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/lib.sh"
. "$here/scenarios/scenarios.sh"
. "$here/scenarios/tls.sh"
. "$here/scenarios/cluster.sh"

FCB_SIZE=full
runs=3
targets="flowcast"
FCB_RESULTS="${FCB_RESULTS:-$FCB_ROOT/build/bench-results/results.jsonl}"
scenarios=()
while [ $# -gt 0 ]; do
  case "$1" in
    --size) FCB_SIZE="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --targets) targets="$2"; shift 2 ;;
    --results) FCB_RESULTS="$2"; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    all) scenarios+=($FCB_SCENARIOS); shift ;;
    *) scenarios+=("$1"); shift ;;
  esac
done
[ ${#scenarios[@]} -eq 0 ] && scenarios=($FCB_SCENARIOS)
export FCB_RESULTS
mkdir -p "$(dirname "$FCB_RESULTS")"

for b in "$FCB_BUILD/flowcast" "$FCB_BUILD/flowcast-bench"; do
  [ -x "$b" ] || { fcb_log "$b is missing: run make first"; exit 1; }
done
fcb_init

failed=0
for s in "${scenarios[@]}"; do
  declare -F "fcb_scenario_$s" >/dev/null || { fcb_log "unknown scenario $s"; exit 2; }
  for t in $targets; do
    case " $FCB_FLOWCAST_ONLY " in *" $s "*) [ "$t" != flowcast ] && continue ;; esac
    for r in $(seq "$runs"); do
      fcb_log "$s on $t, run $r/$runs ($FCB_SIZE)"
      # flowcast-bench bounds each phase (connect, run, drain): no scenario hangs.
      if ! fcb_scenario_"$s" "$t" "$FCB_SIZE" "$r"; then
        fcb_log "FAILED: $s on $t run $r"; failed=$((failed + 1))
        fcb_stop_server
      fi
    done
  done
done
exit $((failed > 0))
