"""A scripted mail filter for the end-to-end tests, on Debian's python3-milter (libmilter).

Run with Debian's interpreter: /usr/bin/python3 test_milter.py unix:/path/to/socket
It prints "ready" once it listens, then acts on what the message asks for:
  RCPT TO:<reject-rcpt@...>    550 5.7.1 at RCPT (a custom reply)
  RCPT TO:<tempfail-rcpt@...>  tempfail at RCPT
  body line MILTER-REJECT      554 5.7.1 at the end of the message (a custom reply)
  body line MILTER-TEMPFAIL    tempfail at the end of the message
  body line MILTER-DISCARD     discard
  body line MILTER-QUARANTINE  quarantine ("test quarantine")
  body line MILTER-HANG        never answers the end of the message
  body line MILTER-DIE         the filter process exits at the end of the message
  body line MILTER-ENVELOPE    sender changed to <changed@remote.test>, recipients
                               <bob@example.com> and <outsider@elsewhere.test> added,
                               <alice@example.com> removed, "X-Test-Inserted: second"
                               inserted at index 1 (after spoold's Received:)
Every message it lets through gets "X-Test-Milter: client=<{client_addr}> id=<i>
helo=<HELO name>" and an "Authentication-Results: <authserv-id>; test=pass" (the
authserv-id is the macro {daemon_name}, as rspamd takes it), and its Subject is changed to
"[milter] <subject>".
"""
import os
import sys
import threading
import time

import Milter

SOCKET = sys.argv[1]
HANG_SECONDS = 3600  # the test process kills us long before


class TestMilter(Milter.Base):
    def __init__(self):
        self.client = ""
        self.helo_name = ""
        self.subject = None
        self.content = b""

    def connect(self, hostname, family, hostaddr):
        self.client = self.getsymval("{client_addr}") or ""
        self.authserv_id = self.getsymval("{daemon_name}") or "unknown"
        return Milter.CONTINUE

    def hello(self, name):
        self.helo_name = name
        return Milter.CONTINUE

    def envfrom(self, mailfrom, *params):
        self.subject = None
        self.content = b""
        return Milter.CONTINUE

    def envrcpt(self, to, *params):
        local = to.strip("<>").split("@", 1)[0].lower()
        if local == "reject-rcpt":
            self.setreply("550", "5.7.1", "test milter refuses this recipient")
            return Milter.REJECT
        if local == "tempfail-rcpt":
            return Milter.TEMPFAIL
        return Milter.CONTINUE

    def header(self, name, value):
        if name.lower() == "subject" and self.subject is None:
            self.subject = value
        return Milter.CONTINUE

    def body(self, chunk):
        self.content += chunk
        return Milter.CONTINUE

    def eom(self):
        body = self.content
        if b"MILTER-REJECT" in body:
            self.setreply("554", "5.7.1", "test milter rejects this content")
            return Milter.REJECT
        if b"MILTER-TEMPFAIL" in body:
            return Milter.TEMPFAIL
        if b"MILTER-DISCARD" in body:
            return Milter.DISCARD
        if b"MILTER-HANG" in body:
            time.sleep(HANG_SECONDS)
        if b"MILTER-DIE" in body:
            os._exit(3)
        if b"MILTER-QUARANTINE" in body:
            self.quarantine("test quarantine")
        if b"MILTER-ENVELOPE" in body:
            self.chgfrom("<changed@remote.test>")
            self.addrcpt("<bob@example.com>")
            self.addrcpt("<outsider@elsewhere.test>")
            self.delrcpt("<alice@example.com>")
            self.addheader("X-Test-Inserted", "second", 1)  # smfi_insheader
        queue_id = self.getsymval("i") or ""
        self.addheader("X-Test-Milter",
                       f"client=<{self.client}> id=<{queue_id}> helo=<{self.helo_name}>")
        self.addheader("Authentication-Results", f"{self.authserv_id}; test=pass")
        if self.subject is not None:
            self.chgheader("Subject", 1, "[milter] " + self.subject.strip())
        return Milter.ACCEPT


def main():
    Milter.factory = TestMilter
    Milter.set_flags(Milter.ADDHDRS | Milter.CHGHDRS | Milter.QUARANTINE | Milter.CHGFROM
                     | Milter.ADDRCPT | Milter.DELRCPT)
    # "ready" once the socket exists: libmilter creates it inside runmilter.
    path = SOCKET.split(":", 1)[1]

    def announce():
        while not os.path.exists(path):
            time.sleep(0.01)
        print("ready", flush=True)

    threading.Thread(target=announce, daemon=True).start()
    Milter.runmilter("test-milter", SOCKET, 600)


if __name__ == "__main__":
    main()
