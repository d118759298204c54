"""The front door end to end: the PROXY protocol behind a real HAProxy (Debian's), and mail
filters over the milter protocol against a real libmilter filter (Debian's
python3-milter, tests/support/test_milter.py), with Authentication-Results.

The mailstore is an LMTP address where nothing listens (the outage case), so every
accepted message stays in the spool, where the tests read it with spoolctl.
Loopback addresses tell the parties apart: the mail client connects from 127.0.0.2,
HAProxy connects to spoold from 127.0.0.3 (the trusted proxy), anything else from
127.0.0.1.
"""
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (SOURCE_DIR, SmtpClient, SpooldTestCase, free_port,  # noqa: E402
                     wait_for)

MILTER_SCRIPT = os.path.join(SOURCE_DIR, "tests", "support", "test_milter.py")
DEBIAN_PYTHON = "/usr/bin/python3"
CLIENT_ADDR = "127.0.0.2"
PROXY_ADDR = "127.0.0.3"
# Bounds for the waits below; each is far above what the step takes on a loaded machine.
START_TIMEOUT = 30
# The filter timeouts the tests configure: a hanging filter costs the test this long.
MILTER_CONTENT_TIMEOUT_S = 2


def outage_mailstore():
    return [{"name": "dovecot", "kind": "lmtp", "host": "127.0.0.1", "port": free_port(),
             "connect_timeout": "1s"}]


def base_config(workdir, extra=None):
    cfg = {
        "mailstores": outage_mailstore(),
        "drain": {"breaker_min_backoff": "30s", "breaker_max_backoff": "60s"},
        "directory": {"file": os.path.join(workdir, "recipients"), "format": "list"},
    }
    cfg.update(extra or {})
    return cfg


class Process:
    """A helper process (HAProxy, the milter) stopped by the test's teardown."""

    def __init__(self, argv):
        self.argv = argv
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, errors="replace")
        self.output = []

    def wait_ready(self, ready):
        """Reads the output until the line saying `ready`; fails when the process exits."""
        def seen():
            line = self.proc.stdout.readline()
            if line:
                self.output.append(line)
            return ready in line or self.proc.poll() is not None
        wait_for(seen, START_TIMEOUT, interval=0, what=f"{self.argv[0]}: {ready}")
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.argv} exited: {''.join(self.output)}"
                                 + self.proc.stdout.read())

    def alive(self):
        return self.proc.poll() is None

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.proc.stdout.close()


def logged(node, pattern):
    """Waits for a log line matching the regular expression `pattern`: spoold may write it
    just after the reply the test has read, and the harness reads the log on a thread."""
    return wait_for(lambda: node.find_line(pattern), START_TIMEOUT, what=f"log line {pattern}")


def connect_from(source, port, timeout=20):
    """An SMTP client whose connection comes from the loopback address `source`."""
    c = SmtpClient.__new__(SmtpClient)
    c.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                      source_address=(source, 0))
    c.buf = b""
    return c


def send_message(c, rcpts, body, sender="s@remote.test", subject="hello", extra_headers=""):
    """EHLO to the end of DATA; returns the reply to the end of data (or the first refusal)."""
    c.reply()
    c.cmd("EHLO client.test")
    reply = c.cmd(f"MAIL FROM:<{sender}>")
    if not reply.startswith("250"):
        return reply
    for r in rcpts:
        reply = c.cmd(f"RCPT TO:<{r}>")
        if not reply.startswith("250"):
            return reply
    reply = c.cmd("DATA")
    if not reply.startswith("354"):
        return reply
    c.send(f"Subject: {subject}\r\n{extra_headers}\r\n{body}\r\n.\r\n")
    return c.reply()


class FrontDoorCase(SpooldTestCase):
    def setUp(self):
        super().setUp()
        with open(os.path.join(self.workdir, "recipients"), "w") as f:
            f.write("alice@example.com\nbob@example.com\nreject-rcpt@example.com\n"
                    "tempfail-rcpt@example.com\n")

    def helper(self, argv, ready=None):
        p = Process(argv)
        self._procs.append(p)  # stopped by the teardown even when it never gets ready
        if ready is not None:
            p.wait_ready(ready)
        return p

    def body_of(self, node, msg_id):
        return node.spoolctl("show", msg_id, "--body").stdout


