"""spoolctl against a running spoold: pause, hold, release, resume and export act on a
spool the daemon is writing and draining (into a Maildir), and the daemon picks the
changes up. Standard library only; uses the shared harness in tests/e2e."""
import json
import os
import smtplib
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")))
import harness  # noqa: E402
from harness import SpooldTestCase, wait_for  # noqa: E402

USERS = ["alice@example.com", "bob@example.com"]


@unittest.skipUnless(os.access(harness.SPOOLD, os.X_OK) and os.access(harness.SPOOLCTL, os.X_OK),
                     "spoold and spoolctl must be built")
class SpoolctlWhileSpooldRuns(SpooldTestCase):
    def ctl(self, node, *args, check=True):
        # --config, not --spool: class and mailstore names come from the daemon's config.
        r = subprocess.run([harness.SPOOLCTL, "--config", node.config_path, *args],
                           capture_output=True, text=True, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError(f"spoolctl {' '.join(args)} exited {r.returncode}: {r.stderr}")
        return r

    def listing(self, node, *args):
        return [json.loads(l) for l in self.ctl(node, "list", "--json", *args).stdout.splitlines()]

    def send(self, node, to, subject):
        with smtplib.SMTP("127.0.0.1", node.port, timeout=20) as s:
            s.sendmail("sender@remote.test", [to],
                       f"From: sender@remote.test\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nbody {subject}\r\n")

    def delivered(self, node, user):
        return len(node.maildir_files(user))

    def test_pause_hold_release_resume_and_export_on_a_live_spool(self):
        node = self.spoold()
        self.ctl(node, "pause")
        self.assertTrue(json.loads(self.ctl(node, "status", "--json").stdout)["paused"])
        # The drain reads the flag from the spool about once a second and logs when it does.
        wait_for(lambda: node.has_line("event=drain_pause paused=true"), 10, what="drain sees the pause")
        for i in range(4):
            self.send(node, USERS[i % 2], f"live{i}")
        msgs = self.listing(node)
        self.assertEqual(len(msgs), 4)  # 250 means committed: listed at once
        st = json.loads(self.ctl(node, "status", "--json").stdout)
        self.assertEqual(st["messages"], 4)
        self.assertEqual([m["name"] for m in st["mailstores"]], ["default"])

        # The daemon publishes each mailstore's state; status shows each value under its header.
        def mailstore_table():
            lines = self.ctl(node, "status").stdout.splitlines()
            at = next(i for i, l in enumerate(lines) if l.startswith("MAILSTORE"))
            return lines[at].split(), lines[at + 1].split()
        header, row = wait_for(lambda: (t := mailstore_table())[1][1] != "-" and t, 10,
                               what="the daemon's published breaker state")
        self.assertEqual(header, ["MAILSTORE", "BREAKER", "LIMIT", "IN-FLIGHT", "RATE/S", "DRAIN"])
        self.assertEqual(row[0], "default")
        self.assertEqual(row[1], "closed")
        self.assertTrue(row[2].isdigit() and int(row[2]) >= 1, row)
        self.assertEqual(row[3], "0")  # paused: nothing in flight
        float(row[4])
        self.assertEqual(row[5], "paused")
        js = json.loads(self.ctl(node, "status", "--json").stdout)["mailstores"][0]
        self.assertEqual((js["breaker"], js["limit"], js["in_flight"]), ("closed", int(row[2]), 0))

        # Paused: nothing drains (give the drain more than its one-second meta poll).
        with self.assertRaises(AssertionError):
            wait_for(lambda: self.delivered(node, USERS[0]) > 0, 2, what="delivery while paused")

        held = msgs[0]["id"]
        self.ctl(node, "hold", held)
        out_dir = os.path.join(self.workdir, "export")
        self.assertIn("exported 4 messages", self.ctl(node, "export", "--all", "--dir", out_dir).stdout)
        self.ctl(node, "resume")
        wait_for(lambda: [m["id"] for m in self.listing(node)] == [held], 30, what="all but the held one drained")
        self.assertEqual(self.delivered(node, USERS[0]) + self.delivered(node, USERS[1]), 3)
        self.assertIn(": ok", self.ctl(node, "check").stdout)

        self.ctl(node, "release", held)
        wait_for(lambda: self.listing(node) == [], 30, what="released message drained")
        self.assertEqual(self.delivered(node, USERS[0]) + self.delivered(node, USERS[1]), 4)
        self.assertEqual(len(os.listdir(out_dir)), 4)

    def test_a_helpdesk_lists_and_exports_one_users_mail_under_tags_and_aliases(self):
        directory = os.path.join(self.workdir, "recipients")
        with open(directory, "w") as f:
            f.write("alice@example.com\nbob@example.com\nsales@example.com: alice@example.com\n"
                    "orders@example.com: sales@example.com\nalicea@example.com\n")
        node = self.spoold({
            # The mailstore is down: the mail stays, as during an outage.
            "mailstores": [{"name": "down", "kind": "lmtp", "host": "127.0.0.1",
                            "port": harness.free_port(), "connect_timeout": "1s"}],
            "directory": {"file": directory, "poll_interval": "0s", "recipient_delimiter": "+"},
        })
        mine = {"Alice@Example.com": "plain", "alice+news@example.com": "tagged",
                "sales@example.com": "alias", "orders+q3@example.com": "alias of an alias, tagged"}
        for to, subject in mine.items():
            self.send(node, to, subject)
        for to in ("bob@example.com", "alicea@example.com", "bob+alice@example.com"):
            self.send(node, to, "not hers")
        rows = self.listing(node, "--recipient", "alice@EXAMPLE.com")
        self.assertEqual(len(rows), 4, rows)
        self.assertEqual(sorted(r["recipients"][0]["address"] for r in rows), sorted(mine))
        self.assertEqual(len(self.listing(node)), 7)
        mbox = os.path.join(self.workdir, "alice.mbox")
        out = self.ctl(node, "export", "--recipient", "alice@example.com", "--mbox", mbox).stdout
        self.assertIn("exported 4 messages", out)
        with open(mbox, encoding="utf-8") as f:
            subjects = sorted(line[len("Subject: "):].strip() for line in f
                              if line.startswith("Subject: "))
        self.assertEqual(subjects, sorted(mine.values()))
        # An alias stands for what it delivers to: orders finds only its own (tagged) mail.
        rows = self.listing(node, "--recipient", "orders@example.com")
        self.assertEqual([r["recipients"][0]["address"] for r in rows], ["orders+q3@example.com"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
