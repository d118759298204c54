"""Power cuts (issue 17): spoold's spool and its Maildir live on powercut_fs
(tests/support/powercut_fs), a FUSE filesystem that keeps apart what has not been
fsynced (file data since the last fsync, directory entries until the directory is
fsynced) and throws it away on a cut.

Mail flows in over SMTP and out into the Maildir while the power is cut at random
moments, SPOOLD_POWERCUT_CUTS times (200 by default): spoold is SIGKILLed, the
filesystem loses everything not fsynced (half of the cuts keep a seeded random torn part
of each file's unsynced writes), and a new filesystem process mounts what is durable.
After each cut, before spoold restarts: `spoolctl check --bodies` is clean, and every
message that got 250 is either in the spool with its body intact or delivered intact
into the Maildir; nothing in the Maildir is corrupt, nothing seen there after one cut is
gone after the next. At the end the spool drains, one more cut, and every acknowledged
message is in the Maildir.

Prints: cuts, acknowledged, in the spool after cuts, delivered, duplicates, lost (0).
A run is reproduced (as far as thread timing allows) with SPOOLD_POWERCUT_SEED.
"""
import json
import os
import random
import re
import shutil
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import SpooldTestCase, free_port, wait_for  # noqa: E402
from support_disk import MailSender, body_digest, exported_messages, message_id  # noqa: E402
from support_powercut import PowercutFs, fsync_dir, skip_unless_available  # noqa: E402

CUTS = int(os.environ.get("SPOOLD_POWERCUT_CUTS", "200"))
SENDERS = 3
USERS = [f"user{i}@example.com" for i in range(4)]
MAX_ACKS_BEFORE_CUT = 12   # a cut comes after 0..12 more acknowledgements ...
MAX_JITTER_S = 0.02        # ... and a random instant up to 20 ms later
BIG_SHARE = 0.05           # bodies above the intake's 128 KiB go through staging
LOCK_TIMEOUT = 30.0
MAX_CONCURRENCY = 8        # deliveries in flight into the Maildir


def body_size(rng):
    if rng.random() < BIG_SHARE:
        return rng.randint(140_000, 300_000)
    return rng.randint(100, 20_000)


class PhaseClock:
    """Where the run's time went: seconds per phase."""

    def __init__(self):
        self.totals, self.current, self.since = {}, None, time.monotonic()

    def start(self, name):
        now = time.monotonic()
        if self.current is not None:
            self.totals[self.current] = self.totals.get(self.current, 0) + now - self.since
        self.current, self.since = name, now

    def __str__(self):
        return ", ".join(f"{k} {v:.1f} s" for k, v in self.totals.items())


class MaildirAudit:
    """What the Maildir holds after a cut. A file checked once is only checked for
    presence and size afterwards: nothing rewrites a delivered file, and its content
    after an earlier cut was already what the disk held."""

    def __init__(self, root, users=USERS):
        self.root = root
        self.users = users
        self.known = {}  # path -> (Message-ID, size)

    def scan(self, sent):
        delivered, corrupt, seen = {}, [], set()
        for user in self.users:
            local, domain = user.split("@")
            new = os.path.join(self.root, domain, local, "new")
            names = os.listdir(new) if os.path.isdir(new) else []
            for name in names:
                path = os.path.join(new, name)
                seen.add(path)
                if path in self.known:
                    mid, size = self.known[path]
                    if os.path.getsize(path) != size:
                        corrupt.append((path, "size changed"))
                        continue
                else:
                    with open(path, "rb") as f:
                        data = f.read()
                    text = data.decode(errors="replace")
                    mid = message_id(text)
                    named = re.search(r",S=(\d+)$", name)
                    if mid not in sent or sent[mid] != body_digest(text):
                        corrupt.append((path, f"{len(data)} bytes, Message-ID {mid}: not the "
                                        "message that was sent"))
                        continue
                    if named is None or int(named.group(1)) != len(data):
                        corrupt.append((path, f"{len(data)} bytes, name says otherwise"))
                        continue
                    self.known[path] = (mid, len(data))
                delivered[mid] = delivered.get(mid, 0) + 1
        vanished = sorted(p for p in self.known if p not in seen)
        return delivered, corrupt, vanished


