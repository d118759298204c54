#!/usr/bin/env python3
"""Recipient directory at an ISP's size (issue 14): load, restart, reload and look up
--mailboxes mailboxes without stalling SMTP.

Generates a directory file (format `list`: one `userN@example.com` per line, plus one alias
`aliasN@example.com: userM@example.com` per 100 mailboxes; the lines in an order unrelated to
the keys', as an ISP's file in account-creation order, or with --order sequential user0,
user1, ..., which LMDB takes nearly in key order) and runs build/spoold on it
(loopback, port 0, a Maildir store, directory.poll_interval 0 so only SIGHUP reloads, the
map size spoold's default unless --map-size). Prints, with units and ratios:

- the file's size and the time to write it;
- exec -> directory live: the first RCPT for a known mailbox answered 250. Until the table
  is built spoold answers such a RCPT 451 4.3.0 by design (the directory cannot answer yet,
  local trouble is never a 5xx); any other answer meanwhile is counted as wrong. Then a
  restart on the same file (the table is kept, nothing is rebuilt);
- the directory's data.mdb after the load and after each of --reloads SIGHUP reloads of a
  changed file (flat, not growing), and spoold's peak anonymous memory (RssAnon sampled
  every 50 ms, and VmHWM) at --mailboxes and at --small mailboxes;
- RCPT latency p50/p99 for known, unknown and alias addresses (--rcpts of each over a few
  sessions, --per-transaction RCPTs between RSETs), at both sizes: twice after the restart,
  as the first pass also maps the table's pages into the new process;
- each reload: SIGHUP -> the new file's answers (an address only in the new file accepted),
  and whether they switched once (an address only in the new file and one only in the old,
  asked in that order over and over: never both accepted, each changes once, none after);
- the stall test: while each reload runs, a paced RCPT load (--rcpt-rate a second) and a
  paced message load (--message-rate a second, 1 KiB, MAIL to 250 after the data) keep
  going; their p99 during the reloads (SIGHUP to switch) against the same loads' p99 before
  each SIGHUP, over as long as the first load took (at least 3 s). Target: ratio near 1.
  With a small directory a reload lasts milliseconds and catches few samples (printed): the
  test means something at millions.

    nice -n 19 tools/bench/directory_bench.py [--mailboxes 1000000] [--reloads 3]
                                              [--small 10000] [--build-dir build]

Everything runs in a temporary directory removed at the end (--keep keeps it); every
process started is stopped; every wait has a deadline (--timeout, scaled to --mailboxes).
"""
import argparse
import math
import os
import random
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
import harness  # noqa: E402
from harness import Spoold, poll_until, wait_for  # noqa: E402

DOMAIN = "example.com"
ALIAS_EVERY = 100  # one alias per this many mailboxes
LINES_PER_WRITE = 100_000
BODY = ("Subject: directory bench\r\n\r\n" + "x" * 1000 + "\r\n").encode()
REPLY_TIMEOUT = 60.0  # seconds for any one SMTP reply
MIN_BEFORE_SECONDS = 3.0  # the stall test's shortest baseline window before a SIGHUP


def mailbox(i):
    return f"user{i}@{DOMAIN}"


def alias(j):
    return f"alias{j}@{DOMAIN}"


def alias_target(j, n):
    return mailbox((j * 7919) % n)


def new_only(generation):
    """The address only the file of this generation has (0: the first load's)."""
    return f"new{generation}@{DOMAIN}"


def stride(n):
    """A step coprime to n: line k holds mailbox (k * step) % n, every mailbox once, in an
    order unrelated to the keys' (as an ISP's file in account-creation order), without
    holding a permutation of millions in memory."""
    step = 1_000_003
    while math.gcd(step, n) != 1:
        step += 2
    return step


