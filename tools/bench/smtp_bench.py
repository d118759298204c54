#!/usr/bin/env python3
"""SMTP ingest benchmark: spoold against Postfix as an MX whose mailbox delivery is down.

Both servers are durable before 250 (Postfix fsyncs the queue file, spoold commits the
LMDB transaction). Prints, for each server, messages/s and CPU milliseconds per message
(server processes only, from a cpuacct cgroup when the machine has one, else /proc), the
ratios, spoold's p50/p99 end-of-data -> 250 latency at half its peak rate, and spoold's
memory with 5,000 idle connections. Medians over --runs runs.

    tools/bench/smtp_bench.py [--messages 5000] [--runs 3] [--idle 5000]
"""
import argparse
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from harness import BUILD_DIR, Spoold, free_port, wait_for  # noqa: E402

POSTFIX = os.path.join(ROOT, "tests", "support", "postfix-instance.sh")
SMTP_LOAD = os.path.join(BUILD_DIR, "smtp_load")
CGROOT = "/sys/fs/cgroup/cpuacct"


class CpuMeter:
    """CPU time of a group of processes: a cpuacct cgroup, or /proc of given pids."""

    def __init__(self, name):
        self.path = None
        if os.path.isdir(CGROOT) and os.access(CGROOT, os.W_OK):
            self.path = os.path.join(CGROOT, f"spoold-bench-{name}-{os.getpid()}")
            os.makedirs(self.path, exist_ok=True)
        self.pids = []

    def add(self, pid):
        self.pids.append(pid)
        if self.path:
            with open(os.path.join(self.path, "cgroup.procs"), "w") as f:
                f.write(str(pid))

    def prefix(self):
        """A shell prefix that runs a command inside the cgroup."""
        if not self.path:
            return []
        return ["sh", "-c", f'echo $$ > {self.path}/cgroup.procs && exec "$@"', "sh"]

    def seconds(self):
        if self.path:
            with open(os.path.join(self.path, "cpuacct.usage")) as f:
                return int(f.read()) / 1e9
        total = 0
        tick = os.sysconf("SC_CLK_TCK")
        for pid in self.pids:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += sum(int(x) for x in fields[11:15]) / tick
            except OSError:
                pass
        return total

    def close(self):
        if self.path:
            try:
                os.rmdir(self.path)
            except OSError:
                pass


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_load(tool, port, messages, size):
    """Returns (wall seconds, load generator CPU seconds, output)."""
    if tool == "smtp-source":
        cmd = ["smtp-source", "-s", "20", "-m", str(messages), "-l", str(size),
               "-f", "load@remote.test", "-t", "alice@example.com", f"127.0.0.1:{port}"]
    else:
        cmd = [SMTP_LOAD, "--port", str(port), "--sessions", "20", "--messages", str(messages),
               "--size", str(size)]
    c0 = children_cpu()
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    wall = time.monotonic() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {r.stdout}{r.stderr}")
    return wall, children_cpu() - c0, r.stdout


def postfix_queue_count(d):
    r = subprocess.run(["postqueue", "-c", os.path.join(d, "etc"), "-j"], capture_output=True,
                       text=True, timeout=120)
    return sum(1 for l in r.stdout.splitlines() if l.strip())


def bench_postfix(tool, messages, size, work):
    d = os.path.join(work, f"postfix-{tool}")
    port = free_port()
    meter = CpuMeter("postfix")
    env = dict(os.environ)
    subprocess.run(meter.prefix() + [POSTFIX, "start", d, str(port), "mx-down"], check=True,
                   timeout=120, env=env)
    try:
        cpu0 = meter.seconds()
        wall, gen_cpu, _ = run_load(tool, port, messages, size)
        cpu = meter.seconds() - cpu0
        queued = postfix_queue_count(d)
    finally:
        subprocess.run([POSTFIX, "stop", d], timeout=120)
        time.sleep(1)
        meter.close()
    return {"rate": messages / wall, "cpu_ms": 1000 * cpu / messages,
            "gen_cpu_ms": 1000 * gen_cpu / messages, "queued": queued,
            "cpu_measured": meter.path is not None}


def spoold_config(work):
    return {"mailstores": [{"name": "down", "kind": "lmtp", "host": "127.0.0.1", "port": free_port(),
                            "connect_timeout": "1s"}],
            "drain": {"breaker_min_backoff": "60s", "breaker_max_backoff": "120s"},
            "limits": {"max_sessions": 20000, "max_sessions_per_client": 20000}}


