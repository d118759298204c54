"""Crash consistency: mail is sent continuously over SMTP while spoold is killed with
SIGKILL at random moments, during ingest and during the drain into a real Dovecot, and
restarted each time. Every message that got 250 must end up in Dovecot; duplicates are
allowed only for the documented window (mailstore 2xx before our commit).

Prints: kills survived, messages acknowledged, lost, duplicated."""
import os
import random
import smtplib
import sys
import threading
import time
import unittest
from email.message import EmailMessage

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Dovecot, SpooldTestCase, free_port, wait_for  # noqa: E402

KILLS = int(os.environ.get("SPOOLD_CRASH_KILLS", "30"))
SENDERS = 4
# Deliveries in flight to the one mailstore (max_concurrency); each kill can duplicate at
# most twice these: the ones in conversation and as many delivered whose outcome waits for
# its commit (the drain frees a delivery's slot when the store has answered).
MAX_IN_FLIGHT = 8


class CrashConsistency(SpooldTestCase):
    def test_sigkill_during_ingest_and_drain_loses_nothing(self):
        rng = random.Random(int(os.environ.get("SPOOLD_CRASH_SEED", str(int(time.time())))))
        users = [f"user{i}@example.com" for i in range(4)]
        dovecot = Dovecot(os.path.join(self.workdir, "dovecot"), users).start()
        self._procs.append(dovecot)
        port = free_port()
        node = self.spoold({
            "listeners": [{"address": "127.0.0.1", "port": port}],
            "mailstores": [{"name": "dovecot", "kind": "lmtp", "host": "127.0.0.1",
                            "port": dovecot.port, "connect_timeout": "1s",
                            "command_timeout": "5s", "data_timeout": "5s"}],
            "drain": {"breaker_min_backoff": "200ms", "breaker_max_backoff": "1s",
                      "retry_min": "1s", "retry_max": "2s", "initial_concurrency": 4,
                      "max_concurrency": MAX_IN_FLIGHT},
        })
        acked = {}
        lock = threading.Lock()
        stop = threading.Event()

        def sender(n):
            seq = 0
            while not stop.is_set():
                try:
                    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
                        while not stop.is_set():
                            seq += 1
                            mid = f"<crash-{n}-{seq}@remote.test>"
                            msg = EmailMessage()
                            msg["From"] = "sender@remote.test"
                            msg["To"] = users[seq % len(users)]
                            msg["Subject"] = f"crash {n} {seq}"
                            msg["Message-ID"] = mid
                            msg.set_content(f"payload {n} {seq}\n" + "y" * rng.randint(10, 20000))
                            s.send_message(msg)  # raises unless the reply was 250
                            with lock:
                                acked[mid] = msg["To"]
                except (OSError, smtplib.SMTPException):
                    # spoold is being killed or restarted: a sender's pause before it
                    # connects again (load pacing; the test waits for nothing here).
                    time.sleep(0.05)

        threads = [threading.Thread(target=sender, args=(i,), daemon=True) for i in range(SENDERS)]
        for t in threads:
            t.start()
        kills = 0
        try:
            for _ in range(KILLS):
                time.sleep(rng.uniform(0.2, 1.2))  # picks the kill's instant; waits for nothing
                node.kill()
                kills += 1
                node.start()
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        wait_for(lambda: node.list_json() == [], 180, interval=0.5, what="spool drained")
        node.stop()
        delivered = {}
        for u in users:
            for m in dovecot.messages(u):
                mid = dovecot.header(m, "Message-ID")
                delivered[mid] = delivered.get(mid, 0) + 1
        lost = [m for m in acked if m not in delivered]
        dups = sum(c - 1 for c in delivered.values() if c > 1)
        unknown = [m for m in delivered if m not in acked]
        print(f"\ncrash test: kills survived {kills}, acknowledged {len(acked)}, "
              f"delivered {len(delivered)}, lost {len(lost)}, duplicated {dups}, "
              f"delivered but never acknowledged {len(unknown)}", file=sys.stderr)
        self.assertGreaterEqual(kills, KILLS)
        self.assertGreater(len(acked), 100)
        self.assertEqual(lost, [], "acknowledged messages lost")
        # Duplicates can only come from a kill between Dovecot's 2xx and our commit: at
        # most the deliveries in flight and the outcomes waiting for their commit at each
        # kill (one message, one recipient each).
        self.assertLessEqual(dups, kills * 2 * MAX_IN_FLIGHT)


if __name__ == "__main__":
    unittest.main(verbosity=2)
