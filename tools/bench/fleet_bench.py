#!/usr/bin/env python3
"""Fleet drain benchmark: three spoold nodes drain their backlogs into one real Dovecot under
a fleet max_concurrency kept in one redis-server, against one node draining the same total
backlog at the same concurrency into a fresh Dovecot. Prints both rates, their ratio (the
issue asks >= 0.9: the coordination is cheap) and the Redis requests per delivered message.

    tools/bench/fleet_bench.py [--per-node 20000] [--nodes 3] [--concurrency 16]
                               [--mailboxes 16]

Each run: the nodes start with their drains paused, their spools are filled (10 KiB
messages spread over --mailboxes mailboxes), Dovecot starts, the drains resume together;
the rate is messages per wall second from the resume to the last message in a Maildir.
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from drain_bench import count_files, fill, split  # noqa: E402
from harness import Dovecot, Redis, Spoold, free_port, wait_for  # noqa: E402


def run(work, name, args, users, nodes, redis=None):
    """Drains nodes x their share of nodes * per_node messages; returns (msg/s, delivered,
    Redis requests)."""
    dovecot = Dovecot(os.path.join(work, name, "store"), users)
    total = args.nodes * args.per_node
    started = []
    try:
        for i, backlog in enumerate(split(total, nodes)):
            node_name = f"mx{i + 1}"
            config = {
                "hostname": f"{node_name}.test",
                "mailstores": [{"name": "dovecot", "kind": "lmtp", "host": "127.0.0.1",
                                "port": dovecot.port, "connect_timeout": "1s"}],
                "drain": {"initial_concurrency": args.concurrency,
                          "max_concurrency": args.concurrency,
                          "max_per_recipient": args.concurrency},
                "limits": {"max_sessions_per_client": 1000},
                "metrics": {"address": "127.0.0.1", "port": free_port()},
            }
            if redis:
                config["fleet"] = {"redis": redis.socket, "node": node_name}
                config["mailstores"][0]["fleet"] = {"max_concurrency": args.concurrency}
            directory = os.path.join(work, name, node_name)
            os.makedirs(directory)
            node = Spoold(directory, config).start()
            started.append(node)
            node.spoolctl("pause")
            wait_for(lambda n=node: n.has_line("event=drain_pause paused=true"), 20,
                     what="drain paused")
            fill(node, users, backlog)
        dovecot.start()
        requests0 = sum(n.metric("spoold_fleet_redis_requests_total") or 0 for n in started)
        t0 = time.monotonic()
        for n in started:
            n.spoolctl("resume")
        delivered = 0
        while delivered < total and time.monotonic() - t0 < 7200:
            time.sleep(0.5)
            delivered = count_files(dovecot, users)
        wall = time.monotonic() - t0
        requests = sum(n.metric("spoold_fleet_redis_requests_total") or 0 for n in started)
        return delivered / wall, delivered, requests - requests0
    finally:
        for n in started:
            n.stop(60)
        dovecot.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-node", type=int, default=20000)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=16,
                    help="the fleet limit, and the single node's drain.max_concurrency")
    ap.add_argument("--mailboxes", type=int, default=16)
    args = ap.parse_args()
    users = [f"bulk{i}@example.com" for i in range(args.mailboxes)]
    total = args.nodes * args.per_node
    work = tempfile.mkdtemp(prefix="spoold-fleet-bench-")
    os.chmod(work, 0o755)
    redis = None
    try:
        alone, got, _ = run(work, "alone", args, users, 1)
        print(f"one node: {got}/{total} messages at concurrency {args.concurrency}: "
              f"{alone:.0f} msg/s", flush=True)
        redis = Redis(os.path.join(work, "redis")).start()
        fleet, got, requests = run(work, "fleet", args, users, args.nodes, redis)
        print(f"{args.nodes} nodes x {args.per_node} under a fleet max_concurrency of "
              f"{args.concurrency}: {got}/{total} at {fleet:.0f} msg/s -> ratio "
              f"{fleet / alone:.2f} (target >= 0.90); Redis requests per delivered message: "
              f"{requests / max(1, got):.2f}", flush=True)
    finally:
        if redis:
            redis.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