def bench_spoold(tool, messages, size, work):
    d = os.path.join(work, f"spoold-{tool}")
    os.makedirs(d, exist_ok=True)
    node = Spoold(d, spoold_config(work)).start()
    meter = CpuMeter("spoold")
    meter.add(node.proc.pid)
    try:
        cpu0 = meter.seconds()
        wall, gen_cpu, _ = run_load(tool, node.port, messages, size)
        cpu = meter.seconds() - cpu0
        st = json.loads(node.spoolctl("status", "--json").stdout)
    finally:
        node.stop()
        meter.close()
    return {"rate": messages / wall, "cpu_ms": 1000 * cpu / messages,
            "gen_cpu_ms": 1000 * gen_cpu / messages, "queued": st.get("messages")}


def latency_at(work, rate, messages, size):
    d = os.path.join(work, "spoold-latency")
    os.makedirs(d, exist_ok=True)
    node = Spoold(d, spoold_config(work)).start()
    try:
        r = subprocess.run([SMTP_LOAD, "--port", str(node.port), "--sessions", "20", "--messages",
                            str(messages), "--size", str(size), "--rate", str(rate)],
                           capture_output=True, text=True, timeout=1800)
        return json.loads(r.stdout)
    finally:
        node.stop()


def vm_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def idle_memory(work, count):
    d = os.path.join(work, "spoold-idle")
    os.makedirs(d, exist_ok=True)
    node = Spoold(d, spoold_config(work)).start()
    socks = []
    try:
        base = vm_kib(node.proc.pid, "VmRSS")
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", node.port), timeout=10)
            socks.append(s)
        for s in socks:
            s.recv(512)  # the greeting: the session really exists
        time.sleep(1)
        rss = vm_kib(node.proc.pid, "VmRSS")
        hwm = vm_kib(node.proc.pid, "VmHWM")
        return {"connections": count, "rss_mib": rss / 1024, "peak_mib": hwm / 1024,
                "base_mib": base / 1024}
    finally:
        for s in socks:
            s.close()
        node.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--size", type=int, default=10240)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--idle", type=int, default=5000)
    ap.add_argument("--tools", default="smtp-source,smtp_load")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="spoold-bench-")
    os.chmod(work, 0o755)  # Postfix runs as its own user and must reach its queue
    results = {}
    try:
        for tool in args.tools.split(","):
            for server, fn in (("postfix", bench_postfix), ("spoold", bench_spoold)):
                runs = [fn(tool, args.messages, args.size, work) for _ in range(args.runs)]
                results[(tool, server)] = {k: statistics.median(r[k] for r in runs)
                                           for k in ("rate", "cpu_ms", "gen_cpu_ms")}
                results[(tool, server)]["queued"] = runs[-1]["queued"]
        print(f"# {args.messages} messages x {args.size} bytes, 20 sessions, 1 recipient; "
              f"median of {args.runs} runs")
        for tool in args.tools.split(","):
            p, s = results[(tool, "postfix")], results[(tool, "spoold")]
            print(f"[{tool}] postfix: {p['rate']:.0f} msg/s, {p['cpu_ms']:.2f} ms CPU/msg "
                  f"(generator {p['gen_cpu_ms']:.2f} ms/msg), queued {p['queued']}")
            print(f"[{tool}] spoold:  {s['rate']:.0f} msg/s, {s['cpu_ms']:.3f} ms CPU/msg "
                  f"(generator {s['gen_cpu_ms']:.2f} ms/msg), queued {s['queued']}")
            print(f"[{tool}] ratio: rate x{s['rate'] / p['rate']:.1f} (target >= 8), "
                  f"CPU/msg 1/{p['cpu_ms'] / max(s['cpu_ms'], 1e-9):.1f} of postfix (target >= 20)")
        peak = max(results[(t, "spoold")]["rate"] for t in args.tools.split(","))
        lat = latency_at(work, peak / 2, max(args.messages, 2000), args.size)
        print(f"spoold end-of-data->250 at {peak / 2:.0f} msg/s (half of peak): "
              f"p50 {lat['p50_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms (target p99 < 20 ms), "
              f"achieved {lat['rate']:.0f} msg/s")
        if args.idle:
            mem = idle_memory(work, args.idle)
            print(f"spoold with {mem['connections']} idle connections: RSS {mem['rss_mib']:.1f} MiB, "
                  f"peak {mem['peak_mib']:.1f} MiB (target < 200 MiB; {mem['base_mib']:.1f} MiB before)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
