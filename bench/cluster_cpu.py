#!/usr/bin/env python3
"""CPU seconds per process of a bench cluster (bench/scenarios/cluster.sh),
so the report can say where the CPU of a durable change goes.

  cluster_cpu.py sample INFO.json > BEFORE.json
  cluster_cpu.py add BEFORE.json INFO.json RESULTS.jsonl

`sample` reads user + system CPU time from /proc for: PostgreSQL (the
postmaster, its children alive now, and through the postmaster's cutime and
cstime the children that exited: a backend that ends within the window is
still counted), each node, nats-server. `add` samples again and adds to the
last line of RESULTS.jsonl (flowcast-bench's run) "procs_cpu_s": the CPU
seconds of each over the window, and "procs_cpu_us_per_change": the same
per durable change the run committed (acknowledged changes plus the
workflows it created), with the bench's own CPU (its "bench.cpu_s") beside
them. The window is the bench process's whole run (its connect and create
phases too), which is why the creates count as changes."""

import json
import os
import sys

HZ = os.sysconf("SC_CLK_TCK")


def _stat(pid):
    """(utime + stime, cutime + cstime) in seconds, or None when gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    f = s[s.rindex(")") + 2:].split()  # fields from 3 (state) on
    return (int(f[11]) + int(f[12])) / HZ, (int(f[13]) + int(f[14])) / HZ


def _children(pid):
    out = []
    try:
        for t in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, t)) as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def sample(info):
    with open(info) as f:
        cl = json.load(f)
    out = {}
    pm = cl.get("postgres_pid")
    if pm:
        own = _stat(pm)
        if own:
            total = own[0] + own[1]
            for c in _children(pm):
                st = _stat(c)
                if st:
                    total += st[0]
            out["postgres"] = total
    for i, n in enumerate(cl["nodes"]):
        st = _stat(n["pid"])
        if st:
            out["node%d" % (i + 1)] = st[0]
    if cl.get("nats_pid"):
        st = _stat(cl["nats_pid"])
        if st:
            out["nats-server"] = st[0]
    return out


def amend_last_run(before_path, info, results, sample, amend):
    """The bench's `add` step: samples again (sample(info)), and rewrites
    the last run of the results file (JSON lines) with amend(run, before,
    after) applied; the file is replaced whole, so a reader never sees half.
    Returns the exit status (1: no run to amend)."""
    with open(before_path) as f:
        before = json.load(f)
    after = sample(info)
    with open(results) as f:
        lines = f.read().splitlines()
    if not lines:
        return 1
    run = json.loads(lines[-1])
    amend(run, before, after)
    lines[-1] = json.dumps(run, separators=(",", ":"))
    with open(results + ".tmp", "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(results + ".tmp", results)
    return 0


def cli(argv, doc, sample, amend):
    """`sample INFO` prints a sample; `add BEFORE INFO RESULTS` amends."""
    if len(argv) == 3 and argv[1] == "sample":
        json.dump(sample(argv[2]), sys.stdout)
        return 0
    if len(argv) == 5 and argv[1] == "add":
        return amend_last_run(argv[2], argv[3], argv[4], sample, amend)
    print(doc.split("\n\n")[1], file=sys.stderr)
    return 2


def _amend(run, before, after):
    cpu = {k: round(after[k] - before[k], 3) for k in before if k in after}
    if isinstance(run.get("bench"), dict) and "cpu_s" in run["bench"]:
        cpu["bench"] = run["bench"]["cpu_s"]
    changes = (run.get("pub_acked") or 0) + (run.get("workflows") or 0)
    run["procs_cpu_s"] = cpu
    if changes:
        run["procs_cpu_us_per_change"] = {k: round(v * 1e6 / changes, 1) for k, v in cpu.items()}


if __name__ == "__main__":
    sys.exit(cli(sys.argv, __doc__, sample, _amend))
