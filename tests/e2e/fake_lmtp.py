"""A small LMTP server for exact control: it keeps each transaction (MAIL FROM to the reply to
its data) open for a fixed service time, and records how many transactions were in flight at
once, every Subject it stored (with its recipient) and when (monotonic clock) each stored
transaction began. It accepts every recipient except those on a "dead shard" (set_dead): they
get `451 4.3.0 <rcpt> shard unavailable` at RCPT, as a proxy in front of a backend that is
down answers, and a DATA with no recipient left gets Dovecot's `503 5.5.1 No valid
recipients`."""
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
        self.refused = []  # recipients refused at RCPT, in order
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

    def _leave(self):
        with self.lock:
            self.in_flight -= 1

    def _session(self, rfile, wfile):
        def reply(text):
            wfile.write(text.encode() + b"\r\n")
            wfile.flush()

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
                        dead = rcpt in self.dead
                        if dead:
                            self.refused.append(rcpt)
                    if dead:
                        reply(f"451 4.3.0 <{rcpt}> shard unavailable")
                    else:
                        rcpts.append(rcpt)
                        reply("250 2.1.5 ok")
                elif verb == "DATA" and not rcpts:
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
                        self.subjects.append(subject)
                        self.starts.append(began)
                        self.stored_for.extend((r, subject) for r in rcpts)
                    for _ in rcpts:
                        reply("250 2.0.0 stored")
                    open_txn = False
                    self._leave()
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

    def set_dead(self, recipients):
        """The dead shard from now on: these recipients get 451 4.3.0 at RCPT."""
        with self.lock:
            self.dead = {r.lower() for r in recipients}

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
