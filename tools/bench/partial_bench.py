#!/usr/bin/env python3
"""Partial-recovery benchmark: a store that comes back in pieces (issue 16).

A fake LMTP store (tests/e2e/fake_lmtp.py: every transaction held --service-ms, as a store's
own work) takes every user's mail except the users on a dead shard (--dead-share of them),
who get `451 4.3.0 <rcpt> shard unavailable` at RCPT. In one run, two fresh spools each
filled with the same --messages one-recipient 10 KiB messages over --users users while the
drain is paused, then resumed:

1. every user healthy: the drain rate (messages per second, first contact to last stored);
2. the shard dead: the healthy users' drain rate (their messages over the time from the
   drain's first contact with the store until the last of them is stored) and its ratio to (1) (target >= 0.90), the store's refusals;
   then the shard comes back: the time until its users' mail is all stored.

    tools/bench/partial_bench.py [--messages 1500] [--users 100] [--dead-share 0.3]
                                 [--dead-first | --both]

The spool is filled user by user, so the dead shard's users are spread over the backlog by
default; --dead-first puts all their mail first (then the first recipients the drain meets
are all troubled: once the first refusal has started the shard's group, the others are the
group's and the breaker's failure ratio does not count them); --both runs the two layouts
against one all-healthy run.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from fake_lmtp import FakeLmtp  # noqa: E402
from harness import Spoold  # noqa: E402

sys.path.insert(0, HERE)
from drain_bench import SIZE, fill, split  # noqa: E402


def stored_for(store, users):
    users = set(users)
    return sum(1 for rcpt, _ in store.stored_pairs() if rcpt in users)


def wait(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.02)
    return time.monotonic()


def run(work, name, args, users, dead):
    store = FakeLmtp(service_time=args.service_ms / 1000.0)
    node_dir = os.path.join(work, name)
    os.makedirs(node_dir)
    node = Spoold(node_dir, {
        "mailstores": [{"name": "fake", "kind": "lmtp", "host": "127.0.0.1",
                        "port": store.port, "connect_timeout": "1s"}],
        "drain": {"initial_concurrency": args.concurrency, "max_concurrency": args.concurrency,
                  "retry_min": f"{args.retry_min}s",
                  "retry_max": f"{4 * args.retry_min}s"},
        "limits": {"max_sessions_per_client": 1000},
    }).start()
    try:
        node.spoolctl("pause")
        wait(lambda: node.has_line("event=drain_pause paused=true"), 30, "the drain paused")
        fill(node, users, args.messages)
        store.set_dead(dead)
        per_user = dict(zip(users, split(args.messages, len(users))))
        healthy = [u for u in users if u not in dead]
        want_healthy = sum(per_user[u] for u in healthy)
        want_dead = sum(per_user[u] for u in dead)
        node.spoolctl("resume")
        # From the drain's first contact with the store: it reads the pause flag once a
        # second, which would add up to a second of noise to runs of a few seconds.
        t0 = wait(lambda: store.stored_pairs() or store.refused_count(), 60, "the first delivery")
        t_healthy = wait(lambda: stored_for(store, healthy) >= want_healthy, 3600,
                         "the healthy users' mail")
        result = {"healthy": want_healthy, "healthy_s": t_healthy - t0,
                  "refused": store.refused_count(), "dead": want_dead}
        if dead:
            store.set_dead([])
            back = time.monotonic()
            t_dead = wait(lambda: stored_for(store, dead) >= want_dead, 3600,
                          "the dead shard's mail after it came back")
            result["back_s"] = t_dead - back
        stored = store.stored_pairs()
        result["stored"] = len(stored)
        result["breaker_opened"] = any("event=breaker " in l and "to=open" in l
                                       for l in node.lines())
        return result
    finally:
        node.stop(60)
        store.kill()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=1500)
    ap.add_argument("--users", type=int, default=100)
    ap.add_argument("--dead-share", type=float, default=0.3)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--service-ms", type=float, default=20.0,
                    help="how long the store holds each transaction with recipients (its work)")
    ap.add_argument("--retry-min", type=int, default=5, help="drain.retry_min in seconds")
    ap.add_argument("--dead-first", action="store_true",
                    help="the dead shard's users first in the backlog (the fill is user by user)")
    ap.add_argument("--both", action="store_true",
                    help="both layouts, spread and dead first, against one all-healthy run")
    args = ap.parse_args()
    users = [f"user{i}@example.com" for i in range(args.users)]
    n_dead = round(args.users * args.dead_share)
    first = users[:n_dead]  # the oldest mail is all the dead shard's
    # Spread over the backlog, as mail arrives: user i is dead when the share says so.
    spread = [u for i, u in enumerate(users)
              if int((i + 1) * args.dead_share) > int(i * args.dead_share)][:n_dead]
    layouts = [("dead first", first)] if args.dead_first else [("spread", spread)]
    if args.both:
        layouts = [("spread", spread), ("dead first", first)]
    work = tempfile.mkdtemp(prefix="spoold-partial-bench-")
    os.chmod(work, 0o755)
    try:
        full = run(work, "all-healthy", args, users, [])
        rate_full = full["healthy"] / full["healthy_s"]
        print(f"{args.messages} x {SIZE} B over {len(users)} users, store work {args.service_ms:g} ms "
              f"per transaction, concurrency {args.concurrency}, retry_min {args.retry_min} s")
        print(f"all healthy: {full['healthy']} in {full['healthy_s']:.2f} s = {rate_full:.0f} msg/s",
              flush=True)
        for name, dead in layouts:
            part = run(work, "dead-shard-" + name.replace(" ", "-"), args, users, dead)
            rate_part = part["healthy"] / part["healthy_s"]
            print(f"{len(dead)} of {len(users)} users on a dead shard ({name}): the healthy users' "
                  f"{part['healthy']} in {part['healthy_s']:.2f} s = {rate_part:.0f} msg/s -> ratio "
                  f"{rate_part / rate_full:.2f} (target >= 0.90); store refusals at RCPT: "
                  f"{part['refused']} for {part['dead']} messages")
            print(f"shard back: its {part['dead']} messages stored {part['back_s']:.2f} s later "
                  f"(within a probe step of retry_min..{4 * args.retry_min} s, jittered, plus the "
                  f"drain)")
            print(f"stored: {full['stored']} and {part['stored']} of {args.messages} each; breaker "
                  f"opened: {full['breaker_opened'] or part['breaker_opened']}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
