"""Full disk end to end (issue 7): the spool on a small filesystem the test mounts
itself (tmpfs of fixed size, else a loop-mounted ext4 image; skipped without root).

- The filesystem fills while the mailstore (Dovecot) is down: SMTP answers 452 4.3.1
  (451 4.3.0 for a failed commit is tolerated, never a 5xx), the daemon keeps running,
  every message that got 250 is in the spool with an intact body and nothing else is;
  when Dovecot comes back the drain frees space and spoold accepts again by itself.
- The same with spool.min_free_disk tripping before the disk is full: refusal at MAIL
  FROM, and acceptance again once space comes back (a filler file deleted; the spool
  drained).
- A full Maildir and a Dovecot that answers 452 (over quota): the recipients are
  deferred, never failed, no DSN; delivered once space / quota comes back.

Prints the figures: messages acknowledged before full, refusals, time to recover.
"""
import os
import shutil
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Dovecot, SpooldTestCase, poll_until, wait_for  # noqa: E402
from support_disk import MailSender, SmallFs, exported_messages  # noqa: E402

FS_MIB = 40
MSG_SIZE = 100 * 1024
MAX_SENDS = 2000          # bound on the fill loop (40 MiB / 100 KiB is about 400)
AFTER_FIRST_REFUSAL = 25  # attempts after the first refusal: all must be 4xx
RECOVER_TIMEOUT = 60.0
OK_REFUSALS = ("452 4.3.1", "451 4.3.0")
WM_MIB = 10               # spool.min_free_disk in the watermark variants
PROBE_ROUNDS = 3          # probes a full Maildir must fail before space comes back


def report(label, **figures):
    text = " ".join(f"{k}={v}" for k, v in figures.items())
    print(f"\n[full-disk] {label}: {text}", file=sys.stderr, flush=True)


