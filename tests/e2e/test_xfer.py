"""`spoolctl xfer` end to end: two spoold nodes on loopback. Node A's spool is filled with
gen_spool (messages of three classes, arrival times spread over a week, some deferred,
some held) and its drain paused; node B's drain is paused too, so both spools can be
compared afterwards. A message is identified across the nodes by the SHA-256 of its body
as A stored it (B's copy without the Received: header B added on top).

- The whole queue moves: B holds exactly A's bodies, each with its class, arrival and
  expiry (B lists 127.0.0.0/8 in xfer.peers), and A is empty.
- B killed mid-way: xfer fails; every message is in A (state unchanged) or in B, or both.
- A peer that refuses the messages (550 to RCPT): each stays in A as it was, B is empty.
- A peer that does not list us ignores the claim: the messages are B's new mail."""
import collections
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BUILD_DIR, SPOOLCTL, SpooldTestCase, wait_for  # noqa: E402

GEN_SPOOL = os.path.join(BUILD_DIR, "gen_spool")
COUNT = int(os.environ.get("SPOOLD_XFER_COUNT", "10000"))
KILL_COUNT = 2000
KILL_AFTER = 300          # B is killed once it holds this many
XFER_TIMEOUT_S = 300


def strip_first_header(body):
    """The body without its first header field (the Received: line B prepended)."""
    assert body.startswith(b"Received:"), body[:80]
    at = body.index(b"\r\n") + 2
    while body[at:at + 1] in (b" ", b"\t"):
        at = body.index(b"\r\n", at) + 2
    return body[at:]


