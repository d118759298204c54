#!/usr/bin/env python3
"""Milter benchmark: SMTP ingest through a filter that lets everything through against
ingest with no filter, in one run (issue 18's target: with the filter at least 0.8 of the
rate without).

The filter is tests/support/noop_milter (C++, built next to spoold): it answers every step
with "continue", so what is measured is spoold's side of the conversation (one TCP
connection per SMTP session, the macros, each step's round trip, the header and body
packets). The mailstore is down, as in smtp_bench.py, so only ingest runs. The two
configurations alternate, and the medians over --runs runs are compared.

    tools/bench/milter_bench.py [--messages 3000] [--size 10240] [--runs 3]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "e2e"))
from harness import BUILD_DIR, Spoold  # noqa: E402
from smtp_bench import CpuMeter, run_load, spoold_config  # noqa: E402

NOOP_MILTER = os.path.join(BUILD_DIR, "noop_milter")
TARGET_RATIO = 0.8


class NoopMilter:
    def __init__(self):
        self.proc = subprocess.Popen([NOOP_MILTER, "0"], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()  # "listening PORT", or EOF if it failed
        if not line.startswith("listening "):
            self.stop()
            raise RuntimeError(f"noop_milter did not start: {line!r}")
        self.port = int(line.split()[1])

    def stop(self):
        self.proc.kill()
        self.proc.wait(10)
        self.proc.stdout.close()


def one_run(work, name, messages, size, milter):
    d = os.path.join(work, name)
    os.makedirs(d, exist_ok=True)
    cfg = spoold_config(work)
    if milter:
        cfg["milters"] = [{"name": "noop", "address": f"inet:127.0.0.1:{milter.port}"}]
    node = Spoold(d, cfg).start()
    meter = CpuMeter(name)
    meter.add(node.proc.pid)
    try:
        cpu0 = meter.seconds()
        wall, _, _ = run_load("smtp_load", node.port, messages, size)
        cpu = meter.seconds() - cpu0
        stored = len(node.list_json())
    finally:
        node.stop()
        meter.close()
    if stored != messages:
        raise RuntimeError(f"{name}: {stored} of {messages} messages stored")
    return {"rate": messages / wall, "cpu_ms": 1000 * cpu / messages}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--size", type=int, default=10240)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="spoold-milter-bench-")
    milter = NoopMilter()
    runs = {"plain": [], "milter": []}
    try:
        for i in range(args.runs):
            runs["plain"].append(one_run(work, f"plain-{i}", args.messages, args.size, None))
            runs["milter"].append(one_run(work, f"milter-{i}", args.messages, args.size, milter))
    finally:
        milter.stop()
        shutil.rmtree(work, ignore_errors=True)
    med = {k: {f: statistics.median(r[f] for r in v) for f in ("rate", "cpu_ms")}
           for k, v in runs.items()}
    print(f"# {args.messages} messages x {args.size} bytes, smtp_load with 20 sessions, "
          f"1 recipient; median of {args.runs} alternating runs")
    for k in ("plain", "milter"):
        rates = ", ".join(f"{r['rate']:.0f}" for r in runs[k])
        print(f"{k:6}: {med[k]['rate']:.0f} msg/s ({rates}), "
              f"spoold {med[k]['cpu_ms']:.3f} ms CPU/msg")
    ratio = med["milter"]["rate"] / med["plain"]["rate"]
    print(f"ratio with a no-op milter: {ratio:.2f} of the rate without "
          f"(target >= {TARGET_RATIO})")
    return 0 if ratio >= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