class PowerCuts(SpooldTestCase):
    def setUp(self):
        super().setUp()
        skip_unless_available()
        self.fs = PowercutFs(self.workdir)
        self._procs.append(self.fs)  # torn down last: spoold first, then the mount

    def make_node(self, port, maildir_root, start):
        """spoold with its spool and Maildir on the power-cut filesystem (its config and
        log stay on the ordinary disk)."""
        node = self.spoold({
            "listeners": [{"address": "127.0.0.1", "port": port}],
            "spool": {"path": self.fs.path("spool"), "max_size": "256MiB",
                      "min_free_disk": "1MiB"},
            "mailstores": [{"name": "default", "kind": "maildir", "maildir_root": maildir_root}],
            "drain": {"initial_concurrency": 4, "max_concurrency": MAX_CONCURRENCY,
                      "breaker_min_backoff": "200ms", "breaker_max_backoff": "1s",
                      "retry_min": "1s", "retry_max": "2s"},
        }, start=False)
        node.spool_dir = self.fs.path("spool")  # where spoolctl looks
        return node.start() if start else node

    def audit(self, node, maildir, senders, label):
        """Checks the state the last cut left. Returns (figures, problems)."""
        problems, report, in_spool = [], None, {}
        if os.path.isdir(node.spool_dir):
            r = node.spoolctl("check", "--bodies", "--json", check=False)
            try:
                report = json.loads(r.stdout.splitlines()[-1])
            except (ValueError, IndexError):
                pass
            if r.returncode != 0 or not report or report["problems"]:
                problems.append(f"spoolctl check ({r.returncode}): {r.stdout}{r.stderr}")
            else:
                outdir = os.path.join(self.workdir, "export")
                in_spool = exported_messages(node, outdir)
                shutil.rmtree(outdir)
        elif any(s.acked for s in senders):
            problems.append("the spool directory is gone")
        sent, acked = {}, {}
        for s in senders:
            sent.update(s.sent)
            acked.update((mid, d) for mid, (_, d) in s.acked.items())
        delivered, corrupt, vanished = maildir.scan(sent)
        spooled_wrong = [m for m, (_, d) in in_spool.items() if sent.get(m) != d]
        lost = sorted(m for m in acked if m not in in_spool and m not in delivered)
        problems += [f"corrupt in the Maildir: {c}" for c in corrupt]
        problems += [f"gone from the Maildir: {p}" for p in vanished]
        problems += [f"corrupt in the spool: {m}" for m in spooled_wrong]
        problems += [f"lost: {m}" for m in lost]
        figures = {
            "acked": len(acked),
            "acked_in_spool": sum(1 for m in acked if m in in_spool),
            "in_spool": len(in_spool),
            "delivered": sum(1 for m in delivered if m in acked),
            "delivered_unacked": sum(1 for m in delivered if m not in acked),
            "duplicates": sum(c - 1 for c in delivered.values()),
            "records": report["records"] if report else -1,
            "lost": len(lost),
        }
        if problems:
            print(f"\n[powercut] {label}: " + "\n  ".join(problems[:20]), file=sys.stderr)
        return figures, problems

    def test_power_cuts_during_ingest_and_drain_lose_nothing(self):
        seed = int(os.environ.get("SPOOLD_POWERCUT_SEED", str(int(time.time()))))
        rng = random.Random(seed)
        print(f"\n[powercut] seed {seed}, {CUTS} cuts", file=sys.stderr, flush=True)
        started = time.monotonic()
        fs = self.fs.boot(rng.getrandbits(32))
        os.makedirs(fs.path("mail"))
        fsync_dir(fs.mountpoint)  # the operator's set-up is on disk before spoold runs
        port = free_port()
        node = self.make_node(port, fs.path("mail"), start=False)
        maildir = MaildirAudit(fs.path("mail"))
        senders = [MailSender(port, USERS[i % len(USERS)], prefix=f"pc{i}")
                   for i in range(SENDERS)]
        locks = [threading.Lock() for _ in senders]
        up, stop = threading.Event(), threading.Event()

        def send_loop(i):
            r = random.Random(seed * 31 + i)
            while not stop.is_set():
                if not up.wait(1.0):
                    continue
                with locks[i]:
                    if up.is_set() and not stop.is_set():
                        senders[i].send(body_size(r))

        def acked_count():
            return sum(len(s.acked) for s in senders)

        threads = [threading.Thread(target=send_loop, args=(i,), daemon=True)
                   for i in range(SENDERS)]
        node.start()
        up.set()
        for t in threads:
            t.start()
        cuts = torn_cuts = acked_in_spool = 0
        fs_totals = {}
        problems = []
        phase = PhaseClock()
        held = False  # whether this thread holds every sender's lock
        try:
            for n in range(1, CUTS + 1):
                phase.start("mail flowing")
                target = acked_count() + rng.randint(0, MAX_ACKS_BEFORE_CUT)
                wait_for(lambda: acked_count() >= target or node.proc.poll() is not None, 60,
                         what=f"acknowledgements before cut {n}")
                self.assertIsNone(node.proc.poll(), "spoold died:\n" + node.log_text()[-3000:])
                time.sleep(rng.uniform(0, MAX_JITTER_S))  # picks the instant; waits for nothing
                phase.start("kill, cut, mount")
                up.clear()
                node.kill()
                for lock in locks:  # no sender is between a reply and its bookkeeping
                    self.assertTrue(lock.acquire(timeout=LOCK_TIMEOUT), "a sender hangs")
                held = True
                torn = rng.random() < 0.5
                for k, v in fs.cut(torn=torn).items():
                    if k not in ("torn", "seed"):
                        fs_totals[k] = fs_totals.get(k, 0) + v
                cuts += 1
                torn_cuts += torn
                fs.boot(rng.getrandbits(32))
                phase.start("audit")
                figures, problems = self.audit(node, maildir, senders, f"after cut {n}")
                acked_in_spool += figures["acked_in_spool"]
                if problems:
                    break
                phase.start("spoold start")
                node.start()
                up.set()
                for lock in locks:
                    lock.release()
                held = False
        finally:
            stop.set()
            up.set()
            if held:
                for lock in locks:
                    lock.release()
            for t in threads:
                t.join(30)

        phase.start("final drain")
        if not problems:
            if node.proc.poll() is not None:
                node.start()
            wait_for(lambda: node.list_json() == [], 180, interval=0.2, what="spool drained")
            node.kill()
            fs.cut()
            fs.boot(rng.getrandbits(32))
            figures, problems = self.audit(node, maildir, senders, "after the drain")
            if figures["in_spool"] != 0:
                problems.append(f"{figures['in_spool']} messages back in the spool after the "
                                "drain and a cut")
        phase.start(None)
        elapsed = time.monotonic() - started
        print(f"\n[powercut] cuts {cuts} (torn {torn_cuts}), acknowledged {figures['acked']}, "
              f"acknowledged and in the spool after a cut {acked_in_spool} (summed over cuts), "
              f"delivered {figures['delivered']}, duplicates {figures['duplicates']}, "
              f"delivered but never acknowledged {figures['delivered_unacked']}, "
              f"lost {figures['lost']}; filesystem: {fs_totals}; {elapsed:.0f} s ({phase})",
              file=sys.stderr, flush=True)
        self.assertEqual(problems, [])
        self.assertEqual(cuts, CUTS)
        self.assertEqual(figures["delivered"], figures["acked"])
        # Duplicates only from the window between the Maildir's fsync and the spool's
        # commit: at most the deliveries in flight and as many outcomes waiting for their
        # commit (max_concurrency each) at each cut.
        self.assertLessEqual(figures["duplicates"], cuts * 2 * MAX_CONCURRENCY)
        self.assertGreater(figures["acked"], CUTS)
        self.assertGreater(acked_in_spool, 0, "no cut ever caught mail in the spool")
        self.assertGreater(fs_totals.get("pieces_dropped", 0), 0)
        self.assertGreater(fs_totals.get("pieces_kept", 0), 0)

    def test_a_message_acknowledged_by_a_new_spool_survives_a_cut(self):
        # Regression: the spool directory's entries (data.mdb, lock.mdb) and the
        # directory itself were never fsynced, so a cut took a new spool away whole.
        fs = self.fs.boot()
        port = free_port()
        # The mailstore's root does not exist: the message stays in the spool.
        node = self.make_node(port, fs.path("absent"), start=True)
        sender = MailSender(port, USERS[0], prefix="first")
        stage, reply = sender.send(1000)
        sender.close()
        self.assertEqual((stage, reply[:3]), ("end", "250"), reply)
        node.kill()
        fs.cut()
        fs.boot()
        in_spool = exported_messages(node, os.path.join(self.workdir, "export"))
        self.assertEqual({m: d for m, (_, d) in in_spool.items()},
                         {m: d for m, (_, d) in sender.acked.items()})

    def test_a_mailbox_a_crash_left_unsynced_is_made_durable_before_mail_counts(self):
        # Regression: a mailbox directory made by a process that crashed before syncing
        # its parent (or by a concurrent delivery not yet there) was taken as durable;
        # the message delivered into it left the spool, and a cut took the mailbox away.
        fs = self.fs.boot()
        os.makedirs(fs.path("mail", "example.com", "late"))  # the crash: mkdir, no sync
        fsync_dir(fs.path("mail"))
        fsync_dir(fs.mountpoint)
        port = free_port()
        node = self.make_node(port, fs.path("mail"), start=True)
        sender = MailSender(port, "late@example.com", prefix="late")
        stage, reply = sender.send(1000)
        sender.close()
        self.assertEqual((stage, reply[:3]), ("end", "250"), reply)
        wait_for(lambda: node.list_json() == [], 30, what="the message delivered")
        node.kill()
        fs.cut()
        fs.boot()
        delivered, corrupt, _ = MaildirAudit(fs.path("mail"), ["late@example.com"]).scan(
            sender.sent)
        self.assertEqual(corrupt, [])
        self.assertEqual(set(delivered), set(sender.acked))


if __name__ == "__main__":
    unittest.main(verbosity=2)
