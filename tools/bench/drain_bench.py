#!/usr/bin/env python3
"""Drain benchmark: how fast spoold drains a backlog into a real Dovecot after an
outage, against Dovecot's own LMTP ingest ceiling measured in the same run.

1. Dovecot's ceiling: Postfix's smtp-source in LMTP mode at concurrency 1, 4 and 16.
2. spoold's spool is filled with --backlog messages of 10 KiB (bulk) while Dovecot is
   down, then a few urgent ones.
3. Dovecot starts: prints the time from recovery to the first urgent delivery, the drain
   rate (median of per-second rates over the drain) against Dovecot's own rate at the
   same concurrency, and spoold's memory (RSS min/max) while the backlog drains.

    tools/bench/drain_bench.py [--backlog 100000] [--concurrency 16]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from harness import BUILD_DIR, Dovecot, Spoold, swaks  # noqa: E402

SMTP_LOAD = os.path.join(BUILD_DIR, "smtp_load")
SIZE = 10240


def count_files(dovecot, users):
    """Messages in the users' Maildirs: one listdir per folder, nothing else (the poller
    shares the two cores with Dovecot and spoold, so it must stay cheap)."""
    n = 0
    for u in users:
        local, domain = u.split("@", 1)
        for sub in ("new", "cur"):
            try:
                n += len(os.listdir(os.path.join(dovecot.dir, "mail", domain, local, sub)))
            except FileNotFoundError:
                pass
    return n


def dovecot_ceiling(work, concurrency, messages):
    d = Dovecot(os.path.join(work, f"ceiling-{concurrency}"), ["sink@example.com"]).start()
    try:
        t0 = time.monotonic()
        r = subprocess.run(["smtp-source", "-L", "-s", str(concurrency), "-m", str(messages),
                            "-l", str(SIZE), "-f", "load@remote.test", "-t", "sink@example.com",
                            f"127.0.0.1:{d.port}"], capture_output=True, text=True, timeout=1800)
        wall = time.monotonic() - t0
        if r.returncode != 0:
            raise RuntimeError(r.stdout + r.stderr)
        got = count_files(d, ["sink@example.com"])
        return got / wall
    finally:
        d.stop()


def rss_kib(pid, field="RssAnon"):
    """Resident memory of the process's own (anonymous) pages. VmRSS also counts the
    pages of the spool's memory map that reading bodies touches, which are page cache."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backlog", type=int, default=100000)
    ap.add_argument("--urgent", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--ceiling-messages", type=int, default=3000)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="spoold-drain-bench-")
    os.chmod(work, 0o755)
    try:
        ceilings = {}
        for c in (1, 4, 16):
            ceilings[c] = dovecot_ceiling(work, c, args.ceiling_messages)
            print(f"dovecot LMTP ceiling (smtp-source -L, {c} sessions): {ceilings[c]:.0f} msg/s",
                  flush=True)

        users = ["bulk@example.com", "urgent@example.com"]
        dovecot = Dovecot(os.path.join(work, "store"), users)
        node_dir = os.path.join(work, "node")
        os.makedirs(node_dir)
        node = Spoold(node_dir, {
            "mailstores": [{"name": "dovecot", "kind": "lmtp", "host": "127.0.0.1",
                            "port": dovecot.port, "connect_timeout": "1s"}],
            "drain": {"breaker_min_backoff": "200ms", "breaker_max_backoff": "500ms",
                      "initial_concurrency": 2, "max_concurrency": args.concurrency,
                      "max_per_recipient": args.concurrency},
            "limits": {"max_sessions_per_client": 1000},
            "rules": [{"class": "urgent", "recipient": ["urgent@example.com"]}],
        }).start()
        try:
            t0 = time.monotonic()
            r = subprocess.run([SMTP_LOAD, "--port", str(node.port), "--sessions", "20",
                                "--messages", str(args.backlog), "--size", str(SIZE),
                                "--to", "bulk@example.com"], capture_output=True, text=True,
                               timeout=3600)
            if r.returncode != 0:
                raise RuntimeError(r.stdout + r.stderr)
            fill = time.monotonic() - t0
            for i in range(args.urgent):
                swaks(node.port, "--from", "boss@remote.test", "--to", "urgent@example.com",
                      "--header", f"Subject: urgent{i}")
            print(f"spool filled with {args.backlog} x {SIZE} B in {fill:.1f} s "
                  f"({args.backlog / fill:.0f} msg/s), then {args.urgent} urgent", flush=True)
            total = args.backlog + args.urgent

            dovecot.start()
            recovered = time.monotonic()
            first_urgent = None
            samples, rss = [], []
            last_count, last_t = 0, recovered
            deadline = recovered + 7200
            while time.monotonic() < deadline:
                time.sleep(0.05 if first_urgent is None else 1.0)
                now = time.monotonic()
                if first_urgent is None and count_files(dovecot, ["urgent@example.com"]):
                    first_urgent = now - recovered
                if now - last_t >= 1.0:
                    count = count_files(dovecot, users)
                    samples.append((count - last_count) / (now - last_t))
                    rss.append(rss_kib(node.proc.pid))
                    last_count, last_t = count, now
                    if count >= total:
                        break
            drain_time = time.monotonic() - recovered
            # The rate through the drain, a tenth at a time: a store that slows as its
            # mailbox grows shows here, and the ceiling above was measured on an empty one.
            tenth = max(1, len(samples) // 10)
            profile = [statistics.median(samples[i:i + tenth]) for i in range(0, len(samples), tenth)]
            print("drain rate by tenth of the run (msg/s): " + " ".join(f"{r:.0f}" for r in profile))
            delivered = count_files(dovecot, users)
            steady = samples[2:-1] if len(samples) > 4 else samples
            rate = statistics.median(steady) if steady else 0
            ceiling = ceilings.get(args.concurrency) or ceilings[16]
            print(f"first urgent delivered {first_urgent:.2f} s after recovery "
                  f"(target < 2 s, {args.backlog} bulk in front of it)")
            print(f"drained {delivered}/{total} in {drain_time:.1f} s: median {rate:.0f} msg/s, "
                  f"overall {delivered / drain_time:.0f} msg/s; dovecot's own at {args.concurrency} "
                  f"sessions {ceiling:.0f} msg/s -> ratio {rate / ceiling:.2f} (target >= 0.90)")
            print(f"spoold anonymous RSS while draining: min {min(rss) / 1024:.1f} MiB, "
                  f"max {max(rss) / 1024:.1f} MiB, first {rss[0] / 1024:.1f}, last {rss[-1] / 1024:.1f} "
                  f"(VmRSS at the end {rss_kib(node.proc.pid, 'VmRSS') / 1024:.1f} MiB, "
                  f"most of it the spool's page cache)")
        finally:
            node.stop(60)
            dovecot.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