def write_base(path, n, order):
    """The mailboxes and aliases every generation shares; returns the seconds it took."""
    t0 = time.monotonic()
    step = stride(n) if order == "random" else 1
    with open(path, "w") as f:
        f.write("# directory_bench: %d mailboxes, one alias per %d\n" % (n, ALIAS_EVERY))
        for start in range(0, n, LINES_PER_WRITE):
            end = min(n, start + LINES_PER_WRITE)
            f.write("".join(f"user{k * step % n}@{DOMAIN}\n" for k in range(start, end)))
        f.write("".join(f"{alias(j)}: {alias_target(j, n)}\n" for j in range(n // ALIAS_EVERY)))
    return time.monotonic() - t0


def publish(base, path, generation):
    """The directory file of `generation`: the base plus its own address, replaced whole so
    spoold never reads a half-written file."""
    tmp = path + ".tmp"
    shutil.copyfile(base, tmp)
    with open(tmp, "a") as f:
        f.write(new_only(generation) + "\n")
    os.replace(tmp, path)


class Smtp:
    """One SMTP session over loopback, one command at a time."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=REPLY_TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.f = self.sock.makefile("rb")
        self.reply()
        self.cmd("EHLO bench.test")
        self.rcpts = 0

    def reply(self):
        while True:
            line = self.f.readline()
            if not line:
                raise ConnectionError("spoold closed the session")
            if line[3:4] != b"-":
                return int(line[:3])

    def cmd(self, line):
        self.sock.sendall(line.encode() + b"\r\n")
        return self.reply()

    def mail(self):
        code = self.cmd("MAIL FROM:<bench@remote.test>")
        if code != 250:
            raise RuntimeError(f"MAIL FROM answered {code}")
        self.rcpts = 0

    def rcpt(self, address):
        """(code, seconds)"""
        t = time.monotonic()
        code = self.cmd(f"RCPT TO:<{address}>")
        return code, time.monotonic() - t

    def message(self, address):
        """One whole message, MAIL to the 250 after the data: seconds, or raises."""
        t = time.monotonic()
        self.mail()
        code = self.cmd(f"RCPT TO:<{address}>")
        if code != 250:
            raise RuntimeError(f"RCPT {address} answered {code}")
        if self.cmd("DATA") != 354:
            raise RuntimeError("DATA refused")
        self.sock.sendall(BODY + b".\r\n")
        code = self.reply()
        if code != 250:
            raise RuntimeError(f"end of data answered {code}")
        return time.monotonic() - t

    def close(self):
        try:
            self.sock.sendall(b"QUIT\r\n")
            self.reply()
        except OSError:
            pass
        self.f.close()
        self.sock.close()


class MemoryWatch:
    """Samples spoold's RssAnon every 50 ms; peak() is the highest seen."""

    def __init__(self, pid):
        self.pid = pid
        self.peak_anon = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def status_kib(self, field):
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def _run(self):
        while not self.stopping.is_set():
            self.peak_anon = max(self.peak_anon, self.status_kib("RssAnon"))
            self.stopping.wait(0.05)

    def stop(self):
        """(peak RssAnon, VmHWM) in KiB; call before spoold exits."""
        hwm = self.status_kib("VmHWM")
        self.stopping.set()
        self.thread.join(5)
        self.peak_anon = max(self.peak_anon, self.status_kib("RssAnon"))
        return self.peak_anon, hwm


class Node:
    """spoold on the directory file, with its memory watched from exec."""

    def __init__(self, work, name, directory, args):
        os.makedirs(os.path.join(work, name))
        d = {"file": directory, "poll_interval": "0s"}
        if args.map_size:
            d["map_size"] = args.map_size
        self.spoold = Spoold(os.path.join(work, name), {
            "directory": d,
            # Unknown users are 550s, which count as client errors: the bench asks thousands.
            "limits": {"max_errors": 1_000_000, "max_sessions_per_client": 1000},
        })
        self.timeout = args.timeout
        self.watch = None
        self.mem = None

    def data_mdb(self):
        st = os.stat(os.path.join(self.spoold.spool_dir, "directory", "data.mdb"))
        return st.st_size, st.st_blocks * 512

    def start_until_live(self, known):
        """Starts spoold; returns (seconds from exec to the first 250 for `known`, 451s
        answered before it, other answers before it)."""
        t0 = time.monotonic()
        self.spoold.start(wait_ready=False)
        self.watch = MemoryWatch(self.spoold.proc.pid)
        m = poll_until(lambda: self.spoold.find_line(r"event=listening .*port=(\d+)")
                       or self.spoold.proc.poll() is not None, self.timeout)
        if not m or self.spoold.proc.poll() is not None:
            raise RuntimeError("spoold did not listen:\n" + self.spoold.log_text()[-3000:])
        self.spoold.port = int(m.group(1))
        s = Smtp(self.spoold.port)
        tempfails, wrong = 0, {}
        try:
            s.mail()
            deadline = t0 + self.timeout
            while True:
                code, _ = s.rcpt(known)
                if code == 250:
                    return time.monotonic() - t0, tempfails, wrong
                if code == 451:
                    tempfails += 1
                else:
                    wrong[code] = wrong.get(code, 0) + 1
                if time.monotonic() > deadline or self.spoold.proc.poll() is not None:
                    raise RuntimeError(f"directory not live after {self.timeout} s:\n"
                                       + self.spoold.log_text()[-3000:])
                time.sleep(0.02)  # a poll: the next RCPT asks again
        finally:
            s.close()

    def loaded_ms(self):
        """The loader's own figure for its last load (event=directory_loaded ... ms=)."""
        ms = None
        for line in self.spoold.lines():
            if "event=directory_loaded" in line and " ms=" in line:
                ms = int(line.rsplit(" ms=", 1)[1].split()[0])
        return ms

    def stop(self):
        if self.watch:
            self.mem = self.watch.stop()
            self.watch = None
        self.spoold.stop(120)


def pct(samples, q):
    if not samples:
        return float("nan")
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


def rcpt_latency(port, n, rcpts, per_transaction, sessions):
    """p50/p99 ms of RCPT for known, unknown and alias addresses, interleaved."""
    rng = random.Random(14)
    kinds = {"known": (250, lambda: mailbox(rng.randrange(n))),
             "unknown": (550, lambda: f"nobody{rng.randrange(10 * n)}@{DOMAIN}"),
             "alias": (250, lambda: alias(rng.randrange(max(1, n // ALIAS_EVERY))))}
    out = {k: [] for k in kinds}
    per_session = -(-rcpts // sessions)
    for _ in range(sessions):
        s = Smtp(port)
        try:
            s.mail()
            for i in range(per_session):
                for kind, (want, pick) in kinds.items():
                    if s.rcpts >= per_transaction:
                        if s.cmd("RSET") != 250:
                            raise RuntimeError("RSET refused")
                        s.mail()
                    code, secs = s.rcpt(pick())
                    s.rcpts += 1
                    if code != want:
                        raise RuntimeError(f"RCPT ({kind}) answered {code}, expected {want}")
                    out[kind].append(secs * 1000)
        finally:
            s.close()
    return {k: (pct(v, 0.50), pct(v, 0.99), len(v)) for k, v in out.items()}


class Load:
    """A paced load on its own session in a thread: samples of (start time, ms)."""

    def __init__(self, port, rate, step):
        self.port, self.interval, self.step = port, 1.0 / rate, step
        self.samples = []
        self.error = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        s = None
        try:
            s = Smtp(self.port)
            due = time.monotonic()
            while not self.stopping.is_set():
                t = time.monotonic()
                self.samples.append((t, self.step(s) * 1000))
                due = max(due + self.interval, time.monotonic())
                self.stopping.wait(max(0.0, due - time.monotonic()))
        except Exception as e:  # reported by stop(): the bench fails, not hangs
            self.error = e
        finally:
            if s:
                s.close()

    def count_since(self, t):
        return sum(1 for ts, _ in list(self.samples) if ts >= t)

    def window(self, t0, t1):
        return [ms for ts, ms in list(self.samples) if t0 <= ts < t1]

    def stop(self):
        self.stopping.set()
        self.thread.join(REPLY_TIMEOUT + 5)
        if self.error:
            raise RuntimeError(f"load failed: {self.error!r}")


def rcpt_step(n):
    rng = random.Random(15)

    def step(s):
        if s.rcpts == 0 or s.rcpts >= 100:
            if s.rcpts:
                s.cmd("RSET")
            s.mail()
        code, secs = s.rcpt(mailbox(rng.randrange(n)))
        s.rcpts += 1
        if code != 250:
            raise RuntimeError(f"RCPT for a known mailbox answered {code} under load")
        return secs
    return step


def message_step(n):
    rng = random.Random(16)
    return lambda s: s.message(mailbox(rng.randrange(n)))


def reload_once(node, base, path, generation, rcpt_load, msg_load, before_s, timeout):
    """Publishes generation's file, waits for the loads' baseline, SIGHUPs; returns
    (t_hup, seconds to the switch, switched once, probes, data.mdb after)."""
    publish(base, path, generation)
    t_before = time.monotonic()
    wait_for(lambda: time.monotonic() - t_before >= before_s
             and rcpt_load.count_since(t_before) >= 20 and msg_load.count_since(t_before) >= 5,
             timeout, what="the loads' samples before the SIGHUP")
    new, old = new_only(generation), new_only(generation - 1)
    probe = Smtp(node.spoold.port)
    loaded_before = node.spoold.count_lines("event=directory_loaded")
    seen = []
    try:
        probe.mail()
        t_hup = time.monotonic()
        node.spoold.signal(signal.SIGHUP)
        t_switch = None
        after_loaded = 0
        deadline = t_hup + timeout
        while after_loaded < 20:
            a, _ = probe.rcpt(new)
            b, _ = probe.rcpt(old)
            seen.append((a, b))
            if a == 250 and t_switch is None:
                t_switch = time.monotonic()
            if node.spoold.count_lines("event=directory_loaded") > loaded_before:
                after_loaded += 1
            if time.monotonic() > deadline:
                raise RuntimeError(f"reload {generation} not done after {timeout} s")
            time.sleep(0.005)  # a poll: the next pair asks again
    finally:
        probe.close()
    news = [a for a, _ in seen]
    olds = [b for _, b in seen]
    once = (all(c in (250, 550) for c in news + olds) and (250, 250) not in seen
            and changes(news) == 1 and changes(olds) == 1 and news[-1] == 250 and olds[-1] == 550)
    if t_switch is None:
        raise RuntimeError(f"reload {generation}: {new} never accepted")
    return t_hup, t_switch - t_hup, once, len(seen), t_before


def changes(codes):
    return sum(1 for a, b in zip(codes, codes[1:]) if a != b)


def mib(kib):
    return kib / 1024


def ratio(a, b):
    return a / b if b else float("nan")


def small_run(work, args):
    n = args.small
    base = os.path.join(work, "small-base")
    path = os.path.join(work, "small-recipients")
    write_base(base, n, args.order)
    publish(base, path, 0)
    node = Node(work, "small", path, args)
    try:
        live, _, _ = node.start_until_live(mailbox(0))
        for _ in range(2):  # the second pass, as at --mailboxes
            lat = rcpt_latency(node.spoold.port, n, args.rcpts, args.per_transaction,
                               args.sessions)
        size = node.data_mdb()
    finally:
        node.stop()
    return {"live": live, "lat": lat, "mem": node.mem, "mdb": size}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mailboxes", type=int, default=1_000_000)
    ap.add_argument("--reloads", type=int, default=3)
    ap.add_argument("--small", type=int, default=10_000,
                    help="the small directory the memory and latency are compared with")
    ap.add_argument("--build-dir", default=os.environ.get("SPOOLD_BUILD_DIR",
                                                          os.path.join(ROOT, "build")))
    ap.add_argument("--order", choices=("random", "sequential"), default="random",
                    help="the file's lines: in an order unrelated to the keys', or user0, user1, "
                    "... (whose batches of consecutive numbers are nearly in key order)")
    ap.add_argument("--map-size", default="", help="directory.map_size (default: spoold's)")
    ap.add_argument("--rcpts", type=int, default=2000, help="RCPTs of each kind for latency")
    ap.add_argument("--per-transaction", type=int, default=100, help="RCPTs between RSETs")
    ap.add_argument("--sessions", type=int, default=4)
    ap.add_argument("--rcpt-rate", type=float, default=200.0, help="stall test, RCPTs/s")
    ap.add_argument("--message-rate", type=float, default=20.0, help="stall test, messages/s")
    ap.add_argument("--timeout", type=float, default=0.0,
                    help="seconds any load may take (default 120 + 100 us per mailbox)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    n = args.mailboxes
    if n < 1000 or args.small < 1000:
        ap.error("--mailboxes and --small: at least 1000")
    args.timeout = args.timeout or 120 + n / 10_000
    build = os.path.abspath(args.build_dir)
    harness.SPOOLD = os.path.join(build, "spoold")
    harness.SPOOLCTL = os.path.join(build, "spoolctl")
    if not os.access(harness.SPOOLD, os.X_OK):
        sys.exit(f"directory_bench: {harness.SPOOLD} missing: "
                 f"cmake --build {args.build_dir} --target spoold spoolctl")

    work = tempfile.mkdtemp(prefix="spoold-directory-bench-")
    os.chmod(work, 0o755)
    nodes = []
    try:
        t_all = time.monotonic()
        small = small_run(work, args)
        base = os.path.join(work, "base")
        path = os.path.join(work, "recipients")
        gen_s = write_base(base, n, args.order)
        publish(base, path, 0)
        fsize = os.path.getsize(path)
        aliases = n // ALIAS_EVERY
        print(f"directory file ({args.order} order): {n:,} mailboxes + {aliases:,} aliases = "
              f"{fsize / 2**20:.1f} MiB "
              f"({fsize / (n + aliases):.1f} B/entry), written in {gen_s:.1f} s", flush=True)

        node = Node(work, "big", path, args)
        nodes.append(node)
        live, tempfails, wrong = node.start_until_live(mailbox(n - 1))
        load_ms = node.loaded_ms()
        mdb_first = node.data_mdb()
        print(f"exec -> directory live (first RCPT for a known mailbox 250): {live:.2f} s "
              f"(loader: {load_ms / 1000:.2f} s, {n / max(load_ms, 1) * 1000:,.0f} entries/s); "
              f"{small['live'] * 1000:.0f} ms at {args.small:,} "
              f"(x{ratio(live, small['live']):.0f}); "
              f"answered 451 4.3.0 {tempfails} times meanwhile, by design (the table is not "
              f"built yet), other answers: {wrong or 'none'}", flush=True)
        print(f"directory data.mdb after the load: {mdb_first[0] / 2**20:.1f} MiB "
              f"({mdb_first[0] / (n + aliases):.0f} B/entry; "
              f"{mdb_first[1] / 2**20:.1f} MiB on disk); "
              f"{small['mdb'][0] / 2**20:.2f} MiB at {args.small:,}", flush=True)

        node.stop()
        first_mem = node.mem
        restart, tempfails, wrong = node.start_until_live(mailbox(n - 1))
        print(f"restart on the same file -> live: {restart * 1000:.0f} ms "
              f"(x{ratio(restart, live):.3f} of the first load; 451s meanwhile: {tempfails}, "
              f"unchanged table: {node.spoold.has_line('unchanged=1')})", flush=True)

        # Twice: the first pass after the restart also faults the table's pages into spoold's
        # mapping (minor faults: the pages are in the page cache), the second finds them there.
        for name in ("after restart", "again"):
            lat = rcpt_latency(node.spoold.port, n, args.rcpts, args.per_transaction,
                               args.sessions)
            for kind, (p50, p99, count) in lat.items():
                s50, s99, _ = small["lat"][kind]
                print(f"RCPT {kind:7} ({name}): p50 {p50:.3f} ms, p99 {p99:.3f} ms ({count} "
                      f"RCPTs, {args.sessions} sessions, RSET every {args.per_transaction}); at "
                      f"{args.small:,} (again): p50 {s50:.3f} ms, p99 {s99:.3f} ms "
                      f"(x{ratio(p50, s50):.2f}, x{ratio(p99, s99):.2f})", flush=True)

        # The baseline before each SIGHUP lasts as long as the first load took (a reload takes
        # about as long), so both windows have the same chance of the machine's own hiccups.
        before_s = max(MIN_BEFORE_SECONDS, load_ms / 1000)
        rcpt_load = Load(node.spoold.port, args.rcpt_rate, rcpt_step(n))
        msg_load = Load(node.spoold.port, args.message_rate, message_step(n))
        before = {"rcpt": [], "msg": []}
        during = {"rcpt": [], "msg": []}
        sizes = []
        try:
            for g in range(1, args.reloads + 1):
                t_hup, secs, once, probes, t_before = reload_once(
                    node, base, path, g, rcpt_load, msg_load, before_s, args.timeout)
                t_end = t_hup + secs
                before["rcpt"] += rcpt_load.window(t_before, t_hup)
                before["msg"] += msg_load.window(t_before, t_hup)
                during["rcpt"] += rcpt_load.window(t_hup, t_end)
                during["msg"] += msg_load.window(t_hup, t_end)
                sizes.append(node.data_mdb())
                print(f"reload {g}: SIGHUP -> the new file's answers {secs:.2f} s (loader "
                      f"{node.loaded_ms() / 1000:.2f} s); switched once: "
                      f"{'yes' if once else 'NO'} ({probes} probe pairs); data.mdb "
                      f"{sizes[-1][0] / 2**20:.1f} MiB", flush=True)
        finally:
            rcpt_load.stop()
            msg_load.stop()
        all_sizes = [mdb_first[0]] + [x[0] for x in sizes]
        last = ratio(all_sizes[-1], all_sizes[-2]) if len(all_sizes) > 2 else float("nan")
        print("data.mdb after the load and each reload: "
              + ", ".join(f"{x / 2**20:.1f}" for x in all_sizes)
              + f" MiB: x{ratio(all_sizes[-1], mdb_first[0]):.2f} of the first load (a reload "
              "builds its table beside the live one), "
              f"x{last:.3f} over the last reload ("
              + ("needs 2 reloads" if math.isnan(last) else "flat" if last <= 1.05 else "GROWING")
              + ")", flush=True)
        for key, name, rate in (("rcpt", "RCPT (known)", args.rcpt_rate),
                                ("msg", "whole message", args.message_rate)):
            b99, d99 = pct(before[key], 0.99), pct(during[key], 0.99)
            b50, d50 = pct(before[key], 0.50), pct(during[key], 0.50)
            print(f"stall test, {name} at {rate:g}/s: p99 {d99:.2f} ms during the reloads vs "
                  f"{b99:.2f} ms before them (ratio {ratio(d99, b99):.2f}, target near 1; "
                  f"p50 {d50:.2f} vs {b50:.2f} ms); {len(during[key])} samples during, "
                  f"{len(before[key])} before; max during {max(during[key], default=0):.1f} ms"
                  + (" (too few samples for a p99: the reloads were short)"
                     if len(during[key]) < 200 else ""), flush=True)
        node.stop()
        nodes.remove(node)
        peak = max(first_mem[0], node.mem[0])
        hwm = max(first_mem[1], node.mem[1])
        print(f"spoold peak RssAnon: {mib(peak):.1f} MiB at {n:,} (load {mib(first_mem[0]):.1f}, "
              f"restart+lookups+reloads {mib(node.mem[0]):.1f}), {mib(small['mem'][0]):.1f} MiB "
              f"at {args.small:,} (x{ratio(peak, small['mem'][0]):.2f}); VmHWM {mib(hwm):.1f} MiB "
              f"vs {mib(small['mem'][1]):.1f} MiB (includes the directory's mapped pages)",
              flush=True)
        print(f"bench wall time: {time.monotonic() - t_all:.1f} s")
    finally:
        for node in nodes:
            node.spoold.kill()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
