#!/usr/bin/env python3
"""Drain benchmark: how fast spoold drains a backlog into a real Dovecot after an
outage, against Dovecot's own LMTP ingest measured in the same run.

1. Dovecot's ceiling: Postfix's smtp-source in LMTP mode at 1, 4 and 16 sessions,
   --ceiling-messages into one empty mailbox (the issue's reference numbers).
2. The peer, like for like: smtp-source at --concurrency sessions delivering --backlog
   messages of 10 KiB into a fresh Dovecot, spread over --mailboxes mailboxes as the
   backlog is. Dovecot slows down as a Maildir grows (it re-reads new/ and the uidlist
   on every save), so only the same number of messages into the same mailboxes is a
   fair ceiling for a large backlog.
3. spoold's spool is filled with the same --backlog messages while Dovecot is down, then
   --urgent urgent ones; then Dovecot starts. Prints the time from recovery to the first
   urgent delivery, the drain rate against the peer's, and spoold's memory while the
   backlog drains.

    tools/bench/drain_bench.py [--backlog 100000] [--concurrency 16] [--mailboxes 16]
                               [--skip-reference] [--skip-peer] [--runs N] [--perf FILE]

--skip-peer measures spoold alone (its rate, CPU and memory; no ratio); --runs N drains N
fresh spools and prints each run and the medians of rate and CPU per message; --perf FILE
records spoold's call graphs with `perf record -g` while the (first) backlog drains.

Rates are messages per wall second over the whole run (first message to last), and the
per-second samples' median while draining.
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


def split(total, parts):
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def smtp_source(port, sessions, messages, to):
    return subprocess.Popen(["smtp-source", "-L", "-s", str(sessions), "-m", str(messages),
                             "-l", str(SIZE), "-f", "load@remote.test", "-t", to,
                             f"127.0.0.1:{port}"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def dovecot_ingest(work, name, sessions, messages, users):
    """smtp-source into a fresh Dovecot: `sessions` in all, spread evenly over `users`
    (one smtp-source per user). Returns (msg/s over the run, messages stored)."""
    d = Dovecot(os.path.join(work, name), users).start()
    try:
        per_user_sessions = split(sessions, len(users))
        per_user_messages = split(messages, len(users))
        t0 = time.monotonic()
        procs = [smtp_source(d.port, s, m, u)
                 for u, s, m in zip(users, per_user_sessions, per_user_messages) if s and m]
        out = []
        for p in procs:
            text, _ = p.communicate(timeout=7200)
            if p.returncode != 0:
                out.append(text)
        wall = time.monotonic() - t0
        if out:
            raise RuntimeError("\n".join(out))
        got = count_files(d, users)
        return got / wall, got
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


def cpu_seconds(pid):
    """User + system CPU time the process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def fill(node, users, total):
    for user, n in zip(users, split(total, len(users))):
        r = subprocess.run([SMTP_LOAD, "--port", str(node.port), "--sessions", "20",
                            "--messages", str(n), "--size", str(SIZE), "--to", user],
                           capture_output=True, text=True, timeout=3600)
        if r.returncode != 0:
            raise RuntimeError(r.stdout + r.stderr)


