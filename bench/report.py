#!/usr/bin/env python3
"""Summarises flowcast-bench JSON lines: medians and spread per scenario and
server, ratios flowcast/peer, and docs/benchmarks.md.

  bench/report.py [--compare] [--out FILE] [--check] [--perf FILE] RESULTS.jsonl...
  bench/report.py --tls [--tls-doc FILE] [--load FILE] TLS-RESULTS.jsonl
  bench/report.py --cluster [--cluster-doc FILE] CLUSTER-RESULTS.jsonl

--compare prints the side-by-side table with ratios; --out writes the
markdown report (keeping the TLS and cluster sections of the file it
replaces); --cluster prints the cluster figures against their floors
(bench/cluster.sh) and --cluster-doc puts them into FILE as its cluster
section, replacing only that section; --check
exits 1 unless every line parses, every run connected all its subscribers
and every connect-churn run completed all its connections (used by make
bench-smoke; no timing is checked). --tls prints the TLS comparison (bench/tls.sh)
and --tls-doc puts it into FILE as its TLS section, replacing only that
section; --load names a file of load averages taken during the runs. With
several files, a (scenario, server) pair found in a later file replaces the
earlier one's runs.
"""
import json
import os
import platform
import statistics
import subprocess
import sys

import cluster_report
import tls_report

ORDER = ["seed", "fanout-1k", "fanout-10k", "many-workflows", "ingest-sync-normal",
         "ingest-sync-full", "capacity", "storm"]
# The io-threads scenario: flowcast on both cores with 1 and 2 I/O threads.
ORDER += ["%s-2cpu-%dt" % (s, n) for s in ("fanout-10k", "many-workflows", "ingest")
          for n in (1, 2)]
TARGETS = ["flowcast", "ws", "nchan"]
COMPARE = ["seed", "fanout-1k", "fanout-10k", "capacity"]


def get(run, path):
    v = run
    for k in path.split("."):
        if v is None:
            return None
        v = v.get(k)
    return v


# (title, path, format, higher_is_better)
METRICS = {
    "seed": [("latency p50 (us)", "latency_us.p50", "%.0f", False),
             ("latency p99 (us)", "latency_us.p99", "%.0f", False),
             ("latency p99.9 (us)", "latency_us.p999", "%.0f", False),
             ("publish ack p99 (us)", "ack_us.p99", "%.0f", False),
             ("server CPU (% of a core)", "server.cpu_pct", "%.1f", False),
             ("lost", "lost", "%.0f", False)],
    "fanout": [("deliveries/s", "deliveries_per_s", "%.0f", True),
               ("deliveries per server CPU-s", "server.deliveries_per_cpu_s", "%.0f", True),
               ("server CPU (% of a core)", "server.cpu_pct", "%.1f", None),
               ("latency p50 (us)", "latency_us.p50", "%.0f", False),
               ("latency p99 (us)", "latency_us.p99", "%.0f", False),
               ("changes acked/s", "acked_per_s", "%.0f", True),
               ("lost", "lost", "%.0f", False),
               ("bench CPU (% of a core)", "bench.cpu_pct", "%.1f", None)],
    "ingest": [("durable changes/s", "acked_per_s", "%.0f", True),
               ("ack p50 (us)", "ack_us.p50", "%.0f", False),
               ("ack p99 (us)", "ack_us.p99", "%.0f", False),
               ("server CPU (% of a core)", "server.cpu_pct", "%.1f", None)],
    "capacity": [("connections held", "connected", "%.0f", True),
                 ("connect time, all (s)", "connect_s", "%.2f", False),
                 ("connect p99 (ms)", "connect_ms.p99", "%.1f", False),
                 ("RSS per connection (B)", "server.rss_per_conn_b", "%.0f", False),
                 ("idle CPU (% of a core)", "server.cpu_pct", "%.2f", False)],
    "storm": [("all reconnected after (s)", "storm_reconnected_s", "%.3f", False),
              ("all resumed after (s)", "storm_resumed_s", "%.3f", False),
              ("subscriber drops", "disconnects", "%.0f", None),
              ("lost", "lost", "%.0f", False),
              ("duplicates", "duplicates", "%.0f", False),
              ("resyncs", "resyncs", "%.0f", False)],
}


def kind(label):
    if label.startswith("fanout") or label.startswith("many-workflows"):
        return "fanout"
    if label.startswith("ingest"):
        return "ingest"
    return label


def load(paths):
    groups, bad = {}, 0
    for path in paths:
        if not os.path.exists(path):
            continue
        mine = {}
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    run = json.loads(line)
                except ValueError:
                    bad += 1
                    continue
                mine.setdefault((run.get("label", ""), run.get("target", "")), []).append(run)
        groups.update(mine)
    return groups, bad


def stat(runs, path):
    vals = [get(r, path) for r in runs]
    vals = [float(v) for v in vals if isinstance(v, (int, float))]
    if not vals:
        return None
    return statistics.median(vals), min(vals), max(vals), len(vals)


