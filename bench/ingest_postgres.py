#!/usr/bin/python3
"""Durable changes/s of one flowcast node on PostgreSQL (issue 10 §1): a
throwaway PostgreSQL 15 with fsync on (tests/e2e/svc_postgres.py), one
flowcast on it, flowcast-bench with 64 producers PATCHing 1,000 workflows as
fast as acknowledged for 10 s, nobody watching (the ingest scenario of
bench/scenarios/scenarios.sh on SQLite). Prints flowcast-bench's JSON per
run and the CPU seconds the PostgreSQL processes used.

    bench/ingest_postgres.py [BUILD_DIR] [RUNS]      (default build, 3)"""

import glob
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
from fc_helpers import free_port  # noqa: E402
from svc_postgres import PostgresServer  # noqa: E402


def postgres_cpu_s():
    total = 0
    for d in glob.glob("/proc/[0-9]*"):
        try:
            with open(d + "/stat") as f:
                st = f.read()
        except OSError:
            continue
        if "(postgres)" in st:
            fields = st.rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def main():
    build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    for _ in range(runs):
        with PostgresServer(durable=True) as pg:
            port = free_port()
            srv = subprocess.Popen([os.path.join(build, "flowcast"), "serve", "--listen",
                                    "127.0.0.1:%d" % port, "--db", pg.dsn, "--log-level", "warn"])
            try:
                time.sleep(1.5)
                cpu0 = postgres_cpu_s()
                r = subprocess.run([os.path.join(build, "flowcast-bench"), "--target", "flowcast",
                                    "--port", str(port), "--server-pid", str(srv.pid),
                                    "--subscribers", "0", "--workflows", "1000", "--publishers",
                                    "64", "--rate", "0", "--duration", "10", "--label",
                                    "ingest-postgres", "--json", "--quiet"],
                                   capture_output=True, text=True, check=True)
                print(r.stdout.strip())
                print("postgres cpu s %.2f" % (postgres_cpu_s() - cpu0), file=sys.stderr)
            finally:
                srv.terminate()
                srv.wait(10)


if __name__ == "__main__":
    main()
