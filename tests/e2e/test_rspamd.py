"""spoold asking a real rspamd (Debian's 3.4, its proxy worker in milter mode, scanning
itself) over a Unix socket: the GTUBE test message is rejected with rspamd's reply, a
clean message is spooled with rspamd's headers, and rspamd's Authentication-Results
carries our authserv-id while a forged one is gone.

rspamd compiles its Hyperscan databases at its first start (130 s measured on a loaded
2-core machine with an empty cache); they are kept in the build directory (rspamd-cache) so
later runs start in seconds. rspamd's main process binds the milter socket before its worker
can answer on it, so the test waits for readiness by running one whole milter conversation
with the worker itself (a scan, as spoold's will be). Labelled slow: release build only.
"""
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BUILD_DIR, SmtpClient, SpooldTestCase, free_port, wait_for  # noqa: E402

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
# Bounds the wait for rspamd's first scan: its cold start (empty cache) took 130 s on a
# loaded 2-core machine; this is more than twice that. The CTest timeout
# (tests/e2e/CMakeLists.txt) adds the two messages' content timeouts and the stops to it.
RSPAMD_START_TIMEOUT = 300
# spoold's filter timeouts once rspamd has scanned (a warm scan takes milliseconds).
MILTER_CONNECT_TIMEOUT_S = 30
MILTER_COMMAND_TIMEOUT_S = 30
MILTER_CONTENT_TIMEOUT_S = 120
# How long rspamd's main process gets to stop its workers after SIGTERM.
RSPAMD_STOP_TIMEOUT = 30

# The milter protocol's flags the readiness probe honours (SMFIP_NO* / SMFIP_NR_*), per
# step: (command, skip flag, no-reply flag).
MILTER_STEPS = {"C": (0x1, 0x1000), "H": (0x2, 0x2000), "M": (0x4, 0x4000),
                "R": (0x8, 0x8000), "L": (0x20, 0x80), "N": (0x40, 0x40000),
                "B": (0x10, 0x80000)}
# Final replies: accept, continue, discard, reject, tempfail, reply code, shutdown, fail.
MILTER_FINAL = {b"a", b"c", b"d", b"r", b"t", b"y", b"4", b"f"}


def milter_packet(code, data=b""):
    return struct.pack("!I", len(data) + 1) + code.encode() + data


def read_milter_packet(sock):
    def exactly(n):
        out = b""
        while len(out) < n:
            chunk = sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("rspamd closed the milter connection")
            out += chunk
        return out
    (length,) = struct.unpack("!I", exactly(4))
    data = exactly(length)
    return data[:1], data[1:]


def milter_scan(path, timeout):
    """One whole milter conversation with the filter at `path` (option negotiation, the
    message's steps, end of message), honouring the steps it skips or leaves unanswered.
    Returns the final reply's code; raises OSError when it does not complete in `timeout`."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(milter_packet("O", struct.pack("!III", 6, 0x1FF, 0xFFFFF & ~0x800)))
        code, data = read_milter_packet(s)
        if code != b"O" or len(data) < 12:
            raise ConnectionError(f"no option negotiation from rspamd: {code!r}")
        protocol = struct.unpack("!III", data[:12])[2]
        steps = [("C", b"probe.test\0" + b"4" + struct.pack("!H", 25) + b"127.0.0.1\0"),
                 ("H", b"probe.test\0"), ("M", b"<probe@remote.test>\0"),
                 ("R", b"<alice@example.com>\0"), ("L", b"Subject\0probe\0"), ("N", b""),
                 ("B", b"A message that tells rspamd is ready.\r\n")]
        for command, payload in steps:
            skip, no_reply = MILTER_STEPS[command]
            if protocol & skip:
                continue
            s.sendall(milter_packet(command, payload))
            if protocol & no_reply:
                continue
            code, _ = read_milter_packet(s)
            if code != b"c":
                return code  # the filter decided early: it has answered
        s.sendall(milter_packet("E"))
        while True:
            code, _ = read_milter_packet(s)
            if code in MILTER_FINAL:
                s.sendall(milter_packet("Q"))
                return code


def rspamd_config(local):
    """Our overrides of Debian's /etc/rspamd: only the proxy worker, in milter mode on a
    Unix socket, scanning itself; logs on the console; no DNS beyond loopback and no fuzzy
    hash servers; rspamd's headers on every message, local clients included."""
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
        # Its upstreams are resolved with the system's resolver: loopback only here.
        "override.d/fuzzy_check.conf": "enabled = false;\n",
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
        # Its own process group, so a hung rspamd is stopped with all its workers.
        self.rspamd = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        # The harness's teardown calls kill(), before the rmtree, also when setUp fails.
        self._procs.append(self)
        self.wait_until_rspamd_scans()
        with open(os.path.join(self.workdir, "recipients"), "w") as f:
            f.write("alice@example.com\n")
        self.node = self.spoold({
            "mailstores": [{"name": "dovecot", "kind": "lmtp", "host": "127.0.0.1",
                            "port": free_port(), "connect_timeout": "1s"}],
            "drain": {"breaker_min_backoff": "30s", "breaker_max_backoff": "60s"},
            "directory": {"file": os.path.join(self.workdir, "recipients"), "format": "list"},
            "milters": [{"name": "rspamd", "address": "unix:" + self.socket,
                         "connect_timeout": f"{MILTER_CONNECT_TIMEOUT_S}s",
                         "command_timeout": f"{MILTER_COMMAND_TIMEOUT_S}s",
                         "content_timeout": f"{MILTER_CONTENT_TIMEOUT_S}s"}],
        })

    def wait_until_rspamd_scans(self):
        """Until rspamd's worker has answered one whole milter conversation, within
        RSPAMD_START_TIMEOUT: before that the socket may exist with nobody answering."""
        deadline = time.monotonic() + RSPAMD_START_TIMEOUT
        started = time.monotonic()
        wait_for(lambda: os.path.exists(self.socket) or self.rspamd.poll() is not None,
                 RSPAMD_START_TIMEOUT, interval=0.2, what="rspamd's milter socket")

        def scanned():
            self.assertIsNone(self.rspamd.poll(), "rspamd exited at start (see rspamd.log)")
            try:
                # A tuple: true whatever the reply's code.
                return (milter_scan(self.socket, max(deadline - time.monotonic(), 0.1)),)
            except (ConnectionError, FileNotFoundError):
                # The socket is there before the worker takes connections: the main
                # process may close it on a worker restart. Ask again shortly.
                return None
        (code,) = wait_for(scanned, deadline - time.monotonic(), interval=0.2,
                           what=f"rspamd's first scan (within {RSPAMD_START_TIMEOUT}s)")
        print(f"\n[rspamd] first scan answered {code!r} after "
              f"{time.monotonic() - started:.1f}s", file=sys.stderr, flush=True)

    def kill(self):
        # rspamd's main process stops its workers on SIGTERM; the whole group gets SIGKILL
        # when it does not within RSPAMD_STOP_TIMEOUT.
        if self.rspamd.poll() is None:
            self.rspamd.terminate()
            try:
                self.rspamd.wait(RSPAMD_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.rspamd.pid, signal.SIGKILL)  # workers left behind, if any
        except ProcessLookupError:
            pass
        self.rspamd.wait(10)
        self.log.close()

    def send(self, body, extra_headers=""):
        # The reply to the end of data comes within the filter's content timeout.
        c = SmtpClient(self.node.port, timeout=MILTER_CONTENT_TIMEOUT_S + 30)
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
