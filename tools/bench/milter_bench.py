#!/usr/bin/env python3
"""Milter benchmark: SMTP ingest through a filter that lets everything through against
ingest with no filter, in one run (issue 18's target: with the filter at least 0.8 of the
rate without).

The filter is tests/support/noop_milter (C++, built next to spoold): it is shown every
step and lets everything through, so what is measured is spoold's side of the
conversation (one TCP connection per SMTP session, the macros, the steps, the header and
body packets). Two filters are measured:
  eom    negotiates as rspamd's milter does: every step shown, only the end of the
         message answered (the target is checked on this one);
  every  answers every step (connect, HELO, MAIL, RCPT, DATA, each header, end of
         headers, each body chunk, end of message), as a libmilter filter without a
         negotiate callback (OpenDKIM) does: a round trip per step.
The mailstore is down, as in smtp_bench.py, so only ingest runs. The configurations
alternate within each run, and the medians over --runs runs are compared.

    tools/bench/milter_bench.py [--messages 3000] [--size 10240] [--runs 3]
                                [--filters eom,every]
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
    def __init__(self, mode):
        self.proc = subprocess.Popen([NOOP_MILTER, "0", mode], stdout=subprocess.PIPE, text=True)
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
    ap.add_argument("--filters", default="eom,every",
                    help="comma-separated noop_milter modes to measure (eom, every)")
    args = ap.parse_args()
    modes = [m for m in args.filters.split(",") if m]
    work = tempfile.mkdtemp(prefix="spoold-milter-bench-")
    milters = {}
    runs = {"plain": []}
    runs.update({m: [] for m in modes})
    try:
        for m in modes:
            milters[m] = NoopMilter(m)
        for i in range(args.runs):
            runs["plain"].append(one_run(work, f"plain-{i}", args.messages, args.size, None))
            for m in modes:
                runs[m].append(one_run(work, f"{m}-{i}", args.messages, args.size, milters[m]))
    finally:
        for milter in milters.values():
            milter.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"# {args.messages} messages x {args.size} bytes, smtp_load with 20 sessions, "
          f"1 recipient; median of {args.runs} alternating runs; load {os.getloadavg()[0]:.1f}")
    for k, v in runs.items():
        rates = ", ".join(f"{r['rate']:.0f}" for r in v)
        cpu = statistics.median(r["cpu_ms"] for r in v)
        print(f"{k:6}: {statistics.median(r['rate'] for r in v):.0f} msg/s ({rates}), "
              f"spoold {cpu:.3f} ms CPU/msg")
    ok = True
    for m in modes:
        # Each run's ratio against the plain run beside it: the machine's load moves
        # between runs, less within one pair.
        ratios = [r["rate"] / p["rate"] for r, p in zip(runs[m], runs["plain"])]
        ratio = statistics.median(ratios)
        target = f" (target >= {TARGET_RATIO})" if m == "eom" else ""
        print(f"ratio with the no-op milter '{m}': {ratio:.2f} of the rate without{target}; "
              f"per pair {', '.join(f'{x:.2f}' for x in ratios)}")
        if m == "eom":
            ok = ratio >= TARGET_RATIO
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
