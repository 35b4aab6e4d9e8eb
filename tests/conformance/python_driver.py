"""Conformance driver of the Python client (clients/python): the command
line and output of tests/client/fcc_probe.c (see README.md here).

    python3 python_driver.py URL[,URL...] [--all] [--backoff-max MS] [--max-retries N]
                             [--since ID=[EPOCH:]SEQ]... ID...
"""

import asyncio
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "clients", "python"))
import flowcast  # noqa: E402


def out(o):
    sys.stdout.write(json.dumps(o) + "\n")
    sys.stdout.flush()


def parse(argv):
    url, args = argv[0], argv[1:]
    opts = {"all": False, "backoff_max": 30.0, "max_retries": None, "since": {}, "ids": []}
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--all":
            opts["all"] = True
        elif a == "--backoff-max":
            i += 1
            opts["backoff_max"] = int(args[i]) / 1000.0
        elif a == "--max-retries":
            i += 1
            opts["max_retries"] = int(args[i])
        elif a == "--since":
            i += 1
            wid, pos = args[i].split("=")
            p = [int(x) for x in pos.split(":")]
            opts["since"][wid] = tuple(p) if len(p) == 2 else p[0]
        elif a.startswith("-"):
            sys.stderr.write("python_driver: unknown option %s\n" % a)
            sys.exit(2)
        else:
            opts["ids"].append(a)
        i += 1
    return url, opts


def on_state(s):
    out({"event": "state", "state": s.state, "attempt": s.attempt,
         "delay_ms": int(round(s.delay * 1000))})


async def main():
    url, o = parse(sys.argv[1:])
    client = flowcast.AsyncClient(url)
    w = client.watch(o["ids"], all=o["all"], since=o["since"], backoff_initial=0.1,
                     backoff_max=o["backoff_max"], max_retries=o["max_retries"],
                     on_state=on_state)
    try:
        async with w:
            async for ev in w:
                if isinstance(ev, flowcast.Deletion):
                    out({"event": "update", "workflow_id": ev.workflow_id, "epoch": ev.epoch,
                         "seq": ev.seq, "status": "", "current_step": 0, "total_steps": 0,
                         "resync": False, "deleted": True, "name": ""})
                else:
                    out({"event": "update", "workflow_id": ev.workflow_id, "epoch": ev.epoch,
                         "seq": ev.seq, "status": ev.status, "current_step": ev.current_step,
                         "total_steps": ev.total_steps, "resync": ev.resync, "deleted": False,
                         "name": ev.name or ""})
    except flowcast.RetriesExhausted as e:
        sys.stderr.write("python_driver: %s\n" % e)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