def fmt(s, f):
    if s is None:
        return "n/a"
    med, lo, hi, n = s
    if n == 1 or lo == hi:
        return f % med
    return "%s (%s–%s)" % (f % med, f % lo, f % hi)


def ratio(a, b):
    if a is None or b is None or b[0] == 0:
        return "n/a"
    return "%.2f×" % (a[0] / b[0])


def table(groups, label, out):
    metrics = METRICS.get(kind(label))
    targets = [t for t in TARGETS if (label, t) in groups]
    if not metrics or not targets:
        return
    n = max(len(groups[(label, t)]) for t in targets)
    peers = [t for t in targets if t != "flowcast"] if "flowcast" in targets else []
    head = ["metric"] + ["%s" % t for t in targets] + ["flowcast/%s" % p for p in peers]
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "---|" * len(head))
    for title, path, f, _ in metrics:
        stats = {t: stat(groups[(label, t)], path) for t in targets}
        row = [title] + [fmt(stats[t], f) for t in targets]
        row += [ratio(stats["flowcast"], stats[p]) for p in peers]
        out.append("| " + " | ".join(row) + " |")
    out.append("")
    out.append("Medians of %d run(s) per server, range in brackets." % n)
    out.append("")


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True,
                              timeout=10).stdout.strip() or subprocess.run(
            cmd, shell=True, capture_output=True, text=True, timeout=10).stderr.strip()
    except Exception:
        return "?"


def machine(root):
    cpu = sh("lscpu | sed -n 's/^Model name: *//p' | head -n1")
    mem = sh("free -g | awk '/^Mem:/{print $2\" GiB\"}'")
    ws = "?"
    try:
        with open(os.path.join(root, "bench/peers/ws-server/node_modules/ws/package.json")) as f:
            ws = json.load(f)["version"]
    except Exception:
        pass
    return [
        "- CPU: %s, %s cores (`nproc`); memory %s" % (cpu, os.cpu_count(), mem),
        "- Kernel: %s; %s" % (platform.release(), sh(". /etc/os-release; echo $PRETTY_NAME")),
        "- Open-file limit (hard): %s per process" % sh("ulimit -Hn"),
        "- flowcast: git %s" % sh("git -C %s rev-parse --short HEAD" % root),
        "- Node.js %s with ws %s" % (sh("node --version"), ws),
        "- %s with libnginx-mod-nchan %s" % (
            sh("nginx -v 2>&1"), sh("dpkg-query -W -f='${Version}' libnginx-mod-nchan")),
    ]


def commands(groups):
    seen, out = set(), []
    for label in ORDER:
        for t in TARGETS:
            for r in groups.get((label, t), []):
                c = r.get("cmd")
                if c and c not in seen:
                    seen.add(c)
                    out.append("    " + c)
    return out


def storm_note(groups):
    return []


def markdown(groups, root, perf, tls_section=None, cluster_section=None):
    o = ["# flowcast benchmarks", "",
         "Generated by `make bench` / `make bench-compare` (bench/report.py); do not edit by hand.",
         "", "## Machine", ""]
    o += machine(root)
    o += ["", "## How these were measured", "",
          "- Every server runs pinned to CPU 0 and the load generator (`build/flowcast-bench`, C,",
          "  one thread, epoll) to CPU 1 with `taskset`, so each server has exactly one core.",
          "  The machine has only two cores; the load generator's own CPU is reported, and",
          "  where it is near 100% it, not the server, is the limit.",
          "- Each figure is the median of the runs listed (a fresh server per run), with the",
          "  range (min–max) in brackets. Other work on the machine during the runs adds noise.",
          "- Latency is publish→receive: the publisher writes its CLOCK_MONOTONIC time into the",
          "  change's `message`, each subscriber reads it when the frame arrives (one clock read",
          "  per `recv`, fields found by key, no JSON library).",
          "- Publish paths differ: flowcast's is `PATCH /api/workflows/{id}` and includes the",
          "  durable SQLite commit (group commit, `synchronous=NORMAL`) before the broadcast and",
          "  the reply; Node ws is a `POST` to a small broadcast server (bench/peers/ws-server,",
          "  the ws README's broadcast loop); nchan is a `POST` to its publisher location",
          "  (bench/peers/nchan, one worker, in-memory store). The peers broadcast the body as",
          "  is; the tool sends them a payload of the same shape and size as flowcast's update",
          "  object, with its own per-publisher sequence, so losses and order are checked alike.",
          "- Fan-out: 64 publishing connections publish as fast as acknowledged, with a",
          "  flow-control window of 64 changes not yet delivered to every subscriber, so the",
          "  server stays saturated and nobody falls behind (64 is under flowcast's default",
          "  `--backlog` of 100, so it never coalesces: nothing may be lost); deliveries/s is",
          "  counted from the first publish to the last delivery.",
          "- Capacity: RSS per connection = (server RSS with all connections open − RSS after",
          "  a warm-up of the first 100) / the rest (user-space memory only; kernel socket",
          "  buffers are not in RSS; the warm-up keeps one-time costs of a server's first",
          "  connection, about 2 MB for flowcast's store read path, out of the per-connection figure);",
          "  idle CPU is the server's over 20 s with its default ping interval (flowcast pings",
          "  every 20 s; neither peer pings by default). Projection to 1,000,000 connections",
          "  multiplies both per-connection figures.",
          "- The load generator needs one file descriptor per connection and the hard limit",
          "  is 20,000 per process, so capacity stops at 19,500 connections, from one bench",
          "  process spreading its source addresses over 127.0.0.1–127.0.0.16.",
          ""]
    o += ["## Side by side (`make bench-compare`)", ""]
    for label in COMPARE:
        if any((label, t) in groups for t in TARGETS):
            o += ["### %s" % label, ""]
            table(groups, label, o)
            if label == "capacity":
                fc = groups.get(("capacity", "flowcast"))
                if fc:
                    rss = stat(fc, "server.rss_per_conn_b")
                    cpu = stat(fc, "server.cpu_pct")
                    n = stat(fc, "connected")
                    if rss and cpu and n and n[0] > 0:
                        o.append("Projected to 1,000,000 connections (flowcast): %.2f GiB of "
                                 "user-space memory, %.1f%% of a core spent on pings while idle." %
                                 (rss[0] * 1e6 / 2**30, cpu[0] * 1e6 / n[0]))
                        o.append("")
    rest = [l for l in ORDER if l not in COMPARE and any((l, t) in groups for t in TARGETS)]
    if rest:
        o += ["## flowcast-only and other scenarios (`make bench`)", ""]
        for label in rest:
            o += ["### %s" % label, ""]
            table(groups, label, o)
    if perf and os.path.exists(perf):
        o += ["## Profile: flowcast during fan-out to 10,000 subscribers", ""]
        with open(perf) as f:
            o += [l.rstrip("\n") for l in f]
        o.append("")
    if tls_section:
        o += tls_section
    if cluster_section:
        o += cluster_section
    o += ["## Exact commands", "",
          "Each run: a fresh server on a free loopback port (`bench/lib.sh`), then:", ""]
    o += commands(groups)
    o += ["", "`bench/run.sh` adds `--port P --server-pid PID --label NAME --json --quiet`;",
          "the scenarios are in `bench/scenarios/scenarios.sh`.", ""]
    return "\n".join(o) + "\n"