class FullDiskCase(SpooldTestCase):
    def setUp(self):
        super().setUp()
        self._mounts = []

    def tearDown(self):
        for p in reversed(self._procs):
            try:
                p.kill()
            except Exception as e:  # noqa: BLE001 - reported, the rest still runs
                print("teardown:", e, file=sys.stderr)
        for fs in reversed(self._mounts):
            fs.umount()
        super().tearDown()

    def small_fs(self, name, size_mib):
        fs = SmallFs(os.path.join(self.workdir, name), size_mib)
        self._mounts.append(fs)
        return fs.mount()

    def dovecot(self, users, quota_full=()):
        d = Dovecot(os.path.join(self.workdir, "dovecot"), users, quota_full=quota_full)
        self._procs.append(d)
        return d

    def node_on(self, spool_path, extra=None, start=True):
        node = self.spoold(extra, start=False)
        node.spool_dir = spool_path
        node.config["spool"]["path"] = spool_path
        if start:
            node.start()
        return node

    def lmtp_config(self, dovecot, spool):
        return {
            "spool": spool,
            "mailstores": [{"name": "dovecot", "kind": "lmtp", "host": "127.0.0.1",
                            "port": dovecot.port, "connect_timeout": "1s",
                            "command_timeout": "5s", "data_timeout": "5s"}],
            "drain": {"breaker_min_backoff": "200ms", "breaker_max_backoff": "1s",
                      "breaker_failures": 2, "retry_min": "1s", "retry_max": "2s",
                      "initial_concurrency": 4, "max_concurrency": 8},
        }

    # ---- shared steps ----

    def fill_until_refused(self, node, sender, want_452=True):
        first_refusal = None
        for _ in range(MAX_SENDS):
            stage, reply = sender.send(MSG_SIZE)
            if not reply.startswith("250"):
                if first_refusal is None:
                    first_refusal = sender.seq
            if first_refusal is not None and sender.seq - first_refusal >= AFTER_FIRST_REFUSAL:
                break
        self.assertIsNotNone(first_refusal, f"{MAX_SENDS} messages of {MSG_SIZE} B all accepted")
        self.assertIsNone(node.proc.poll(), "spoold died while the disk filled:\n" +
                          node.log_text()[-4000:])
        for mid, stage, reply in sender.refusals:
            self.assertTrue(reply.startswith(OK_REFUSALS),
                            f"{mid} refused at {stage} with {reply!r}: local trouble must be "
                            f"452 4.3.1 or 451 4.3.0")
        if want_452:
            self.assertTrue(any(r.startswith("452 4.3.1") for _, _, r in sender.refusals),
                            sender.refusals)
        return first_refusal

    def assert_spool_holds_exactly(self, node, acked, label):
        exported = exported_messages(node, os.path.join(self.workdir, "export-" + label))
        missing = sorted(set(acked) - set(exported))
        extra = sorted(set(exported) - set(acked))
        damaged = sorted(m for m in acked if m in exported and exported[m][1] != acked[m][1])
        self.assertEqual(missing, [], "acknowledged messages missing from the spool")
        self.assertEqual(damaged, [], "acknowledged messages with a damaged body")
        self.assertEqual(extra, [], "refused messages must leave nothing in the spool")
        r = node.spoolctl("check", "--bodies", check=False)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def time_until_accepted(self, sender, timeout=RECOVER_TIMEOUT, size=MSG_SIZE):
        """Seconds until a message is accepted again (None after `timeout`), and the tries:
        one every half second, each refused one with a refusal the sender retries."""
        start = time.monotonic()
        tries = 0

        def accepted():
            nonlocal tries
            tries += 1
            _, reply = sender.send(size)
            self.assertTrue(reply.startswith(("250",) + OK_REFUSALS) or reply.startswith("---"),
                            reply)
            return reply.startswith("250")
        if poll_until(accepted, timeout, interval=0.5) is None:
            return None, tries
        return time.monotonic() - start, tries

    # ---- tests ----

    def test_spool_fs_fills_during_outage_452_then_drain_frees_space(self):
        fs = self.small_fs("fs", FS_MIB)
        dovecot = self.dovecot(["alice@example.com"])  # not started: the outage
        node = self.node_on(os.path.join(fs.mountpoint, "spool"),
                            self.lmtp_config(dovecot, {"max_size": "1GiB",
                                                       "high_watermark": 1.0,
                                                       "min_free_disk": 0}))
        sender = MailSender(node.port, "alice@example.com", prefix="enospc")
        t0 = time.monotonic()
        # ENOSPC itself: LMDB reports the short pwrite() of a commit as EIO, so the
        # reply may be 451 4.3.0 rather than 452 4.3.1; both make the sender retry.
        first_refusal = self.fill_until_refused(node, sender, want_452=False)
        fill_s = time.monotonic() - t0
        acked = dict(sender.acked)
        free_at_full = fs.free_bytes()
        self.assert_spool_holds_exactly(node, acked, "full")
        self.assertIsNone(node.proc.poll())
        stages = sorted({(s, r[:9]) for _, s, r in sender.refusals})

        t1 = time.monotonic()
        dovecot.start()
        started_s = time.monotonic() - t1
        recover_s, tries = self.time_until_accepted(sender)
        self.assertIsNotNone(recover_s, "spoold did not accept again within %ss of Dovecot's "
                             "return:\n%s" % (RECOVER_TIMEOUT, node.log_text()[-3000:]))
        everything = dict(sender.acked)
        wait_for(lambda: len(dovecot.messages("alice@example.com")) >= len(everything), 120,
                 interval=0.5, what="backlog delivered to Dovecot")
        drain_s = time.monotonic() - t1
        delivered = [Dovecot.header(p, "Message-ID") for p in dovecot.messages("alice@example.com")]
        self.assertEqual(sorted(set(delivered)), sorted(everything), "each acked message delivered")
        dups = len(delivered) - len(set(delivered))
        wait_for(lambda: node.list_json() == [], 30, what="spool empty")
        self.assertIsNone(node.proc.poll())
        # The freed pages are reused: a burst as large as a quarter of the fs is taken.
        burst = MailSender(node.port, "alice@example.com", prefix="after")
        for _ in range(100):
            burst.send(MSG_SIZE)
        self.assertEqual(burst.refusals, [])
        report("enospc", fs=fs.kind, fs_mib=FS_MIB, msg_kib=MSG_SIZE // 1024,
               acked_before_full=first_refusal - 1, acked_total_while_full=len(acked),
               refusals=len(sender.refusals), refusal_kinds=stages,
               free_bytes_at_full=free_at_full, fill_s=f"{fill_s:.1f}",
               accepts_again_s_after_dovecot_start=f"{started_s + recover_s:.1f}", probe_tries=tries,
               drained_s=f"{drain_s:.1f}", delivered=len(delivered), duplicates=dups,
               outcome_write_failures=node.count_lines("event=outcome_write_failed"),
               accepted_after_drain=len(burst.acked))

    def _watermark_node(self, fs, dovecot, min_free_mib):
        return self.node_on(os.path.join(fs.mountpoint, "spool"),
                            self.lmtp_config(dovecot, {"max_size": "1GiB",
                                                       "high_watermark": 1.0,
                                                       "min_free_disk": f"{min_free_mib}MiB"}))

    def test_min_free_disk_trips_first_then_filler_removed_reopens(self):
        fs = self.small_fs("fs", FS_MIB)
        filler, filler_size = fs.fill("filler", max_bytes=10 << 20)
        dovecot = self.dovecot(["alice@example.com"])
        node = self._watermark_node(fs, dovecot, WM_MIB)
        sender = MailSender(node.port, "alice@example.com", prefix="wm")
        first_refusal = self.fill_until_refused(node, sender)
        free_at_refusal = fs.free_bytes()
        # Admission samples the space every 250 ms and charges what is written in
        # between against the room that was left, so the overshoot is what sessions
        # already past MAIL still commit (free bytes at refusal, printed). When the disk
        # itself fills first, the commit is refused with the same 452 4.3.1 at the end of
        # data. Either way the refusal is 452 4.3.1, and the watermark refuses at MAIL.
        _, stage, reply = sender.refusals[0]
        self.assertIn(stage, ("mail", "end"), sender.refusals[:3])
        self.assertEqual(reply[:9], "452 4.3.1", sender.refusals[:3])
        wait_for(lambda: node.has_line("event=admission state=refusing"), 5,
                 what="the watermark refusing")
        self.assert_spool_holds_exactly(node, dict(sender.acked), "wm")
        os.unlink(filler)
        recover_s, tries = self.time_until_accepted(sender)
        self.assertIsNotNone(recover_s, "not accepting again after the filler was deleted:\n" +
                             node.log_text()[-3000:])
        self.assertIsNone(node.proc.poll())
        report("min_free_disk+filler", fs=fs.kind, min_free_mib=WM_MIB, filler_mib=filler_size >> 20,
               acked_before_refusal=first_refusal - 1, free_bytes_at_refusal=free_at_refusal,
               refusals=len(sender.refusals), accepts_again_after_s=f"{recover_s:.1f}")

    # A tripped watermark clears once the drain frees space: Spool::space() counts the
    # pages the B-trees hold, and LMDB's reusable free pages as free disk.
    def test_min_free_disk_trips_then_drain_empties_spool_and_it_reopens(self):
        fs = self.small_fs("fs", FS_MIB)
        dovecot = self.dovecot(["alice@example.com"])
        node = self._watermark_node(fs, dovecot, WM_MIB)
        sender = MailSender(node.port, "alice@example.com", prefix="wmd")
        first_refusal = self.fill_until_refused(node, sender)
        acked = dict(sender.acked)
        self.assert_spool_holds_exactly(node, acked, "wmd")
        dovecot.start()
        t1 = time.monotonic()
        wait_for(lambda: len(dovecot.messages("alice@example.com")) >= len(acked), 120,
                 interval=0.5, what="backlog delivered")
        wait_for(lambda: node.list_json() == [], 30, what="spool empty")
        drained_s = time.monotonic() - t1
        free_after_drain = fs.free_bytes()
        recover_s, tries = self.time_until_accepted(sender, timeout=15)
        report("min_free_disk+drain", fs=fs.kind, acked_before_refusal=first_refusal - 1,
               drained_s=f"{drained_s:.1f}", free_bytes_after_drain=free_after_drain,
               data_mdb_bytes=os.path.getsize(os.path.join(node.spool_dir, "data.mdb")),
               accepts_again_after_s=recover_s, tries=tries)
        self.assertIsNotNone(recover_s, "the spool is empty (everything delivered) but spoold "
                             "still refuses: free disk is measured with statvfs and LMDB never "
                             "shrinks data.mdb, so its free pages never count as free space")

    # A tripped watermark clears once the drain frees space: Spool::space() counts the
    # pages the B-trees hold, and LMDB's reusable free pages as free disk.
    def test_map_high_watermark_trips_then_drain_empties_spool_and_it_reopens(self):
        # The same with the LMDB map watermark (no small filesystem needed).
        dovecot = self.dovecot(["alice@example.com"])
        node = self.spoold(self.lmtp_config(dovecot, {"max_size": "8MiB",
                                                      "high_watermark": 0.5,
                                                      "min_free_disk": 0}))
        sender = MailSender(node.port, "alice@example.com", prefix="map")
        first_refusal = self.fill_until_refused(node, sender)
        at_mail = [r for _, s, r in sender.refusals if s == "mail"]
        self.assertTrue(at_mail and at_mail[-1].startswith("452 4.3.1"), sender.refusals)
        acked = dict(sender.acked)
        self.assert_spool_holds_exactly(node, acked, "map")
        dovecot.start()
        wait_for(lambda: len(dovecot.messages("alice@example.com")) >= len(acked), 120,
                 interval=0.5, what="backlog delivered")
        wait_for(lambda: node.list_json() == [], 30, what="spool empty")
        recover_s, tries = self.time_until_accepted(sender, timeout=15)
        restarted_s = None
        if recover_s is None:  # does a restart help? (the high-water mark is on disk)
            sender.close()
            node.stop()
            node.start()
            sender.port = node.port
            restarted_s, _ = self.time_until_accepted(sender, timeout=5)
        report("high_watermark+drain", acked_before_refusal=first_refusal - 1,
               data_mdb_bytes=os.path.getsize(os.path.join(node.spool_dir, "data.mdb")),
               accepts_again_after_s=recover_s, tries=tries,
               accepts_after_restart_s=restarted_s)
        self.assertIsNotNone(recover_s, "the spool is empty but spoold still refuses: the "
                             "map watermark compares LMDB's last page (the file's high-water "
                             "mark, never lowered) with max_size, not the pages in use")

    def test_full_maildir_defers_never_fails(self):
        fs = self.small_fs("mailfs", 2)
        root = os.path.join(fs.mountpoint, "mail")
        os.makedirs(root)
        filler, _ = fs.fill("filler")
        self.assertLess(fs.free_bytes(), 64 * 1024)
        node = self.spoold({
            "mailstores": [{"name": "default", "kind": "maildir", "maildir_root": root}],
            "drain": {"breaker_min_backoff": "200ms", "breaker_max_backoff": "1s",
                      "breaker_failures": 2, "retry_min": "1s", "retry_max": "2s"},
        })
        sender = MailSender(node.port, "alice@example.com", prefix="md")
        for _ in range(5):
            sender.send(8 * 1024)
        self.assertEqual(len(sender.acked), 5, sender.refusals)

        # A full Maildir is trouble of the whole mailstore: the breaker opens and the
        # recipients wait (queued, or deferred) with the 452 as their last response.
        waiting = ("queued", "deferred")

        def all_deferred_452():
            msgs = node.list_json()
            rcpts = [r for m in msgs for r in m["recipients"]]
            # The breaker opens after `breaker_failures` store-wide failures, which may all
            # be the first message's (the drain can try it before the next one is accepted),
            # and its probe never succeeds while the disk is full: later messages may not
            # have been tried at all.
            return (len(msgs) == 5 and all(r["state"] in waiting for r in rcpts) and
                    sum(r["last_response"].startswith("452 4.3.1") for r in rcpts) >= 1 and
                    all(r["last_response"] == "" or r["last_response"].startswith("452")
                        for r in rcpts) and rcpts)
        rcpts = wait_for(all_deferred_452, 30, interval=0.25, what="recipients deferred with 452")
        # Several probe rounds while still full (each writes a block, and fails).
        failed_probe = "event=probe mailstore=default ok=false"
        probes_before = node.count_lines(failed_probe)
        wait_for(lambda: node.count_lines(failed_probe) >= probes_before + PROBE_ROUNDS, 30,
                 interval=0.1, what=f"{PROBE_ROUNDS} more probes of the full Maildir")
        msgs = node.list_json()
        self.assertEqual(len(msgs), 5, "no DSN may be generated, nothing may leave")
        states = sorted({r["state"] for m in msgs for r in m["recipients"]})
        self.assertNotIn("failed", states)
        self.assertTrue(set(states) <= set(waiting), msgs)
        attempts = max(r["attempts"] for m in msgs for r in m["recipients"])
        # Local trouble never reaches the sender either: SMTP still says 250.
        _, reply = sender.send(1024)
        self.assertTrue(reply.startswith("250"), reply)
        breaker_opened = node.has_line("to=open")
        self.assertTrue(breaker_opened, "storage that fails every mailbox is the store's trouble")
        # The probe writes a block, so a full Maildir fails it: the breaker stays open
        # instead of half-opening for a delivery that cannot be written.
        probes_ok_while_full = node.count_lines("event=probe mailstore=default ok=true")
        self.assertEqual(probes_ok_while_full, 0)
        os.unlink(filler)
        t1 = time.monotonic()
        node.spoolctl("flush", "--yes")
        newdir = os.path.join(root, "example.com", "alice", "new")
        wait_for(lambda: os.path.isdir(newdir) and len(os.listdir(newdir)) == 6, 60,
                 interval=0.25, what="delivered after space came back")
        wait_for(lambda: node.list_json() == [], 30, what="spool empty")
        recover_s = time.monotonic() - t1
        report("full-maildir", fs=fs.kind, waiting_rcpts=len(rcpts), states=states,
               max_attempts=attempts, write_failures=node.count_lines("maildir_write_failed"),
               probes_ok_while_full=probes_ok_while_full,
               last_response=repr(rcpts[0]["last_response"]), breaker_opened=breaker_opened,
               delivered_after_s=f"{recover_s:.1f}")

    def test_dovecot_over_quota_452_defers_never_fails(self):
        dovecot = self.dovecot(["alice@example.com", "full@example.com"],
                               quota_full=["full@example.com"]).start()
        node = self.spoold(self.lmtp_config(dovecot, {}))
        sender = MailSender(node.port, "full@example.com", prefix="quota")
        for _ in range(3):
            sender.send(4 * 1024)
        both = MailSender(node.port, "alice@example.com", prefix="quota-alice")
        both.send(2 * 1024)
        self.assertEqual((len(sender.acked), len(both.acked)), (3, 1))

        def full_deferred():
            msgs = node.list_json()
            rcpts = [r for m in msgs for r in m["recipients"] if r["address"] == "full@example.com"]
            return (len(rcpts) == 3 and all(r["state"] == "deferred" and
                                            r["last_response"].startswith("452") for r in rcpts)
                    and rcpts)
        rcpts = wait_for(full_deferred, 30, interval=0.25, what="over-quota recipients deferred")
        wait_for(lambda: len(dovecot.messages("alice@example.com")) == 1, 30, what="alice delivered")
        # Retries at 1-2 s: wait until each over-quota recipient was tried twice more
        # (or something changed that the checks below will name).
        def attempts_of_full():
            return {m["id"]: r["attempts"] for m in node.list_json() for r in m["recipients"]
                    if r["address"] == "full@example.com"}
        before = attempts_of_full()
        wait_for(lambda: (now := attempts_of_full()).keys() != before.keys() or
                 all(now[i] >= before[i] + 2 for i in before), 30, interval=0.25,
                 what="two more retries of each over-quota recipient")
        msgs = node.list_json()
        self.assertEqual(len(msgs), 3, msgs)
        self.assertEqual({r["state"] for m in msgs for r in m["recipients"]}, {"deferred"}, msgs)
        self.assertFalse(any(m["sender"] == "" or "MAILER-DAEMON" in m["sender"] for m in msgs))
        attempts = max(r["attempts"] for m in msgs for r in m["recipients"])
        self.assertEqual(dovecot.messages("full@example.com"), [])
        # Quota lifted: Dovecot restarted without the rule and without the maildirsize
        # file (Maildir++ quota falls back to the limit recorded there), then a flush.
        dovecot.stop()
        dovecot.quota_full = set()
        size_file = os.path.join(dovecot.dir, "mail", "example.com", "full", "maildirsize")
        if os.path.exists(size_file):
            os.unlink(size_file)
        dovecot.start()
        t1 = time.monotonic()
        node.spoolctl("flush", "--yes")
        wait_for(lambda: len(dovecot.messages("full@example.com")) == 3, 60, interval=0.25,
                 what="delivered after the quota was lifted")
        wait_for(lambda: node.list_json() == [], 30, what="spool empty")
        report("dovecot-quota", deferred=len(rcpts), max_attempts=attempts,
               last_response=repr(rcpts[0]["last_response"]),
               delivered_after_quota_lifted_s=f"{time.monotonic() - t1:.1f}")


if __name__ == "__main__":
    unittest.main(verbosity=2)
