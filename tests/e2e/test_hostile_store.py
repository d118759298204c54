"""A hostile mailstore (issue 17): spoold's LMTP mailstore is a proxy in front of a real
Dovecot that, case by case, misbehaves instead of passing the conversation through:
a greeting that is a megabyte line without CRLF, an endless multi-line LHLO reply,
garbage instead of the reply to DATA, and half a reply to the final dot, then a close.

Pass, for every case: a log line that names what the store did; every message still in
the spool (deferred, none lost) and `spoolctl check` clean; spoold's anonymous memory never
above the bound computed from the client's reply limits (RSS_BOUND below); the store saw
spoold hang up long before the end of its endless stream. Then the store passes through
again and every message lands in Dovecot exactly once. Bounded: every wait has a
deadline; the whole test takes about 30 s (Dovecot included).
"""
import os
import selectors
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Dovecot, SpooldTestCase, swaks, wait_for  # noqa: E402

MESSAGES = 6
USERS = ["alice@example.com", "bob@example.com"]
# An endless stream ends here: far above what spoold may buffer, so a missing limit shows.
STREAM_CAP = 64 << 20
CASE_TIMEOUT = 30  # seconds per case; the breaker's probes come at most every 1 s

# The memory bound, from common/reply_parser.hpp and drain/connectors/connection.hpp: a reply holds
# at most kMaxReplyLines lines of kMaxReplyLineBytes; the parser's buffer holds one read
# (16 KiB) plus an unterminated line, doubled for string growth; plus the read buffer.
K_MAX_REPLY_LINES = 256
K_MAX_REPLY_LINE_BYTES = 2048
READ_BUFFER = 16 << 10
PER_CONNECTION = (K_MAX_REPLY_LINES * (K_MAX_REPLY_LINE_BYTES + 32)
                  + 2 * (READ_BUFFER + K_MAX_REPLY_LINE_BYTES + 1) + READ_BUFFER)
MAX_CONCURRENCY = 2
CONNECTIONS = MAX_CONCURRENCY + 1  # deliveries in flight and the breaker's probe
# Allocator slack: freed memory glibc keeps, the intake of the test's messages, log lines.
SLACK = 8 << 20
RSS_BOUND = CONNECTIONS * PER_CONNECTION + SLACK  # growth over the warmed-up baseline

# case -> (what the store does, the text spoold's log line must carry)
CASES = {
    "megabyte_line": "mailstore protocol error: reply line too long",
    "endless_multiline": "mailstore protocol error: reply has too many lines",
    "garbage": "mailstore protocol error: malformed reply line",
    "half_reply": "mailstore closed the connection waiting for a reply",
}
LOG_EVENTS = ("event=mailstore_connect_failed", "event=mailstore_conversation_failed",
              "event=probe ")


