"""spoold asking a real rspamd (Debian's 3.4, its proxy worker in milter mode, scanning
itself) over a Unix socket: the GTUBE test message is rejected with rspamd's reply, a
clean message is spooled with rspamd's headers, and rspamd's Authentication-Results
carries our authserv-id while a forged one is gone.

rspamd compiles its Hyperscan databases at its first start (tens of seconds on a busy
machine); they are kept in the build directory (rspamd-cache) so later runs start in
seconds. Labelled slow: it runs in the release build only.
"""
import os
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BUILD_DIR, SmtpClient, SpooldTestCase, free_port, wait_for  # noqa: E402

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
# rspamd's first start compiles its regular expressions; this bounds it on a loaded
# 2-core machine and stays well inside the test's CTest timeout (600 s).
RSPAMD_START_TIMEOUT = 300


def rspamd_config(local):
    """Our overrides of Debian's /etc/rspamd: only the proxy worker, in milter mode on a
    Unix socket, scanning itself; logs on the console; no DNS beyond loopback; rspamd's
    headers on every message, local clients included."""
    files = {
        "override.d/worker-proxy.inc": f"""bind_socket = "{local}/milter.sock mode=0600";
milter = yes;
timeout = 120s;
count = 1;
upstream "local" {{
  default = yes;
  self_scan = yes;
}}
""",
        "override.d/worker-normal.inc": "enabled = false;\n",
        "override.d/worker-controller.inc": "enabled = false;\n",
        "override.d/logging.inc": 'type = "console";\nlevel = "warning";\n',
        "local.d/options.inc": 'dns {\n  nameserver = ["127.0.0.1:1"];\n  timeout = 0.1s;\n'
                               '  retransmits = 1;\n}\n',
        "local.d/milter_headers.conf": 'use = ["x-spamd-result", "x-rspamd-queue-id", '
                                       '"authentication-results"];\n'
                                       'skip_local = false;\nskip_authenticated = false;\n',
    }
    for name, text in files.items():
        path = os.path.join(local, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)


class Rspamd(SpooldTestCase):
    def setUp(self):
        super().setUp()
        if shutil.which("rspamd") is None:
            self.fail("rspamd is not installed (tools/setup installs it)")
        local = os.path.join(self.workdir, "rspamd")
        for d in ("run", "log"):
            os.makedirs(os.path.join(local, d))
        cache = os.path.join(BUILD_DIR, "rspamd-cache")
        os.makedirs(cache, exist_ok=True)
        rspamd_config(local)
        self.socket = os.path.join(local, "milter.sock")
        argv = ["rspamd", "-f", "-c", "/etc/rspamd/rspamd.conf",
                "--var", f"LOCAL_CONFDIR={local}", "--var", f"DBDIR={cache}",
                "--var", f"RUNDIR={local}/run", "--var", f"LOGDIR={local}/log"]
        if os.geteuid() == 0:
            argv += ["-u", "root", "-g", "root", "-i"]
        self.log = open(os.path.join(local, "rspamd.log"), "w")
        self.rspamd = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
        self._procs.append(self)  # the harness's teardown calls kill(), before the rmtree
        wait_for(lambda: os.path.exists(self.socket) or self.rspamd.poll() is not None,
                 RSPAMD_START_TIMEOUT, interval=0.2, what="rspamd's milter socket")
        self.assertIsNone(self.rspamd.poll(), "rspamd exited at start")
        with open(os.path.join(self.workdir, "recipients"), "w") as f:
            f.write("alice@example.com\n")
        self.node = self.spoold({
            "mailstores": [{"name": "dovecot", "kind": "lmtp", "host": "127.0.0.1",
                            "port": free_port(), "connect_timeout": "1s"}],
            "drain": {"breaker_min_backoff": "30s", "breaker_max_backoff": "60s"},
            "directory": {"file": os.path.join(self.workdir, "recipients"), "format": "list"},
            # rspamd's worker may still be starting when its socket appears.
            "milters": [{"name": "rspamd", "address": "unix:" + self.socket,
                         "connect_timeout": "60s", "command_timeout": "60s",
                         "content_timeout": "120s"}],
        })

    def kill(self):
        # rspamd's main process stops its workers on SIGTERM; SIGKILL only if it hangs.
        if self.rspamd.poll() is None:
            self.rspamd.terminate()
            try:
                self.rspamd.wait(30)
            except subprocess.TimeoutExpired:
                self.rspamd.kill()
                self.rspamd.wait(10)
        self.log.close()

    def send(self, body, extra_headers=""):
        c = SmtpClient(self.node.port, timeout=150)
        try:
            c.reply()
            c.cmd("EHLO client.test")
            c.cmd("MAIL FROM:<sender@remote.test>")
            c.cmd("RCPT TO:<alice@example.com>")
            self.assertTrue(c.cmd("DATA").startswith("354"))
            c.send("From: <sender@remote.test>\r\nTo: <alice@example.com>\r\nSubject: test\r\n"
                   f"Message-ID: <{os.urandom(6).hex()}@remote.test>\r\n{extra_headers}\r\n"
                   f"{body}\r\n.\r\n")
            return c.reply()
        finally:
            c.close()

    def test_gtube_is_rejected_and_a_clean_message_gets_rspamds_headers(self):
        reply = self.send(GTUBE)
        self.assertTrue(reply.startswith("554 5.7.1 Gtube pattern"), reply)
        self.assertEqual(self.node.list_json(), [])

        reply = self.send("Hello Alice, a clean message.",
                          "Authentication-Results: mx.test; spf=pass smtp.mailfrom=forged\r\n")
        self.assertTrue(reply.startswith("250 2.0.0"), reply)
        msgs = self.node.list_json()
        self.assertEqual(len(msgs), 1)
        body = self.node.spoolctl("show", msgs[0]["id"], "--body").stdout
        self.assertIn("X-Spamd-Result: default: False", body)
        self.assertIn(f"X-Rspamd-Queue-Id: {msgs[0]['id']}", body)  # the macro i
        self.assertIn("Authentication-Results: mx.test;", body)
        self.assertNotIn("smtp.mailfrom=forged", body)


if __name__ == "__main__":
    unittest.main()
