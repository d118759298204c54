"""logging.format: postfix end to end: a real spoold takes mail from swaks, delivers it
into its Maildir store and logs in Postfix's shape; Debian's pflogsumm then reads the log
and must count exactly the messages, recipients and senders the test sent.

Standard library, swaks and pflogsumm. Binaries come from $SPOOLD_BUILD_DIR.
"""
import json
import re
import subprocess
import unittest

from harness import SpooldTestCase, swaks, wait_for

# Messages the test sends: (sender, recipients).
MESSAGES = [
    ("alice@remote.test", ["u1@example.com"]),
    ("bob@remote.test", ["u1@example.com", "u2@example.com"]),
    ("carol@other.test", ["u3@example.net"]),
    ("alice@remote.test", ["u2@example.com", "u3@example.net", "u4@example.com"]),
    ("dave@other.test", ["u4@example.com"]),
]
DELIVERY_TIMEOUT = 60.0


def grand_totals(report):
    """pflogsumm's "Grand Totals" as {label: number}."""
    section = report.split("Grand Totals", 1)[1].split("Per-Hour", 1)[0]
    out = {}
    for m in re.finditer(r"^\s*(\d+)([kmg]?)\s+([a-z][a-z /-]*?)\s*(?:\(.*)?$", section, re.M):
        out[m.group(3)] = int(m.group(1))
    return out


class PostfixLog(SpooldTestCase):
    def test_pflogsumm_counts_what_was_sent_and_delivered(self):
        s = self.spoold({"logging": {"level": "info", "format": "postfix"}})
        for sender, rcpts in MESSAGES:
            rc, out = swaks(s.port, "--from", sender, "--to", ",".join(rcpts),
                            "--body", "postfix log test")
            self.assertEqual(rc, 0, out)
        wanted = sum(len(r) for _, r in MESSAGES)
        wait_for(lambda: sum(len(s.maildir_files(a)) for a in
                             {a for _, r in MESSAGES for a in r}) == wanted,
                 DELIVERY_TIMEOUT, what="every recipient delivered")
        wait_for(lambda: json.loads(s.spoolctl("status", "--json").stdout)["messages"] == 0,
                 DELIVERY_TIMEOUT, what="the spool empty")
        self.assertEqual(s.stop(), 0)

        shape = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z mx\.test "
                           r"spoold/[a-z]+\[\d+\]: ")
        for line in s.lines():
            self.assertRegex(line, shape)
        self.assertEqual(s.count_lines(": removed"), len(MESSAGES))

        r = subprocess.run(["pflogsumm", "--syslog-name=spoold", s.log_path],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        totals = grand_totals(r.stdout)
        self.assertEqual(totals.get("received"), len(MESSAGES), r.stdout)
        self.assertEqual(totals.get("delivered"), wanted, r.stdout)
        self.assertEqual(totals.get("deferred"), 0, r.stdout)
        self.assertEqual(totals.get("bounced"), 0, r.stdout)
        self.assertEqual(totals.get("senders"), len({m for m, _ in MESSAGES}), r.stdout)
        self.assertEqual(totals.get("sending hosts/domains"), 2, r.stdout)
        self.assertEqual(totals.get("recipients"), len({a for _, r in MESSAGES for a in r}),
                         r.stdout)
        self.assertEqual(totals.get("recipient hosts/domains"), 2, r.stdout)


if __name__ == "__main__":
    unittest.main()