def drain(work, args, users):
    os.makedirs(work, exist_ok=True)
    os.chmod(work, 0o755)
    urgent_user = "urgent@example.com"
    everyone = users + [urgent_user]
    dovecot = Dovecot(os.path.join(work, "store"), everyone)
    node_dir = os.path.join(work, "node")
    os.makedirs(node_dir)
    node = Spoold(node_dir, {
        "mailstores": [{"name": "dovecot", "kind": "lmtp", "host": "127.0.0.1",
                        "port": dovecot.port, "connect_timeout": "1s"}],
        "drain": {"breaker_min_backoff": "200ms", "breaker_max_backoff": "500ms",
                  "initial_concurrency": 2, "max_concurrency": args.concurrency,
                  "max_per_recipient": args.concurrency},
        "limits": {"max_sessions_per_client": 1000},
        "rules": [{"class": "urgent", "recipient": [urgent_user]}],
    }).start()
    try:
        t0 = time.monotonic()
        fill(node, users, args.backlog)
        took = time.monotonic() - t0
        for i in range(args.urgent):
            swaks(node.port, "--from", "boss@remote.test", "--to", urgent_user,
                  "--header", f"Subject: urgent{i}")
        print(f"spool filled with {args.backlog} x {SIZE} B for {len(users)} mailboxes in "
              f"{took:.1f} s ({args.backlog / took:.0f} msg/s), then {args.urgent} urgent",
              flush=True)
        total = args.backlog + args.urgent

        cpu0 = cpu_seconds(node.proc.pid)
        perf = None
        if args.perf:
            perf = subprocess.Popen(["perf", "record", "-g", "-q", "-o", args.perf, "-p",
                                     str(node.proc.pid)], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            args.perf = None  # the first run only
        dovecot.start()
        recovered = time.monotonic()
        first_urgent = None
        samples, rss = [], []
        last_count, last_t = 0, recovered
        deadline = recovered + 7200
        while time.monotonic() < deadline:
            time.sleep(0.05 if first_urgent is None else 1.0)
            now = time.monotonic()
            if first_urgent is None and count_files(dovecot, [urgent_user]):
                first_urgent = now - recovered
            if now - last_t >= 1.0:
                count = count_files(dovecot, everyone)
                samples.append((count - last_count) / (now - last_t))
                rss.append(rss_kib(node.proc.pid))
                last_count, last_t = count, now
                if count >= total:
                    break
        took = time.monotonic() - recovered
        cpu = cpu_seconds(node.proc.pid) - cpu0
        if perf:
            perf.send_signal(2)  # SIGINT: perf writes its file and exits
            perf.wait(timeout=120)
        delivered = count_files(dovecot, everyone)
        # A tenth of the run at a time: how the rate moves as the mailboxes grow.
        tenth = max(1, len(samples) // 10)
        profile = [statistics.median(samples[i:i + tenth]) for i in range(0, len(samples), tenth)]
        return {
            "first_urgent": first_urgent, "delivered": delivered, "total": total, "wall": took,
            "median": statistics.median(samples[1:-1] if len(samples) > 3 else samples),
            "profile": profile, "rss": rss,
            "vmrss": rss_kib(node.proc.pid, "VmRSS"), "cpu": cpu,
        }
    finally:
        node.stop(60)
        dovecot.stop()


def report(r, args, peer):
    rate = r["delivered"] / r["wall"]
    print(f"first urgent delivered {r['first_urgent']:.2f} s after recovery "
          f"(target < 2 s, {args.backlog} bulk in front of it)")
    print("drain rate by tenth of the run (msg/s): " + " ".join(f"{x:.0f}" for x in r["profile"]))
    vs_peer = (f"; peer {peer:.0f} msg/s at {args.concurrency} sessions -> ratio "
               f"{rate / peer:.2f} (target >= 0.90)") if peer else ""
    print(f"drained {r['delivered']}/{r['total']} in {r['wall']:.1f} s: {rate:.0f} msg/s over "
          f"the run (median of seconds {r['median']:.0f}){vs_peer}")
    print(f"spoold CPU while draining: {r['cpu']:.1f} s, "
          f"{r['cpu'] * 1000 / max(1, r['delivered']):.3f} ms per message")
    rss = r["rss"]
    print(f"spoold anonymous RSS while draining: min {min(rss) / 1024:.1f} MiB, "
          f"max {max(rss) / 1024:.1f} MiB, first {rss[0] / 1024:.1f}, last {rss[-1] / 1024:.1f} "
          f"(VmRSS at the end {r['vmrss'] / 1024:.1f} MiB, most of it the spool's page cache)",
          flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backlog", type=int, default=100000)
    ap.add_argument("--urgent", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--mailboxes", type=int, default=16)
    ap.add_argument("--ceiling-messages", type=int, default=3000)
    ap.add_argument("--skip-reference", action="store_true",
                    help="skip the 1/4/16-session reference runs into one mailbox")
    ap.add_argument("--skip-peer", action="store_true",
                    help="skip smtp-source's like-for-like run (no ratio is printed)")
    ap.add_argument("--runs", type=int, default=1,
                    help="drain this many fresh spools; medians of rate and CPU per message")
    ap.add_argument("--perf", metavar="FILE",
                    help="perf record -g spoold into FILE while the first backlog drains")
    args = ap.parse_args()
    users = [f"bulk{i}@example.com" for i in range(args.mailboxes)]
    work = tempfile.mkdtemp(prefix="spoold-drain-bench-")
    os.chmod(work, 0o755)
    try:
        if not args.skip_reference:
            for c in (1, 4, 16):
                rate, _ = dovecot_ingest(work, f"reference-{c}", c, args.ceiling_messages,
                                         ["sink@example.com"])
                print(f"dovecot LMTP ingest (smtp-source -L, {c} sessions, {args.ceiling_messages} "
                      f"messages into one mailbox): {rate:.0f} msg/s", flush=True)

        peer = None
        if not args.skip_peer:
            peer, stored = dovecot_ingest(work, "peer", args.concurrency, args.backlog, users)
            print(f"peer: smtp-source -L, {args.concurrency} sessions, {args.backlog} messages "
                  f"over {len(users)} mailboxes: {peer:.0f} msg/s ({stored} stored)", flush=True)

        runs = []
        for i in range(args.runs):
            r = drain(os.path.join(work, f"run{i}"), args, users)
            runs.append(r)
            report(r, args, peer)
        if args.runs > 1:
            rate = statistics.median(r["delivered"] / r["wall"] for r in runs)
            per_msg = statistics.median(r["cpu"] * 1000 / max(1, r["delivered"]) for r in runs)
            print(f"medians of {args.runs} runs: {rate:.0f} msg/s, spoold CPU {per_msg:.3f} ms "
                  f"per message")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
