#!/usr/bin/env bash
# The cluster benchmarks (issue 10): three flowcast nodes on one PostgreSQL
# and one nats-server (bench/scenarios/cluster.sh): cross-node latency,
# durable changes/s through three nodes, the bus's cost on one node, and the
# time until the 10,000 watchers of a killed node resumed elsewhere. Prints
# the figures against their floors and puts them into docs/benchmarks.md as
# its cluster section (nothing else in the file changes).
#   bench/cluster.sh [--size full|tiny] [--runs N] [--no-doc] [--only "PARTS"]
# --only runs some of: latency ingest bus failover unpinned (e.g. --only
# latency: the pinned latency run alone; implies --no-doc, since the
# section would lose the other figures).
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
    --only) export FCB_CLUSTER_PARTS="$2"; doc=0; shift 2 ;;
    *) echo "usage: bench/cluster.sh [--size full|tiny] [--runs N] [--no-doc] [--only \"PARTS\"]" >&2; exit 2 ;;
  esac
done
resdir="$build/bench-results"
mkdir -p "$resdir"
out="$resdir/cluster-$size.jsonl" load="$resdir/cluster-$size.load"
rm -f "$out"
# The load average before and after: how busy the shared machine was.
echo "start $(cut -d' ' -f1-3 /proc/loadavg)" >"$load"
"$here/run.sh" --size "$size" --runs "$runs" --results "$out" cluster
rc=$?
echo "end $(cut -d' ' -f1-3 /proc/loadavg)" >>"$load"
/usr/bin/python3 "$here/report.py" --cluster "$out"
if [ "$doc" = 1 ]; then
  /usr/bin/python3 "$here/report.py" --cluster-doc "$root/docs/benchmarks.md" --load "$load" "$out"
fi
exit $rc
