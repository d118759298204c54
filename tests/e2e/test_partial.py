"""The store comes back in pieces. A fake LMTP store answers 451 4.3.0 at RCPT for the users
of a dead shard (30% of them) and takes everyone else's mail. spoold drains the healthy users
with its breaker closed, parks the dead shard's mail behind one probe at a time (no attempt
counted), and when the shard comes back every message arrives exactly once, with no DSN."""
import os
import re
import smtplib
import sys
import unittest
from email.message import EmailMessage

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fake_lmtp import FakeLmtp  # noqa: E402
from harness import SpooldTestCase, wait_for  # noqa: E402

USERS = [f"user{i}@example.com" for i in range(20)]
DEAD = USERS[:6]  # 30%
PER_USER = 5
MAX_PER_RECIPIENT = 2
RETRY_MIN_S = 1
BREAKER_OPENED = re.compile(r"event=breaker .*to=open")
GROUP_PROBE_FAILED = "event=mailbox_group_probe ok=false"


class PartialOutage(SpooldTestCase):
    def test_dead_shard_waits_behind_a_probe_while_the_rest_drains(self):
        store = FakeLmtp(service_time=0.005)
        self.addCleanup(store.kill)
        store.set_dead(DEAD)
        node = self.spoold({
            "mailstores": [{"name": "fake", "kind": "lmtp", "host": "127.0.0.1",
                            "port": store.port, "connect_timeout": "1s",
                            "command_timeout": "5s", "data_timeout": "5s"}],
            "drain": {"breaker_failures": 3, "breaker_min_backoff": "200ms",
                      "breaker_max_backoff": "1s", "retry_min": f"{RETRY_MIN_S}s",
                      "retry_max": f"{4 * RETRY_MIN_S}s", "initial_concurrency": 4,
                      "max_concurrency": 8, "max_per_recipient": MAX_PER_RECIPIENT},
        })
        sent = {}
        with smtplib.SMTP("127.0.0.1", node.port, timeout=30) as s:
            for n in range(PER_USER):
                for user in USERS:
                    msg = EmailMessage()
                    msg["From"] = "sender@remote.test"
                    msg["To"] = user
                    msg["Subject"] = f"{user.split('@')[0]}-{n}"
                    msg.set_content(f"message {n} for {user}\n")
                    s.send_message(msg)
                    sent[msg["Subject"]] = user

        healthy = {subj for subj, user in sent.items() if user not in DEAD}
        wait_for(lambda: {subj for _, subj in store.stored_pairs()} >= healthy, 60,
                 what="every healthy user's mail stored while the shard is down")
        wait_for(lambda: len(node.list_json()) == len(sent) - len(healthy), 30,
                 what="only the dead shard's mail left in the spool")
        for row in node.list_json():
            self.assertIn(row["recipients"][0]["address"], DEAD)
            # deferred, or queued for a moment while it is the group's probe
            self.assertIn(row["recipients"][0]["state"], ("deferred", "queued"))
            self.assertEqual(row["recipients"][0]["attempts"], 0, "no attempt counted")
        self.assertFalse(node.find_line(BREAKER_OPENED.pattern), "the breaker stayed closed")
        self.assertTrue(node.has_line("event=mailbox_group_started"))

        # While the shard stays down the group is retried one probe at a time: a dead
        # user's mail reaches the store at most as often as it was in flight at once before
        # its group knew it (max_per_recipient), plus one try per probe.
        wait_for(lambda: node.count_lines(GROUP_PROBE_FAILED) >= 2, 30 * RETRY_MIN_S,
                 what="two failed probes of the dead shard's group")
        store.set_dead([])
        refused = store.refused_count()  # final: nobody is refused from now on

        # The shard is back: the next probe is answered and releases the rest.
        wait_for(lambda: len(store.stored_pairs()) >= len(sent), 60,
                 what="the dead shard's mail delivered once it came back")
        wait_for(lambda: node.list_json() == [], 30, what="spool empty")
        pairs = store.stored_pairs()
        self.assertEqual(sorted(subj for _, subj in pairs), sorted(sent), "each message once")
        for rcpt, subj in pairs:
            self.assertEqual(rcpt, sent[subj])
        self.assertFalse(node.find_line(BREAKER_OPENED.pattern), "the breaker stayed closed")
        self.assertFalse(node.has_line("event=dsn "), "no DSN before retention")
        # Every refusal is logged by now (the spool is empty, so every result is in).
        probes = node.count_lines(GROUP_PROBE_FAILED)
        self.assertLessEqual(refused, len(DEAD) * MAX_PER_RECIPIENT + probes)
        self.assertLess(refused, len(DEAD) * PER_USER)


if __name__ == "__main__":
    unittest.main()