class ProxyProtocol(FrontDoorCase):
    """spoold with a PROXY listener (trusted: HAProxy's 127.0.0.3) and a plain one."""

    def setUp(self):
        super().setUp()
        if shutil.which("haproxy") is None:
            self.fail("haproxy is not installed (tools/setup installs it)")
        self.node = self.spoold(base_config(self.workdir, {
            "listeners": [
                {"address": "127.0.0.1", "port": 0, "proxy_protocol": True,
                 "trusted_proxies": [PROXY_ADDR + "/32"]},
                {"address": "127.0.0.1", "port": 0},
            ]}))
        ports = [int(l.split("port=")[1].split()[0]) for l in self.node.lines()
                 if "event=listening" in l]
        self.assertEqual(len(ports), 2, self.node.log_text())
        self.proxy_port, self.plain_port = ports
        self.v1_port, self.v2_port = free_port(), free_port()
        cfg = os.path.join(self.workdir, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(f"""global
    maxconn 100
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend v1
    bind 127.0.0.1:{self.v1_port}
    default_backend spoold_v1
frontend v2
    bind 127.0.0.1:{self.v2_port}
    default_backend spoold_v2
backend spoold_v1
    server s 127.0.0.1:{self.proxy_port} send-proxy source {PROXY_ADDR}
backend spoold_v2
    server s 127.0.0.1:{self.proxy_port} send-proxy-v2 source {PROXY_ADDR}
""")
        subprocess.run(["haproxy", "-c", "-q", "-f", cfg], check=True, timeout=30)
        # -db: stay in the foreground, so the process we kill is HAProxy itself.
        self.haproxy = self.helper(["haproxy", "-db", "-f", cfg])
        for port in (self.v1_port, self.v2_port):
            wait_for(lambda p=port: self._listening(p), START_TIMEOUT, what="haproxy listening")

    @staticmethod
    def _listening(port):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    def test_the_client_behind_haproxy_is_the_client_everywhere_v1_and_v2(self):
        for version, port in (("v1", self.v1_port), ("v2", self.v2_port)):
            with self.subTest(version=version):
                c = connect_from(CLIENT_ADDR, port)
                client_port = c.sock.getsockname()[1]
                reply = send_message(c, ["alice@example.com"], f"via haproxy {version}",
                                     subject=version)
                self.assertTrue(reply.startswith("250"), reply)
                c.cmd("QUIT")
                c.close()
                msg = [m for m in self.node.list_json()
                       if f"via haproxy {version}" in self.body_of(self.node, m["id"])]
                self.assertEqual(len(msg), 1)
                self.assertEqual(msg[0]["client"], CLIENT_ADDR)
                body = self.body_of(self.node, msg[0]["id"])
                self.assertIn(f"([{CLIENT_ADDR}])", body)
                self.assertNotIn(PROXY_ADDR, body)
                logged(self.node, re.escape(f"event=connect client={CLIENT_ADDR} "
                                            f"proxy={PROXY_ADDR}"))
                logged(self.node, rf"event=accepted id={msg[0]['id']} client={CLIENT_ADDR} ")
                self.assertGreater(client_port, 0)

    def test_a_proxy_listener_refuses_peers_outside_trusted_proxies(self):
        # Even with a well-formed header: 127.0.0.1 is not a trusted proxy.
        c = connect_from("127.0.0.1", self.proxy_port)
        c.send(b"PROXY TCP4 192.0.2.1 127.0.0.1 4000 25\r\n")
        reply = c.reply()
        self.assertTrue(reply.startswith("554 5.7.1"), reply)
        self.assertTrue(c.closed())
        c.close()
        logged(self.node, "event=reject client=127.0.0.1 reason=proxy-untrusted")

    def test_a_trusted_proxy_connection_without_a_header_is_closed(self):
        c = connect_from(PROXY_ADDR, self.proxy_port)
        c.send(b"EHLO client.test\r\n")
        self.assertTrue(c.closed(timeout=10), "closed without a reply")
        self.assertEqual(c.buf, b"", "no greeting before the PROXY header")
        c.close()
        wait_for(lambda: self.node.has_line(
            f"event=proxy_header_refused proxy={PROXY_ADDR}"), 10, what="the refusal's log line")

    def test_a_plain_listener_refuses_a_proxy_header_v1_and_v2(self):
        v2 = (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", 12)
              + socket.inet_aton("192.0.2.1") + socket.inet_aton("127.0.0.1")
              + struct.pack("!HH", 4000, 25))
        for header in (b"PROXY TCP4 192.0.2.1 127.0.0.1 4000 25\r\n", v2):
            with self.subTest(header=header[:5]):
                c = connect_from(PROXY_ADDR, self.plain_port)
                self.assertTrue(c.reply().startswith("220"))
                c.send(header)
                reply = c.reply()  # before EHLO: no enhanced code
                self.assertEqual(reply, "554 PROXY protocol not accepted from your address")
                self.assertTrue(c.closed())
                c.close()
        self.assertEqual(self.node.list_json(), [])


class Milters(FrontDoorCase):
    """spoold asking the scripted libmilter filter over a Unix socket."""

    def start_milter(self, name="test"):
        sock = os.path.join(self.workdir, f"{name}.sock")
        return self.helper([DEBIAN_PYTHON, MILTER_SCRIPT, "unix:" + sock],
                           ready="ready"), "unix:" + sock

    def node_with(self, milters):
        return self.spoold(base_config(self.workdir, {"milters": milters}))

    def milter_config(self, address, on_failure="tempfail"):
        return {"name": "test", "address": address, "connect_timeout": "5s",
                "command_timeout": "5s", "content_timeout": f"{MILTER_CONTENT_TIMEOUT_S}s",
                "on_failure": on_failure}

    def test_each_milter_action_is_the_smtp_reply_or_a_change_to_the_message(self):
        milter, address = self.start_milter()
        node = self.node_with([self.milter_config(address)])

        def one(rcpts, body, **kw):
            c = SmtpClient(node.port)
            try:
                return send_message(c, rcpts, body, **kw)
            finally:
                c.close()

        # Accepted with the filter's changes: added headers (its own Authentication-Results
        # among them), a changed Subject, the macros it read; a forged Authentication-Results
        # claiming our authserv-id is gone, someone else's stays.
        reply = one(["alice@example.com"], "clean",
                    extra_headers="Authentication-Results: mx.test; spf=pass forged=yes\r\n"
                                  "Authentication-Results: other.example; dkim=pass\r\n")
        self.assertTrue(reply.startswith("250 2.0.0"), reply)
        msgs = node.list_json()
        self.assertEqual(len(msgs), 1)
        body = self.body_of(node, msgs[0]["id"])
        self.assertIn(f"X-Test-Milter: client=<127.0.0.1> id=<{msgs[0]['id']}> "
                      "helo=<client.test>", body)
        self.assertIn("Subject: [milter] hello", body)
        self.assertIn("Authentication-Results: mx.test; test=pass", body)
        self.assertIn("Authentication-Results: other.example; dkim=pass", body)
        self.assertNotIn("forged=yes", body)

        # Refusals: the filter's own replies, its tempfails as 4xx; nothing is stored.
        self.assertTrue(one(["reject-rcpt@example.com"], "x").startswith(
            "550 5.7.1 test milter refuses this recipient"))
        self.assertTrue(one(["tempfail-rcpt@example.com"], "x").startswith("451 4.7.1"))
        self.assertTrue(one(["alice@example.com"], "MILTER-REJECT").startswith(
            "554 5.7.1 test milter rejects this content"))
        self.assertTrue(one(["alice@example.com"], "MILTER-TEMPFAIL").startswith("451 4.7.1"))
        self.assertEqual(len(node.list_json()), 1)

        # Discard: 250 to the client, nothing stored.
        self.assertTrue(one(["alice@example.com"], "MILTER-DISCARD").startswith("250"))
        self.assertEqual(len(node.list_json()), 1)
        logged(node, "event=discarded")

        # Quarantine: stored held with the filter's reason; a release lets it go.
        self.assertTrue(one(["bob@example.com"], "MILTER-QUARANTINE").startswith("250 2.0.0"))
        held = node.list_json("--held")
        self.assertEqual(len(held), 1)
        self.assertTrue(held[0]["held"])
        self.assertEqual(held[0]["hold_reason"], "test: test quarantine")
        self.assertIn("quarantined: test: test quarantine",
                      node.spoolctl("show", held[0]["id"]).stdout)
        node.spoolctl("release", held[0]["id"])
        wait_for(lambda: not node.list_json("--held"), 30, what="the release")
        self.assertTrue(milter.alive())

    def test_a_milter_changes_the_envelope_and_inserts_a_header(self):
        milter, address = self.start_milter()
        node = self.node_with([self.milter_config(address)])
        c = SmtpClient(node.port)
        reply = send_message(c, ["alice@example.com"], "MILTER-ENVELOPE")
        c.close()
        self.assertTrue(reply.startswith("250 2.0.0"), reply)
        msgs = node.list_json()
        self.assertEqual(len(msgs), 1)
        self.assertEqual(msgs[0]["sender"], "changed@remote.test")
        # Added and removed as asked, but our recipient rules hold for a filter's additions:
        # a recipient outside our domains is not relayed to.
        self.assertEqual([r["address"] for r in msgs[0]["recipients"]], ["bob@example.com"])
        logged(node,
               r"event=filter_change_ignored .*recipient not accepted: outsider@elsewhere\.test")
        # Index 1 counts our Received: (index 0), which filters are not shown.
        head = self.body_of(node, msgs[0]["id"]).replace("\r\n", "\n").split("\n\n", 1)[0]
        names = [l.split(":", 1)[0] for l in head.split("\n") if l and l[0] not in " \t"]
        self.assertEqual(names[:3], ["Received", "X-Test-Inserted", "Subject"], head)
        self.assertIn("X-Test-Inserted: second\n", head)
        self.assertTrue(milter.alive())

    def test_a_hanging_milter_times_out_into_its_failure_action(self):
        for on_failure, expect in (("tempfail", "451 4.7.1"), ("accept", "250 2.0.0")):
            with self.subTest(on_failure=on_failure):
                milter, address = self.start_milter(name=on_failure)
                node = self.spoold(base_config(self.workdir, {
                    "milters": [self.milter_config(address, on_failure)]}), subdir=on_failure)
                # The reply comes after the content timeout; the client waits longer.
                c = SmtpClient(node.port, timeout=MILTER_CONTENT_TIMEOUT_S + 20)
                reply = send_message(c, ["alice@example.com"], "MILTER-HANG")
                self.assertTrue(reply.startswith(expect), reply)
                # The session goes on; for tempfail the failed filter keeps refusing it.
                reply = c.cmd("MAIL FROM:<s@remote.test>")
                self.assertTrue(reply.startswith("451" if on_failure == "tempfail" else "250"),
                                reply)
                c.close()
                self.assertEqual(len(node.list_json()), 0 if on_failure == "tempfail" else 1)
                logged(node, rf"event=milter_failed milter=test step=eom .* action={on_failure}")
                node.stop()
                milter.kill()

    def test_a_milter_that_dies_mid_message_or_is_down_gives_4xx_never_5xx(self):
        milter, address = self.start_milter()
        node = self.node_with([self.milter_config(address)])
        c = SmtpClient(node.port)
        reply = send_message(c, ["alice@example.com"], "MILTER-DIE")
        c.close()
        self.assertTrue(reply.startswith("451 4.7.1"), reply)
        wait_for(lambda: not milter.alive(), 10, what="the milter's exit")
        # Now it is down: new connections get 4xx from MAIL on (the greeting stays 220,
        # so the client hears it where it can act on it), nothing is stored.
        c = SmtpClient(node.port)
        reply = send_message(c, ["alice@example.com"], "after the filter died")
        c.close()
        self.assertTrue(reply.startswith("451 4.7.1"), reply)
        self.assertEqual(node.list_json(), [])
        logged(node, "event=milter_failed milter=test step=connect")


if __name__ == "__main__":
    unittest.main()
