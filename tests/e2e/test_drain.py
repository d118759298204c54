"""Drain end to end: spoold delivers into a real Dovecot over LMTP, survives Dovecot
being stopped and frozen, and drains the backlog urgent-first, each message once."""
import os
import re
import signal
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Dovecot, SpooldTestCase, free_port, swaks, wait_for  # noqa: E402

USERS = ["alice@example.com", "bob@example.com", "carol@example.net", "full@example.com"]
FROZEN_PROBE = re.compile(r'event=probe mailstore="?dovecot"? ok=false .*timed out')


class DrainEndToEnd(SpooldTestCase):
    def setUp(self):
        super().setUp()
        self.dovecot = Dovecot(os.path.join(self.workdir, "dovecot"), USERS,
                               quota_full=["full@example.com"])
        self._procs.append(self.dovecot)

    def node_for(self, extra=None):
        cfg = {
            "mailstores": [{"name": "dovecot", "kind": "lmtp", "host": "127.0.0.1",
                            "port": self.dovecot.port, "connect_timeout": "1s",
                            "command_timeout": "2s", "data_timeout": "2s"}],
            "drain": {"breaker_min_backoff": "200ms", "breaker_max_backoff": "1s",
                      "breaker_failures": 2, "retry_min": "1s", "retry_max": "2s",
                      "initial_concurrency": 2, "max_concurrency": 8},
            "rules": [{"class": "urgent", "headers": [{"name": "Priority", "regex": "^\\s*urgent"}]},
                      {"class": "bulk", "headers": [{"name": "Precedence",
                                                     "regex": "^\\s*(bulk|list|junk)"}]}],
        }
        if extra:
            for k, v in extra.items():
                if isinstance(v, dict) and isinstance(cfg.get(k), dict):
                    cfg[k] = {**cfg[k], **v}
                else:
                    cfg[k] = v
        return self.spoold(cfg)

    def send(self, node, to, subject, headers=(), body=None):
        args = ["--from", "sender@remote.test", "--to", to, "--header", f"Subject: {subject}"]
        for h in headers:
            args += ["--add-header", h]
        args += ["--body", body or f"body of {subject}\n"]
        rc, out = swaks(node.port, *args)
        self.assertEqual(rc, 0, out)

    def test_accepted_mail_lands_in_dovecot_once_with_intact_body(self):
        self.dovecot.start()
        node = self.node_for()
        body = "".join(f"line {i} {'x' * 60}\n" for i in range(300)) + ".leading dot\n"
        for i in range(5):
            self.send(node, "alice@example.com,bob@example.com", f"m{i}", body=body)
        wait_for(lambda: len(self.dovecot.messages("alice@example.com")) == 5 and
                 len(self.dovecot.messages("bob@example.com")) == 5, 60, what="delivery")
        wait_for(lambda: node.list_json() == [], 30, what="spool empty")
        for user in ("alice@example.com", "bob@example.com"):
            subjects = sorted(self.dovecot.header(m, "Subject") for m in self.dovecot.messages(user))
            self.assertEqual(subjects, [f"m{i}" for i in range(5)])
            for m in self.dovecot.messages(user):
                text = open(m, encoding="utf-8", errors="replace").read().replace("\r\n", "\n")
                self.assertIn(body.rstrip("\n"), text)

    def test_per_recipient_results_in_one_message(self):
        self.dovecot.start()
        # A long retry so the over-quota recipient is still deferred when we look.
        node = self.node_for({"drain": {"retry_min": "60s", "retry_max": "120s"}})
        self.send(node, "alice@example.com,full@example.com,ghost@example.com", "mixed",
                  body="x" * 4000)
        wait_for(lambda: len(self.dovecot.messages("alice@example.com")) == 1, 30, what="good rcpt")

        def states():
            # The DSN for the unknown recipient (from the null sender) waits for the
            # smarthost, which this test does not run.
            msgs = [m for m in node.list_json() if m["sender"] != ""]
            if len(msgs) != 1:
                return None
            return {r["address"]: r for r in msgs[0]["recipients"]}

        st = wait_for(lambda: (s := states()) and s["ghost@example.com"]["state"] == "failed" and s, 30,
                      what="unknown recipient failed")
        self.assertEqual(st["alice@example.com"]["state"], "delivered")
        self.assertEqual(st["full@example.com"]["state"], "deferred")
        self.assertTrue(st["full@example.com"]["last_response"].startswith("452"), st)
        self.assertTrue(st["ghost@example.com"]["last_response"].startswith("550"), st)
        self.assertEqual(self.dovecot.messages("full@example.com"), [])
        dsns = [m for m in node.list_json() if m["sender"] == ""]
        self.assertEqual(len(dsns), 1, "one DSN for the unknown recipient")
        self.assertEqual([r["address"] for r in dsns[0]["recipients"]], ["sender@remote.test"])
        dsn = node.spoolctl("show", dsns[0]["id"], "--body").stdout
        self.assertIn("multipart/report", dsn)
        self.assertIn("ghost@example.com", dsn)
        self.assertNotIn("full@example.com", dsn.split("Content-Type: text/rfc822-headers")[0]
                         .split("message/delivery-status")[-1])

    def test_domains_route_to_their_mailstore_and_one_outage_does_not_stop_the_other(self):
        # example.com lives on Dovecot (down at first); example.net in a local Maildir,
        # the default mailstore. A message for both is delivered to each store on its
        # own, once; pausing one mailstore stops only its deliveries.
        maildir = os.path.join(self.workdir, "node", "mail")
        node = self.node_for({"mailstores": [
            {"name": "dovecot", "kind": "lmtp", "host": "127.0.0.1", "port": self.dovecot.port,
             "connect_timeout": "1s", "command_timeout": "2s", "data_timeout": "2s",
             "domains": ["example.com"]},
            {"name": "local", "kind": "maildir", "maildir_root": maildir},
        ]})
        self.send(node, "alice@example.com,carol@example.net", "both")
        self.send(node, "carol@example.net", "net only")
        wait_for(lambda: len(node.maildir_files("carol@example.net")) == 2, 30,
                 what="example.net delivered while Dovecot is down")
        wait_for(lambda: node.has_line("to=open"), 30, what="Dovecot's breaker open")
        # A Maildir file appears before its outcome commits: wait for the commit of both.
        def carol_committed():
            left = node.list_json()
            return len(left) == 1 and any(r["address"] == "carol@example.net" and r["state"] == "delivered"
                                          for r in left[0]["recipients"])
        wait_for(carol_committed, 30, what="example.net outcomes committed")
        left = node.list_json()
        self.assertEqual(len(left), 1, left)
        states = {r["address"]: r["state"] for r in left[0]["recipients"]}
        self.assertEqual(states, {"alice@example.com": "queued", "carol@example.net": "delivered"})
        self.assertEqual(self.dovecot.messages("carol@example.net"), [])

        node.spoolctl("pause", "--mailstore", "local")
        wait_for(lambda: node.has_line("paused=true by=spool"), 10, what="the drain sees the pause")
        self.dovecot.start()
        self.send(node, "carol@example.net", "while local is paused")
        self.send(node, "bob@example.com,carol@example.net", "to both meanwhile")

        def to_bob_and_carol():
            """Recipient states of "to both meanwhile" (the one for Bob and Carol)."""
            for m in node.list_json():
                states = {r["address"]: r["state"] for r in m["recipients"]}
                if set(states) == {"bob@example.com", "carol@example.net"}:
                    return states
            return {}
        # The drain recorded Bob's delivery of the message for both stores: in the same
        # pick, and the same commit, Carol's copy went nowhere, her mailstore is paused.
        wait_for(lambda: to_bob_and_carol().get("bob@example.com") == "delivered", 60,
                 interval=0.25, what="Bob's copy delivered after recovery")
        self.assertEqual(to_bob_and_carol(),
                         {"bob@example.com": "delivered", "carol@example.net": "queued"})
        wait_for(lambda: len(self.dovecot.messages("alice@example.com")) == 1, 60,
                 what="example.com delivered after recovery")
        self.assertEqual(len(self.dovecot.messages("bob@example.com")), 1)
        self.assertEqual(len(node.maildir_files("carol@example.net")), 2,
                         "a paused mailstore got a delivery")
        node.spoolctl("resume", "--mailstore", "local")
        wait_for(lambda: node.list_json() == [], 30, what="spool empty after resume")
        self.assertEqual(len(node.maildir_files("carol@example.net")), 4)
        self.assertEqual(self.dovecot.messages("carol@example.net"), [])
        subjects = sorted(self.dovecot.header(m, "Subject") for m in self.dovecot.messages("alice@example.com"))
        self.assertEqual(subjects, ["both"])

    def test_outage_then_recovery_delivers_everything_once_urgent_first(self):
        node = self.node_for()  # Dovecot is down: nothing listens on its port yet
        for i in range(60):
            self.send(node, "alice@example.com", f"bulk{i}", headers=["Precedence: bulk"])
        for i in range(5):
            self.send(node, "bob@example.com", f"urgent{i}", headers=["Priority: urgent"])
        wait_for(lambda: node.has_line("to=open"), 30, what="breaker open")
        self.assertEqual(len(node.list_json()), 65)
        self.assertEqual(len(node.list_json("--class", "urgent")), 5)
        self.assertEqual(len(node.list_json("--class", "bulk")), 60)
        # Frozen store: it accepts connections but never answers; deliveries time out.
        self.dovecot.start()
        self.dovecot.freeze()
        # The drain meets the frozen store: two of its probes (connect, then LHLO) time out.
        wait_for(lambda: sum(1 for l in node.lines() if FROZEN_PROBE.search(l)) >= 2, 60,
                 what="probes of the frozen store timed out")
        self.assertEqual(self.dovecot.messages("alice@example.com"), [])
        self.dovecot.thaw()
        wait_for(lambda: len(self.dovecot.messages("alice@example.com")) == 60 and
                 len(self.dovecot.messages("bob@example.com")) == 5, 120, what="backlog drained")
        wait_for(lambda: node.list_json() == [], 30, what="spool empty")
        order = self.dovecot.delivery_order()
        urgent_positions = [i for i, s in enumerate(order) if s.startswith("urgent")]
        bulk_total = sum(1 for s in order if s.startswith("bulk"))
        bulk_before_last_urgent = sum(1 for s in order[:max(urgent_positions) + 1]
                                      if s.startswith("bulk"))
        self.assertLess(bulk_before_last_urgent, bulk_total / 2, order)
        self.assertEqual(len(order), len(set(order)), "each message exactly once")


if __name__ == "__main__":
    unittest.main(verbosity=2)
