#!/usr/bin/env bash
# TLS side by side (issue 9): flowcast's own TLS against nginx + nchan
# terminating TLS, same certificate, same load, same run: bytes per idle TLS
# connection, full handshakes per server CPU-second, deliveries per server
# CPU-second at 1,000 wss subscribers; and the cost of JWT verification per
# connect (flowcast only). Prints the figures with ratios and puts them into
# docs/benchmarks.md as its TLS section (nothing else in the file changes).
#   bench/tls.sh [--size full|tiny] [--runs N] [--no-doc]
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
    *) echo "usage: bench/tls.sh [--size full|tiny] [--runs N] [--no-doc]" >&2; exit 2 ;;
  esac
done
resdir="$build/bench-results"
mkdir -p "$resdir"
out="$resdir/tls-$size.jsonl" load="$resdir/tls-$size.load"
rm -f "$out"
# The load average before and after: how busy the shared machine was.
echo "start $(cut -d' ' -f1-3 /proc/loadavg)" >"$load"
"$here/run.sh" --size "$size" --runs "$runs" --targets "flowcast nchan" --results "$out" \
  tls-idle tls-handshake tls-fanout-1k jwt-connect
rc=$?
echo "end $(cut -d' ' -f1-3 /proc/loadavg)" >>"$load"
/usr/bin/python3 "$here/report.py" --tls "$out"
if [ "$doc" = 1 ]; then
  /usr/bin/python3 "$here/report.py" --tls-doc "$root/docs/benchmarks.md" --load "$load" "$out"
fi
exit $rc