class Xfer(SpooldTestCase):
    def node(self, name, extra=None):
        config = {"xfer": {"peers": ["127.0.0.0/8"]}} if name == "b" else {}
        config.update(extra or {})
        n = self.spoold(config, start=False, subdir=name)
        return n

    def start_paused(self, n):
        """Starts `n` with its drain paused before anything can be delivered."""
        os.makedirs(n.spool_dir, exist_ok=True)
        n.start()
        n.spoolctl("pause")
        wait_for(lambda: n.has_line("event=drain_pause paused=true by=spool"), 20,
                 what="drain paused")

    def filled(self, count):
        """Node A with `count` generated messages, paused before it starts draining."""
        a = self.node("a")
        subprocess.run([GEN_SPOOL, "--spool", a.spool_dir, "--count", str(count),
                        "--recipients-domain", "example.com", "--users", "50", "--seed", "15"],
                       check=True, capture_output=True, timeout=300)
        a.spoolctl("pause")  # gen_spool made the spool; the drain sees the flag at start
        a.start()
        wait_for(lambda: a.has_line("event=drain_pause paused=true by=spool"), 20,
                 what="drain paused")
        return a

    def snapshot(self, n, strip=False):
        """body hash -> list of that body's list --json entries (ids differ per node)."""
        out = os.path.join(self.workdir, f"export-{os.path.basename(n.workdir)}-{time.time_ns()}")
        entries = {e["id"]: e for e in n.list_json("--all")}
        if entries:
            n.spoolctl("export", "--all", "--dir", out)
        by_hash = collections.defaultdict(list)
        for qid, e in entries.items():
            with open(os.path.join(out, qid + ".eml"), "rb") as f:
                body = f.read()
            by_hash[hashlib.sha256(strip_first_header(body) if strip else body).hexdigest()].append(e)
        return by_hash

    def xfer(self, a, b, *args):
        return subprocess.Popen([SPOOLCTL, "--spool", a.spool_dir, "xfer", "--to",
                                 f"127.0.0.1:{b.port}", *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def test_the_whole_queue_moves_with_class_arrival_and_expiry(self):
        a = self.filled(COUNT)
        b = self.node("b")
        self.start_paused(b)
        before = self.snapshot(a)
        self.assertEqual(sum(len(v) for v in before.values()), COUNT)
        self.assertGreater(len({e["class"] for v in before.values() for e in v}), 1)

        started = time.monotonic()
        p = self.xfer(a, b, "--all", "--yes")
        out, err = p.communicate(timeout=XFER_TIMEOUT_S)
        elapsed = time.monotonic() - started
        self.assertEqual(p.returncode, 0, out + err)
        self.assertIn(f"moved {COUNT} messages", out)
        print(f"xfer moved {COUNT} messages in {elapsed:.1f} s", file=sys.stderr)

        self.assertEqual(a.list_json("--all"), [])
        after = self.snapshot(b, strip=True)
        self.assertEqual(set(after), set(before))
        for h, entries in before.items():
            keep = lambda e: (e["class"], e["arrival_ms"], e["expires_ms"],  # noqa: E731
                              # B's intake takes a repeated RCPT once
                              sorted({r["address"] for r in e["recipients"]
                                      if r["state"] in ("queued", "deferred")}))
            self.assertEqual(sorted(map(keep, after[h])), sorted(map(keep, entries)), h)

    def test_a_peer_killed_mid_way_loses_nothing(self):
        a = self.filled(KILL_COUNT)
        b = self.node("b")
        self.start_paused(b)
        before = self.snapshot(a)
        p = self.xfer(a, b, "--all", "--yes")
        wait_for(lambda: p.poll() is not None or
                 len(b.spoolctl("list", "--all").stdout.splitlines()) > KILL_AFTER,
                 XFER_TIMEOUT_S, interval=0.2, what="B holds some of the queue")
        self.assertIsNone(p.poll(), "xfer finished before B was killed")
        b.kill()
        out, err = p.communicate(timeout=XFER_TIMEOUT_S)
        self.assertEqual(p.returncode, 1, out + err)
        self.assertIn("failed", out)
        self.assertIn("127.0.0.1", err)

        left = self.snapshot(a)
        moved = self.snapshot(b, strip=True)  # B's spool, read after its SIGKILL
        self.assertGreater(sum(len(v) for v in left.values()), 0)
        self.assertGreater(sum(len(v) for v in moved.values()), KILL_AFTER - 1)
        for h, entries in before.items():
            self.assertTrue(h in left or h in moved, f"message {entries[0]['id']} was lost")
        # What stayed in A is as it was: same ids, same held flag, class, expiry.
        original = {e["id"]: e for v in before.values() for e in v}
        for v in left.values():
            for e in v:
                o = original[e["id"]]
                self.assertEqual((e["held"], e["class"], e["expires_ms"]),
                                 (o["held"], o["class"], o["expires_ms"]), e["id"])

    def test_a_refused_message_stays_as_it_was(self):
        a = self.filled(20)
        b = self.node("b", {"local_domains": ["example.net"]})  # 550 for example.com
        self.start_paused(b)
        before = {e["id"]: e for e in a.list_json("--all")}
        p = self.xfer(a, b, "--all", "--yes")
        out, err = p.communicate(timeout=XFER_TIMEOUT_S)
        self.assertEqual(p.returncode, 1, out + err)
        self.assertIn("moved 0 messages, 20 failed", out)
        self.assertIn("550", err)
        self.assertEqual(b.list_json("--all"), [])
        after = {e["id"]: e for e in a.list_json("--all")}
        self.assertEqual(set(after), set(before))
        for qid, e in after.items():
            self.assertEqual((e["held"], e["state"], e["class"], e["expires_ms"]),
                             (before[qid]["held"], before[qid]["state"], before[qid]["class"],
                              before[qid]["expires_ms"]), qid)

    def test_an_untrusting_peer_classifies_moved_mail_as_new(self):
        a = self.filled(20)
        b = self.node("b", {"xfer": {"peers": ["10.0.0.0/8"]}})
        self.start_paused(b)
        before = self.snapshot(a)
        start_ms = time.time() * 1000
        p = self.xfer(a, b, "--all", "--yes")
        out, err = p.communicate(timeout=XFER_TIMEOUT_S)
        self.assertEqual(p.returncode, 0, out + err)
        after = self.snapshot(b, strip=True)
        self.assertEqual(set(after), set(before))
        for entries in after.values():
            for e in entries:
                self.assertEqual(e["class"], "normal")       # the default class
                self.assertGreaterEqual(e["arrival_ms"], int(start_ms))


if __name__ == "__main__":
    unittest.main()