def cluster_report_put(path, groups, load):
    tls_report.put_section(path, cluster_report.markdown(groups, load), cluster_report.BEGIN,
                           cluster_report.END)
    print("report: wrote the cluster section of %s" % path, file=sys.stderr)


def main(argv):
    compare = check = tls = cluster = False
    out = perf = tls_doc = load_file = cluster_doc = None
    paths = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--compare":
            compare = True
        elif a == "--check":
            check = True
        elif a == "--out":
            i += 1
            out = argv[i]
        elif a == "--perf":
            i += 1
            perf = argv[i]
        elif a == "--tls":
            tls = True
        elif a == "--cluster":
            cluster = True
        elif a == "--cluster-doc":
            i += 1
            cluster_doc = argv[i]
        elif a == "--tls-doc":
            i += 1
            tls_doc = argv[i]
        elif a == "--load":
            i += 1
            load_file = argv[i]
        else:
            paths.append(a)
        i += 1
    groups, bad = load(paths)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if compare:
        lines = []
        for label in COMPARE:
            if any((label, t) in groups for t in TARGETS):
                lines += ["== %s" % label]
                table(groups, label, lines)
        print("\n".join(lines))
    if tls:
        print("\n".join(tls_report.console(groups)))
    if cluster:
        print("\n".join(cluster_report.console(groups)))
    if cluster_doc:
        cluster_report_put(cluster_doc, groups, tls_report.read_load(load_file))
    if tls_doc:
        section = tls_report.markdown(groups, tls_report.read_load(load_file))
        tls_report.put_section(tls_doc, section)
        print("report: wrote the TLS section of %s" % tls_doc, file=sys.stderr)
    if out:
        old = tls_report.get_section(out)
        old_cluster = tls_report.get_section(out, cluster_report.BEGIN, cluster_report.END)
        with open(out, "w") as f:
            f.write(markdown(groups, root, perf, old, old_cluster))
        print("report: wrote %s" % out, file=sys.stderr)
    if check:
        problems = bad
        for (label, t), runs in groups.items():
            for r in runs:
                churn = r.get("churn")
                if churn is not None:
                    if churn.get("done") != churn.get("connections") or churn.get("failed"):
                        print("check: %s on %s: %s of %s connections, %s failed" % (
                            label, t, churn.get("done"), churn.get("connections"),
                            churn.get("failed")), file=sys.stderr)
                        problems += 1
                elif r.get("connected") != r.get("subscribers"):
                    print("check: %s on %s connected %s of %s" % (
                        label, t, r.get("connected"), r.get("subscribers")), file=sys.stderr)
                    problems += 1
        if not groups:
            problems += 1
        print("bench-smoke: %d runs, %d problems" % (sum(len(v) for v in groups.values()),
                                                     problems), file=sys.stderr)
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