def rss_anon(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no RssAnon in /proc/%d/status" % pid)


class LineReader:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r")

    def until_dot(self):
        while b"\r\n.\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                return False
            self.buf += chunk
        self.buf = self.buf.split(b"\r\n.\r\n", 1)[1]
        return True


class HostileStore:
    """LMTP on 127.0.0.1 (port 0) in front of Dovecot; the mode at accept time decides
    what a connection gets. Counts what happened per mode; stop() ends every thread."""

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.mode = "pass"
        self.cond = threading.Condition()
        self.events = {}
        self.conns = set()
        self.threads = []
        self.stopping = False
        self.accepter = threading.Thread(target=self._accept, daemon=True)
        self.accepter.start()

    def set_mode(self, mode):
        """New connections get `mode`; open ones are cut (a pooled connection from the
        previous mode must not carry on)."""
        with self.cond:
            self.mode = mode
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def count(self, key):
        with self.cond:
            return self.events.get(key, 0)

    def _event(self, key):
        with self.cond:
            self.events[key] = self.events.get(key, 0) + 1
            self.cond.notify_all()

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self.cond:
                if self.stopping:
                    conn.close()
                    return
                mode = self.mode
                self.conns.add(conn)
                t = threading.Thread(target=self._serve, args=(conn, mode), daemon=True)
                self.threads.append(t)
            t.start()

    def _serve(self, conn, mode):
        conn.settimeout(CASE_TIMEOUT)
        try:
            getattr(self, "_" + mode)(conn)
        except OSError:
            pass
        finally:
            with self.cond:
                self.conns.discard(conn)
            conn.close()

    def _stream(self, conn, mode, head, unit):
        """Sends `head`, then `unit` over and over until the peer hangs up or the cap."""
        conn.sendall(head)
        chunk = unit * max(1, (64 << 10) // len(unit))
        sent = 0
        try:
            while sent < STREAM_CAP:
                conn.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            self._event((mode, "peer_closed"))
            return
        self._event((mode, "cap_reached"))

    def _megabyte_line(self, conn):
        self._stream(conn, "megabyte_line", b"220 ", b"x" * 1024)

    def _endless_multiline(self, conn):
        conn.sendall(b"220 store ready\r\n")
        if LineReader(conn).line() is None:
            return
        self._stream(conn, "endless_multiline", b"", b"250-" + b"x" * 72 + b"\r\n")

    def _conversation(self, conn, mode):
        """A plain LMTP conversation up to DATA; then the mode's misbehaviour."""
        r = LineReader(conn)
        conn.sendall(b"220 store ready\r\n")
        while True:
            line = r.line()
            if line is None:
                return
            verb = line[:4].upper()
            if verb == b"LHLO":
                conn.sendall(b"250-store\r\n250 ENHANCEDSTATUSCODES\r\n")
            elif verb in (b"MAIL", b"RSET"):
                conn.sendall(b"250 2.1.0 Ok\r\n")
            elif verb == b"RCPT":
                conn.sendall(b"250 2.1.5 Ok\r\n")
            elif verb == b"QUIT":
                conn.sendall(b"221 2.0.0 Bye\r\n")
                return
            elif verb == b"DATA" and mode == "garbage":
                conn.sendall(b"\x00\xff\x16\x03\x01 not a reply \x7f\r\n")
                self._event((mode, "sent"))
                r.line()  # until spoold hangs up
                return
            elif verb == b"DATA":
                conn.sendall(b"354 go ahead\r\n")
                if not r.until_dot():
                    return
                conn.sendall(b"250-2.0.0 Ok\r\n250 2.0.0 Sav")  # and nothing more
                self._event((mode, "sent"))
                return
            else:
                conn.sendall(b"500 5.5.1 what\r\n")

    def _garbage(self, conn):
        self._conversation(conn, "garbage")

    def _half_reply(self, conn):
        self._conversation(conn, "half_reply")

    def _pass(self, conn):
        up = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=CASE_TIMEOUT)
        with self.cond:
            self.conns.add(up)
        sel = selectors.DefaultSelector()
        sel.register(conn, selectors.EVENT_READ, up)
        sel.register(up, selectors.EVENT_READ, conn)
        try:
            while True:
                for key, _ in sel.select(timeout=CASE_TIMEOUT):
                    data = key.fileobj.recv(65536)
                    if not data:
                        return
                    key.data.sendall(data)
        finally:
            sel.close()
            with self.cond:
                self.conns.discard(up)
            up.close()

    def stop(self):
        with self.cond:
            self.stopping = True
            threads = list(self.threads)
        self.listener.close()
        self.set_mode("pass")
        self.accepter.join(10)
        for t in threads:
            t.join(CASE_TIMEOUT + 5)
            if t.is_alive():
                raise AssertionError("a hostile store thread did not end")

    kill = stop


class RssSampler:
    """The highest RssAnon of a process, sampled every 10 ms until stop()."""

    def __init__(self, pid):
        self.pid = pid
        self.peak = rss_anon(pid)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.done.wait(0.01):
            try:
                self.peak = max(self.peak, rss_anon(self.pid))
            except (OSError, AssertionError):
                return  # the process is gone (a failed test's teardown)

    def stop(self):
        self.done.set()
        self.thread.join(5)
        return self.peak


class HostileMailstore(SpooldTestCase):
    def test_garbage_half_replies_endless_and_megabyte_replies_defer_and_lose_nothing(self):
        started = time.monotonic()
        dovecot = Dovecot(os.path.join(self.workdir, "dovecot"), USERS)
        self._procs.append(dovecot)
        dovecot.start()
        store = HostileStore(dovecot.port)
        self._procs.append(store)
        node = self.spoold({
            "mailstores": [{"name": "hostile", "kind": "lmtp", "host": "127.0.0.1",
                            "port": store.port, "connect_timeout": "2s",
                            "command_timeout": "10s", "data_timeout": "10s"}],
            "drain": {"breaker_min_backoff": "200ms", "breaker_max_backoff": "1s",
                      "initial_concurrency": MAX_CONCURRENCY,
                      "max_concurrency": MAX_CONCURRENCY,
                      "retry_min": "1s", "retry_max": "2s"},
        })

        def send(subject):
            rc, out = swaks(node.port, "--from", "sender@remote.test", "--to", ",".join(USERS),
                            "--header", f"Subject: {subject}", "--body", f"body of {subject}\n")
            self.assertEqual(rc, 0, out)

        def delivered(user):
            return sorted(dovecot.header(m, "Subject") for m in dovecot.messages(user))

        # Warm up through the pass-through, so the baseline includes a used connection.
        send("warmup")
        wait_for(lambda: all(delivered(u) == ["warmup"] for u in USERS), CASE_TIMEOUT,
                 what="the warm-up message in Dovecot")
        wait_for(lambda: node.list_json() == [], CASE_TIMEOUT, what="spool empty")
        baseline = rss_anon(node.proc.pid)
        sampler = RssSampler(node.proc.pid)
        self.addCleanup(sampler.stop)

        subjects = [f"hostile {i}" for i in range(MESSAGES)]
        for case, text in CASES.items():
            seen = len(node.lines())
            store.set_mode(case)
            if case == "megabyte_line":  # the first case: the mail arrives during it
                for s in subjects:
                    send(s)

            def logged():
                return [l for l in node.lines()[seen:]
                        if text in l and any(e in l for e in LOG_EVENTS)]
            line = wait_for(logged, CASE_TIMEOUT, what=f"a log line for {case}")[0]
            print(f"{case}: {line}", file=sys.stderr)
            if case in ("megabyte_line", "endless_multiline"):
                wait_for(lambda: store.count((case, "peer_closed")), CASE_TIMEOUT,
                         what=f"spoold hanging up on the {case} stream")
                self.assertEqual(store.count((case, "cap_reached")), 0,
                                 f"spoold read the whole {STREAM_CAP}-byte {case} stream")
            queued = node.list_json()
            self.assertEqual(len(queued), MESSAGES, f"after {case}: {queued}")
            node.spoolctl("check")
            self.assertEqual([delivered(u) for u in USERS], [["warmup"]] * len(USERS),
                             f"delivered during {case}")
        peak = sampler.stop()
        growth = peak - baseline
        print(f"rss_anon baseline={baseline} peak={peak} growth={growth} bound={RSS_BOUND}",
              file=sys.stderr)
        self.assertLessEqual(growth, RSS_BOUND)

        store.set_mode("pass")
        want = sorted(["warmup"] + subjects)
        wait_for(lambda: all(len(delivered(u)) >= len(want) for u in USERS), 60,
                 what="every message in Dovecot")
        wait_for(lambda: node.list_json() == [], CASE_TIMEOUT, what="spool empty")
        for u in USERS:
            self.assertEqual(delivered(u), want, f"{u}: each message exactly once")
        node.spoolctl("check")
        self.assertEqual(node.stop(), 0)
        store.stop()
        dovecot.stop()
        print(f"hostile store test: {time.monotonic() - started:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
