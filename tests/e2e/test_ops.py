"""Operations end to end: /metrics, /status and the status page of the real daemon
(the page checked in headless Chromium, with a screenshot), and a graceful stop on
SIGTERM that loses no acknowledged message."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import SmtpClient, SpooldTestCase, free_port, swaks, wait_for  # noqa: E402

PAGE_TEST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ops", "page_test.py")


def get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return r.status, r.headers.get("Content-Type", ""), r.read().decode()


class OpsEndToEnd(SpooldTestCase):
    def node(self):
        return self.spoold({
            "metrics": {"address": "127.0.0.1", "port": free_port()},
            # The mailstore is down: what is sent stays in the backlog the page shows.
            "mailstores": [{"name": "dovecot", "kind": "lmtp", "host": "127.0.0.1",
                            "port": free_port(), "connect_timeout": "1s"}],
            "drain": {"breaker_min_backoff": "30s", "breaker_max_backoff": "60s"},
            "rules": [{"class": "urgent", "headers": [{"name": "Priority", "regex": "urgent"}]}],
        })

    def test_metrics_status_and_page_show_the_backlog(self):
        node = self.node()
        self.assertIsNotNone(node.metrics_port)
        for i in range(3):
            swaks(node.port, "--from", "s@remote.test", "--to", "alice@example.com",
                  "--add-header", "Priority: urgent")
        for i in range(5):
            swaks(node.port, "--from", "s@remote.test", "--to", "bob@example.com")

        def status():
            return json.loads(get(node.metrics_port, "/status")[2])
        st = wait_for(lambda: (s := status()) and s["total_messages"] == 8 and s, 10,
                      what="status shows 8 messages")
        classes = {c["name"]: c for c in st["classes"]}
        self.assertEqual(classes["urgent"]["ready"] + classes["urgent"]["deferred"], 3)
        self.assertEqual(classes["normal"]["ready"] + classes["normal"]["deferred"], 5)

        code, ctype, text = get(node.metrics_port, "/metrics")
        self.assertEqual(code, 200)
        self.assertIn("text/plain", ctype)
        self.assertIn('spoold_messages_accepted_total{class="urgent"} 3', text)
        self.assertIn('spoold_messages_accepted_total{class="normal"} 5', text)
        self.assertIn("spoold_spool_commit_duration_seconds_bucket", text)
        self.assertRegex(text, r"spoold_smtp_connections_total [1-9]")
        self.assertRegex(text, r'spoold_spool_messages\{class="normal",state="(ready|deferred)"\} [1-5]')
        # Bytes per class and state, as the README promises; the states add up to the class.
        normal = [float(v) for v in re.findall(
            r'spoold_spool_bytes\{class="normal",state="(?:ready|deferred|held)"\} (\S+)', text)]
        self.assertEqual(len(normal), 3, text)
        self.assertEqual(sum(normal), classes["normal"]["bytes"])

        code, ctype, page = get(node.metrics_port, "/")
        self.assertIn("text/html", ctype)
        self.assertNotIn("http://", page.replace("http://www.w3.org", ""))  # self-contained

        if shutil.which("chromium") is None:
            self.skipTest("chromium is not installed (tools/setup installs it)")
        shot = os.path.join(os.environ.get("SPOOLD_ARTIFACTS", self.workdir), "status-page.png")
        r = subprocess.run([sys.executable, PAGE_TEST, f"http://127.0.0.1:{node.metrics_port}/",
                            "--expect", "urgent=3", "--expect", "normal=5", "--min-backlog", "8",
                            "--screenshot", shot], capture_output=True, text=True, timeout=180)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertTrue(os.path.getsize(shot) > 10000)

    def test_sigterm_finishes_the_transaction_in_flight(self):
        node = self.node()
        c = SmtpClient(node.port)
        c.reply()
        c.cmd("EHLO client.test")
        c.cmd("MAIL FROM:<s@remote.test>")
        c.cmd("RCPT TO:<alice@example.com>")
        self.assertTrue(c.cmd("DATA").startswith("354"))
        c.send("Subject: in flight\r\n\r\nstarted before SIGTERM\r\n")
        node.signal(signal.SIGTERM)
        wait_for(lambda: node.has_line("event=signal"), 5, what="signal seen")
        # New connections are refused while the old transaction may finish.
        c.send(".\r\n")
        reply = c.reply()
        self.assertTrue(reply.startswith("250") or reply.startswith("421"), reply)
        c.close()
        node.proc.wait(30)
        self.assertEqual(node.proc.returncode, 0, node.log_text())
        if reply.startswith("250"):
            # Acknowledged: it must be in the spool after the stop.
            msgs = node.list_json()
            self.assertEqual(len(msgs), 1)


    def test_started_as_root_it_drops_to_the_configured_user_after_binding(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to start as root")
        import pwd
        nobody = pwd.getpwnam("nobody")
        node = self.spoold({"user": "nobody"}, start=False)
        for d in (node.spool_dir, node.maildir):
            os.makedirs(d, exist_ok=True)
            os.chown(d, nobody.pw_uid, nobody.pw_gid)
        node.start()
        with open(f"/proc/{node.proc.pid}/status") as f:
            uids = next(l for l in f if l.startswith("Uid:")).split()[1:]
        self.assertEqual(set(uids), {str(nobody.pw_uid)}, "real, effective, saved and fs uid")
        self.assertTrue(node.has_line("event=privileges_dropped"))
        # It still accepts, spools and delivers as that user.
        rc, out = swaks(node.port, "--from", "s@remote.test", "--to", "alice@example.com")
        self.assertEqual(rc, 0, out)
        wait_for(lambda: node.maildir_files("alice@example.com"), 20, what="maildir delivery")


if __name__ == "__main__":
    unittest.main(verbosity=2)
