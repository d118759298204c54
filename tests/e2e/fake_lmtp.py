"""A small LMTP server for exact control: it keeps each transaction (MAIL FROM to the reply to
its data) open for a fixed service time, and records how many transactions were in flight at
once, every Subject it stored (with its recipient) and when (monotonic clock) each stored
transaction began. It accepts every recipient except those on a "dead shard" (set_dead): they
get `451 4.3.0 <rcpt> shard unavailable` at RCPT, as a proxy in front of a backend that is
down answers, or after DATA (LMTP's per-recipient replies: the shard failed to store it), and
a DATA with no recipient left gets Dovecot's `503 5.5.1 No valid recipients`.

A store that is down (set_down) answers `421 4.3.2` to the greeting and to any command of a
session opened before, then closes it. Storing is atomic with the decision to answer: a
message is recorded (and its 250s sent) only while the store is up, under the lock that
set_down takes, so a transaction the outage cuts stored nothing and one that stored was
answered: every retry after an outage is a first delivery, never a duplicate."""
import socket
import socketserver
import threading
import time


class FakeLmtp:
    def __init__(self, service_time=0.05, port=0):
        self.service_time = service_time
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.subjects = []  # in the order stored
        self.starts = []    # time.monotonic() of each stored transaction's MAIL, same order
        self.stored_for = []  # (recipient, subject), in the order stored
        self.dead = set()  # recipients on the dead shard (lower case)
        self.dead_at = "rcpt"  # where the dead shard's recipients are refused: rcpt or data
        self.down = False
        self.returns = 0  # times the store came back up (set_down(False) after down)
        self.txn_log = []  # (returns so far, transactions in flight with it) at each MAIL
        self.refused = []  # the dead shard's recipients refused (at RCPT or DATA), in order
        owner = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                owner._session(self.rfile, self.wfile)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 128  # 5 by default: a burst of connects would time out

        self.server = Server(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _enter(self):
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.txn_log.append((self.returns, self.in_flight))

    def _leave(self):
        with self.lock:
            self.in_flight -= 1

    def _session(self, rfile, wfile):
        def reply(text):
            wfile.write(text.encode() + b"\r\n")
            wfile.flush()

        def is_down():
            with self.lock:
                return self.down

        if is_down():
            reply("421 4.3.2 fake-lmtp down")
            return
        reply("220 fake-lmtp ready")
        rcpts = []  # accepted in this transaction
        open_txn = False
        began = None
        try:
            while True:
                line = rfile.readline()
                if not line:
                    return
                cmd = line.decode(errors="replace").strip()
                verb = cmd.split(" ", 1)[0].upper()
                if is_down():
                    reply("421 4.3.2 fake-lmtp down")
                    return
                if verb == "LHLO":
                    wfile.write(b"250-fake-lmtp\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
                                b"250 ENHANCEDSTATUSCODES\r\n")
                    wfile.flush()
                elif verb == "MAIL":
                    if not open_txn:
                        open_txn = True
                        began = time.monotonic()
                        self._enter()
                    rcpts = []
                    reply("250 2.1.0 ok")
                elif verb == "RCPT":
                    rcpt = cmd.split(":", 1)[1].strip().strip("<>").lower() if ":" in cmd else ""
                    with self.lock:
                        dead = rcpt in self.dead and self.dead_at == "rcpt"
                        if dead:
                            self.refused.append(rcpt)
                    if dead:
                        reply(f"451 4.3.0 <{rcpt}> shard unavailable")
                    else:
                        rcpts.append(rcpt)
                        reply("250 2.1.5 ok")
                elif verb == "DATA" and not rcpts:
                    if open_txn:  # a transaction with no recipient left is over
                        open_txn = False
                        self._leave()
                    reply("503 5.5.1 No valid recipients")
                elif verb == "DATA":
                    reply("354 go ahead")
                    subject = None
                    while True:
                        data = rfile.readline()
                        if not data:
                            return
                        if data in (b".\r\n", b".\n"):
                            break
                        text = data.decode(errors="replace")
                        if subject is None and text.lower().startswith("subject:"):
                            subject = text.split(":", 1)[1].strip()
                    # The store's work: the transaction stays in flight this long.
                    time.sleep(self.service_time)
                    with self.lock:
                        if self.down:
                            replies = None
                        else:
                            replies = [self._store_one(r, subject) for r in rcpts]
                            if any(r.startswith("250") for r in replies):
                                self.subjects.append(subject)
                                self.starts.append(began)
                        # Out of flight before the answer: once the client reads it, it may
                        # start its next transaction, which must not count this one.
                        open_txn = False
                        self.in_flight -= 1
                    if replies is None:
                        reply("421 4.3.2 fake-lmtp down")
                        return
                    for r in replies:
                        reply(r)
                elif verb == "RSET":
                    if open_txn:
                        open_txn = False
                        self._leave()
                    reply("250 2.0.0 ok")
                elif verb == "QUIT":
                    reply("221 2.0.0 bye")
                    return
                else:
                    reply("250 2.0.0 ok")
        except (ConnectionError, socket.timeout, OSError):
            return
        finally:
            if open_txn:
                self._leave()

    def _store_one(self, rcpt, subject):
        """Under the lock: one recipient's reply to the data, stored unless its shard is dead."""
        if rcpt in self.dead and self.dead_at == "data":
            self.refused.append(rcpt)
            return f"451 4.3.0 <{rcpt}> shard unavailable"
        self.stored_for.append((rcpt, subject))
        return "250 2.0.0 stored"

    def stored(self):
        with self.lock:
            return list(self.subjects)

    def stored_starts(self):
        """When each stored transaction began, in the order stored."""
        with self.lock:
            return list(self.starts)

    def now_in_flight(self):
        with self.lock:
            return self.in_flight

    def stored_pairs(self):
        """(recipient, subject) of every delivery, in the order stored."""
        with self.lock:
            return list(self.stored_for)

    def refused_count(self):
        with self.lock:
            return len(self.refused)

    def set_dead(self, recipients, at="rcpt"):
        """The dead shard from now on: these recipients get 451 4.3.0 at RCPT (at="rcpt") or
        in their reply to the data (at="data")."""
        assert at in ("rcpt", "data")
        with self.lock:
            self.dead = {r.lower() for r in recipients}
            self.dead_at = at

    def set_down(self, down):
        """The whole store down (421 to every greeting and command) or back up."""
        with self.lock:
            if self.down and not down:
                self.returns += 1
            self.down = down

    def in_flight_at_starts(self, returns):
        """Transactions in flight (itself included) as each transaction began after the
        store's `returns`-th return, in the order they began."""
        with self.lock:
            return [n for r, n in self.txn_log if r == returns]

    def peak(self):
        with self.lock:
            return self.max_in_flight

    def reset_peak(self):
        """The peak so far; from now on the peak counts from what is in flight now."""
        with self.lock:
            peak, self.max_in_flight = self.max_in_flight, self.in_flight
            return peak

    def kill(self):
        self.server.shutdown()
        self.server.server_close()
