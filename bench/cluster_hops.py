#!/usr/bin/env python3
"""Where a cluster latency run's time went (bench/scenarios/cluster.sh), hop
by hop, and how much of the machine's CPU other work took meanwhile.

  cluster_hops.py sample INFO.json > BEFORE.json
  cluster_hops.py add BEFORE.json INFO.json RESULTS.jsonl

`sample` reads each node's /metrics (the histograms
flowcast_commit_to_write_seconds: commit, or for a change from the bus its
publish, to the write to a watcher's socket; flowcast_bus_lag_seconds:
publish on one node to receipt on this one; flowcast_store_commit_seconds:
a change's submission to the store's writer to its commit), the busy time of every CPU
(/proc/stat) and the CPU time of the cluster's processes
(bench/cluster_cpu.py). `add` samples again and adds to the last line of
RESULTS.jsonl (flowcast-bench's run) "hops": per node, the % of that
window's commit→write, bus-lag and store-commit samples within 1, 2.5, 5
and 10 ms;
"cpu_share": each CPU's busy % of the window and the cluster's own % of a
core; "sched": what the cluster's threads spent per change on a CPU and
waiting on a run queue (/proc/TID/schedstat), and their wait per time they
were run: the cost of sharing the core, wake-up by wake-up. With the cluster pinned to CPU 0, CPU 0's busy share less
the cluster's is other work on the machine competing for that core."""

import json
import os
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster_cpu  # noqa: E402

HISTS = {"commit_to_write": "flowcast_commit_to_write_seconds",
         "bus_lag": "flowcast_bus_lag_seconds",
         "store_commit": "flowcast_store_commit_seconds"}
# The buckets reported, as "le_<µs>us" (no dot: the report's paths split on dots).
WITHIN = {"0.001": "le_1000us", "0.0025": "le_2500us", "0.005": "le_5000us", "0.01": "le_10000us"}


def _buckets(port):
    """{hop: {le: count}} from a node's /metrics; {} when it does not answer."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out = {k: {} for k in HISTS}
    for line in text.splitlines():
        for hop, name in HISTS.items():
            pre = name + '_bucket{le="'
            if line.startswith(pre):
                le, _, n = line[len(pre):].partition('"} ')
                out[hop][le] = float(n)
    return out


def _cpus():
    """{cpuN: busy seconds} from /proc/stat (everything but idle and iowait)."""
    hz = os.sysconf("SC_CLK_TCK")
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            k, *v = line.split()
            if k.startswith("cpu") and k != "cpu":
                v = [int(x) for x in v]
                out[k] = (sum(v[:8]) - v[3] - v[4]) / hz
    return out


def _sched(cl):
    """{tid: [ns on a CPU, ns waiting on a run queue, times run]} of every
    thread of the cluster's processes (/proc/TID/schedstat)."""
    pids = [n["pid"] for n in cl["nodes"]] + [cl.get("nats_pid")]
    pm = cl.get("postgres_pid")
    if pm:
        pids += [pm] + cluster_cpu._children(pm)
    out = {}
    for pid in filter(None, pids):
        try:
            tids = os.listdir("/proc/%d/task" % pid)
        except OSError:
            continue
        for t in tids:
            try:
                with open("/proc/%d/task/%s/schedstat" % (pid, t)) as f:
                    out[t] = [int(x) for x in f.read().split()]
            except OSError:
                pass
    return out


def sample(info):
    with open(info) as f:
        cl = json.load(f)
    return {"t": time.monotonic(), "cpus": _cpus(), "procs": cluster_cpu.sample(info),
            "sched": _sched(cl), "nodes": [_buckets(n["port"]) for n in cl["nodes"]]}


def _waits(before, after, changes):
    """The cluster's threads over the window (those alive at both ends):
    CPU and run-queue wait per change (µs) and wait per time run (µs)."""
    run = wait = slices = 0
    for t, a in after.items():
        b = before.get(t)
        if b:
            run, wait, slices = run + a[0] - b[0], wait + a[1] - b[1], slices + a[2] - b[2]
    if not changes or not slices:
        return None
    return {"run_us_per_change": round(run / 1e3 / changes, 1),
            "wait_us_per_change": round(wait / 1e3 / changes, 1),
            "wait_us_per_wakeup": round(wait / 1e3 / slices, 1)}


def _shares(before, after):
    """{le_<µs>us: % of the window's samples within it}, "n": the count."""
    total = after.get("+Inf", 0) - before.get("+Inf", 0)
    if total <= 0:
        return None
    out = {"n": int(total)}
    for le, key in WITHIN.items():
        out[key] = round(100 * (after.get(le, 0) - before.get(le, 0)) / total, 2)
    return out


def _amend(run, before, after):
    hops = []
    for b, a in zip(before["nodes"], after["nodes"]):
        hops.append({hop: _shares(b.get(hop, {}), a.get(hop, {})) for hop in HISTS})
    run["hops"] = hops
    waits = _waits(before.get("sched", {}), after["sched"], run.get("pub_acked") or 0)
    if waits:
        run["sched"] = waits
    wall = after["t"] - before["t"]
    if wall > 0:
        share = {k: round(100 * (after["cpus"][k] - before["cpus"].get(k, 0)) / wall, 1)
                 for k in after["cpus"]}
        share["cluster"] = round(100 * sum(after["procs"][k] - before["procs"].get(k, 0)
                                           for k in after["procs"]) / wall, 1)
        run["cpu_share"] = share


if __name__ == "__main__":
    sys.exit(cluster_cpu.cli(sys.argv, __doc__, sample, _amend))
