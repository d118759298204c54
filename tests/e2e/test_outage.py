"""The week-long outage, compressed. A real sending MTA (Postfix, with a short
maximal_queue_lifetime standing for its 5 days) relays a mixed stream of urgent and bulk
mail to spoold while spoold's mailstore (Dovecot) is down for several times that
lifetime (standing for six days). Then Dovecot comes back.

Pass: Postfix generated no bounce, every message is in its Maildir exactly once, and
urgent mail arrived first (every urgent message before half of the bulk)."""
import os
import smtplib
import subprocess
import sys
import time
import unittest
from email.message import EmailMessage

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import SOURCE_DIR, Dovecot, SpooldTestCase, free_port, wait_for  # noqa: E402

POSTFIX = os.path.join(SOURCE_DIR, "tests", "support", "postfix-instance.sh")
LIFETIME_S = int(os.environ.get("SPOOLD_OUTAGE_LIFETIME", "10"))
OUTAGE_S = LIFETIME_S * 3
BULK = 200
URGENT = 10


class WeekLongOutage(SpooldTestCase):
    def test_postfix_never_bounces_and_urgent_mail_drains_first(self):
        users = ["alice@example.com", "bob@example.com"]
        dovecot = Dovecot(os.path.join(self.workdir, "dovecot"), users)
        self._procs.append(dovecot)
        node = self.spoold({
            "mailstores": [{"name": "dovecot", "kind": "lmtp", "host": "127.0.0.1",
                            "port": dovecot.port, "connect_timeout": "1s",
                            "command_timeout": "5s", "data_timeout": "5s"}],
            "drain": {"breaker_min_backoff": "500ms", "breaker_max_backoff": "2s",
                      "initial_concurrency": 2, "max_concurrency": 8},
            "rules": [{"class": "urgent", "headers": [{"name": "Priority", "regex": "^\\s*urgent"}]},
                      {"class": "bulk", "headers": [{"name": "Precedence", "regex": "bulk"}]}],
        })
        pfx_dir = os.path.join(self.workdir, "postfix")
        pfx_port = free_port()
        env = dict(os.environ, POSTFIX_LIFETIME=f"{LIFETIME_S}s")
        subprocess.run([POSTFIX, "start", pfx_dir, str(pfx_port), "relay", f"127.0.0.1:{node.port}"],
                       check=True, timeout=120, env=env, capture_output=True)
        try:
            started = time.monotonic()
            sent = []
            with smtplib.SMTP("127.0.0.1", pfx_port, timeout=30) as s:
                for i in range(BULK + URGENT):
                    urgent = i % ((BULK + URGENT) // URGENT) == (BULK + URGENT) // URGENT - 1
                    msg = EmailMessage()
                    kind = "urgent" if urgent else "bulk"
                    msg["From"] = "sender@remote.test"
                    msg["To"] = users[i % 2]
                    msg["Subject"] = f"{kind}{i}"
                    msg["Message-ID"] = f"<outage-{i}@remote.test>"
                    if urgent:
                        msg["Priority"] = "urgent"
                    else:
                        msg["Precedence"] = "bulk"
                    msg.set_content(f"{kind} message {i}\n" + "z" * 2000)
                    s.send_message(msg)
                    sent.append(msg["Subject"])
            # The outage: several of Postfix's queue lifetimes with the store down.
            wait_for(lambda: len(node.list_json()) == len(sent), 60, interval=0.5,
                     what="spoold holds everything Postfix relayed")
            remaining = OUTAGE_S - (time.monotonic() - started)
            if remaining > 0:
                time.sleep(remaining)
            self.assertEqual(len(node.list_json()), len(sent), "nothing lost or delivered while down")
            dovecot.start()
            wait_for(lambda: sum(len(dovecot.messages(u)) for u in users) >= len(sent), 180,
                     interval=0.5, what="backlog delivered")
            # Empty spool: every delivery's outcome is committed, and Dovecot stored each
            # message before its 250, so a duplicate would be in its Maildir by now.
            wait_for(lambda: node.list_json() == [], 60, what="spool empty")
            order = dovecot.delivery_order()
            self.assertEqual(sorted(order), sorted(sent), "every message exactly once")
            urgent_pos = [i for i, s in enumerate(order) if s.startswith("urgent")]
            bulk_before = sum(1 for s in order[:max(urgent_pos) + 1] if s.startswith("bulk"))
            self.assertLess(bulk_before, BULK / 2, order)
            queue = subprocess.run(["postqueue", "-c", os.path.join(pfx_dir, "etc"), "-p"],
                                   capture_output=True, text=True, timeout=60).stdout
            self.assertIn("Mail queue is empty", queue)
            with open(os.path.join(pfx_dir, "maillog")) as f:
                maillog = f.read()
            self.assertNotIn("status=bounced", maillog)
            self.assertNotIn("sender non-delivery notification", maillog)
            self.assertNotIn("status=expired", maillog)
            print(f"\noutage scenario: {len(sent)} messages ({URGENT} urgent) relayed by Postfix "
                  f"(lifetime {LIFETIME_S}s), store down {OUTAGE_S}s, delivered {len(order)} once each, "
                  f"bulk delivered before the last urgent: {bulk_before}, Postfix bounces: 0",
                  file=sys.stderr)
        finally:
            subprocess.run([POSTFIX, "stop", pfx_dir], timeout=120, capture_output=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
