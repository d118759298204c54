"""SMTP listener end to end: the real spoold, real swaks and smtp-source, a real spool.

The mailstore is an LMTP address where nothing listens (the outage case), so every
accepted message stays in the spool and the tests can check exactly what it holds.
"""
import hashlib
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (SmtpClient, SpooldTestCase, free_port, server_replies, swaks,  # noqa: E402
                     wait_for)


def outage_config(workdir, extra=None):
    cfg = {
        "mailstores": [{"name": "dovecot", "kind": "lmtp", "host": "127.0.0.1",
                        "port": free_port(), "connect_timeout": "1s"}],
        "drain": {"breaker_min_backoff": "30s", "breaker_max_backoff": "60s"},
        "directory": {"file": os.path.join(workdir, "recipients"), "format": "list"},
    }
    if extra:
        cfg.update(extra)
    return cfg


class SmtpEndToEnd(SpooldTestCase):
    def setUp(self):
        super().setUp()
        with open(os.path.join(self.workdir, "recipients"), "w") as f:
            f.write("alice@example.com\nbob@example.com\ncarol@example.net\n"
                    "# a comment\npostmaster@example.com\n")
        self.node = self.spoold(outage_config(self.workdir))

    def messages(self):
        return self.node.list_json()

    def test_plain_delivery_is_spooled_with_its_envelope_and_body(self):
        rc, out = swaks(self.node.port, "--from", "sender@remote.test", "--to", "alice@example.com",
                        "--header", "Subject: hello", "--body", "line one\nline two")
        self.assertEqual(rc, 0, out)
        self.assertTrue(server_replies(out)[-2].startswith("250 2.0.0"), out)
        msgs = self.messages()
        self.assertEqual(len(msgs), 1)
        self.assertEqual(msgs[0]["sender"], "sender@remote.test")
        self.assertEqual([r["address"] for r in msgs[0]["recipients"]], ["alice@example.com"])
        body = self.node.spoolctl("show", msgs[0]["id"], "--body").stdout
        self.assertIn("Subject: hello", body)
        self.assertIn("line one", body)
        self.assertIn("Received: from", body)
        self.assertIn(msgs[0]["id"], body)

    def test_several_recipients_make_one_message(self):
        rc, out = swaks(self.node.port, "--from", "s@remote.test",
                        "--to", "alice@example.com,bob@example.com,carol@example.net")
        self.assertEqual(rc, 0, out)
        msgs = self.messages()
        self.assertEqual(len(msgs), 1)
        self.assertEqual(sorted(r["address"] for r in msgs[0]["recipients"]),
                         ["alice@example.com", "bob@example.com", "carol@example.net"])

    def test_pipelining(self):
        rc, out = swaks(self.node.port, "--pipeline", "--from", "s@remote.test",
                        "--to", "alice@example.com,bob@example.com")
        self.assertEqual(rc, 0, out)
        self.assertIn("PIPELINING", out)
        self.assertEqual(len(self.messages()), 1)

    def test_bdat_chunking(self):
        c = SmtpClient(self.node.port)
        self.assertTrue(c.reply().startswith("220"))
        self.assertTrue(c.cmd("EHLO client.test").startswith("250"))
        self.assertTrue(c.cmd("MAIL FROM:<s@remote.test>").startswith("250"))
        self.assertTrue(c.cmd("RCPT TO:<alice@example.com>").startswith("250"))
        part1 = b"Subject: bdat\r\n\r\nfirst part\r\n"
        part2 = b".this line starts with a dot\r\n"
        c.send(b"BDAT %d\r\n" % len(part1) + part1)
        self.assertTrue(c.reply().startswith("250"))
        c.send(b"BDAT %d LAST\r\n" % len(part2) + part2)
        self.assertTrue(c.reply().startswith("250 2.0.0"))
        c.cmd("QUIT")
        c.close()
        msgs = self.messages()
        self.assertEqual(len(msgs), 1)
        body = self.node.spoolctl("show", msgs[0]["id"], "--body").stdout
        self.assertIn(".this line starts with a dot", body)

    def test_size_exceeded_at_mail_and_at_end(self):
        self.node.stop()
        self.node.config["limits"] = {"max_message_size": "10KiB"}
        self.node.start()
        c = SmtpClient(self.node.port)
        c.reply()
        c.send("EHLO client.test\r\n")
        ehlo = []
        while True:
            line = c.reply_line()
            ehlo.append(line)
            if line[3] == " ":
                break
        self.assertIn("250-SIZE 10240", ehlo)
        self.assertTrue(c.cmd("MAIL FROM:<s@remote.test> SIZE=20000").startswith("552 5.3.4"))
        c.cmd("QUIT")
        c.close()
        rc, out = swaks(self.node.port, "--from", "s@remote.test", "--to", "alice@example.com",
                        "--body", "x" * 20000)
        self.assertNotEqual(rc, 0)
        self.assertTrue(any(r.startswith("552 5.3.4") for r in server_replies(out)), out)
        self.assertEqual(self.messages(), [])

    def test_relay_denied(self):
        rc, out = swaks(self.node.port, "--from", "s@remote.test", "--to", "victim@elsewhere.test")
        self.assertNotEqual(rc, 0)
        self.assertTrue(any(r.startswith("550 5.7.1") for r in server_replies(out)), out)
        self.assertEqual(self.messages(), [])

    def test_unknown_user(self):
        rc, out = swaks(self.node.port, "--from", "s@remote.test", "--to", "nobody@example.com")
        self.assertNotEqual(rc, 0)
        self.assertTrue(any(r.startswith("550 5.1.1") for r in server_replies(out)), out)
        self.assertEqual(self.messages(), [])

    def test_rset_mid_transaction_discards_the_envelope(self):
        c = SmtpClient(self.node.port)
        c.reply()
        c.cmd("EHLO client.test")
        c.cmd("MAIL FROM:<first@remote.test>")
        c.cmd("RCPT TO:<alice@example.com>")
        self.assertTrue(c.cmd("RSET").startswith("250"))
        self.assertTrue(c.cmd("RCPT TO:<bob@example.com>").startswith("503 5.5.1"))
        c.cmd("MAIL FROM:<second@remote.test>")
        c.cmd("RCPT TO:<bob@example.com>")
        self.assertTrue(c.cmd("DATA").startswith("354"))
        self.assertTrue(c.cmd("Subject: after rset\r\n\r\nbody\r\n.").startswith("250"))
        c.cmd("QUIT")
        msgs = self.messages()
        self.assertEqual(len(msgs), 1)
        self.assertEqual(msgs[0]["sender"], "second@remote.test")
        self.assertEqual([r["address"] for r in msgs[0]["recipients"]], ["bob@example.com"])

    def test_smuggling_variants_never_end_a_message_early(self):
        # SEC Consult (2023) end-of-data variants, each followed by a smuggled second
        # message. Only CRLF.CRLF ends DATA. Our one rule: a bare CR or LF anywhere in
        # DATA refuses the whole message (5xx), so nothing of the attempt is spooled.
        bare = [b"\n.\n", b"\n.\r\n", b"\r.\r", b"\r\n.\n", b"\r\n.\r", b"\n.\r", b"\r.\n"]
        for v in bare:
            c = SmtpClient(self.node.port)
            c.reply()
            c.cmd("EHLO client.test")
            c.cmd("MAIL FROM:<s@remote.test>")
            c.cmd("RCPT TO:<alice@example.com>")
            self.assertTrue(c.cmd("DATA").startswith("354"))
            c.send(b"Subject: smuggle\r\n\r\nfirst" + v +
                   b"MAIL FROM:<evil@remote.test>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n"
                   b"Subject: smuggled\r\n\r\nevil\r\n.\r\n")
            reply = c.reply()
            self.assertTrue(reply.startswith("5"), (v, reply))
            c.close()
        self.assertEqual(self.messages(), [], "nothing may be accepted from a smuggling attempt")
        # A NUL before the dot is not an end of data either, and a NUL anywhere in the
        # content refuses the message like a bare CR or LF: the "smuggled" commands stay
        # inside the refused message, and the session goes on.
        c = SmtpClient(self.node.port)
        c.reply()
        c.cmd("EHLO client.test")
        c.cmd("MAIL FROM:<s@remote.test>")
        c.cmd("RCPT TO:<alice@example.com>")
        c.cmd("DATA")
        c.send(b"Subject: nul\r\n\r\nfirst\r\n\x00.\r\nMAIL FROM:<evil@remote.test>\r\n"
               b"RCPT TO:<bob@example.com>\r\nDATA\r\nevil\r\n.\r\n")
        reply = c.reply()
        self.assertTrue(reply.startswith("554 5.6.0"), reply)
        self.assertTrue(c.cmd("NOOP").startswith("250"))
        c.close()
        self.assertEqual(self.messages(), [], "a message with a NUL byte is refused")

    def test_message_data_before_the_354_ends_the_session(self):
        # Unauthorised pipelining (a spam-bot signature): the content in the same write
        # as DATA, before our 354.
        c = SmtpClient(self.node.port)
        c.reply()
        c.cmd("EHLO client.test")
        c.send(b"MAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\n"
               b"Subject: early\r\n\r\nbody\r\n.\r\n")
        self.assertTrue(c.reply().startswith("250"))
        self.assertTrue(c.reply().startswith("250"))
        reply = c.reply()  # one write on loopback arrives as one read: no 354 first
        self.assertTrue(reply.startswith("554 5.5.0"), reply)
        self.assertTrue(c.closed(), "the session ends after the refusal")
        c.close()
        self.assertEqual(self.messages(), [])

    def test_overlong_command_line(self):
        c = SmtpClient(self.node.port)
        c.reply()
        c.cmd("EHLO client.test")
        reply = c.cmd("MAIL FROM:<" + "a" * 10000 + "@remote.test>")
        self.assertTrue(reply.startswith("500 5.5.2") or reply.startswith("501"), reply)
        # The session goes on after a refused line.
        self.assertTrue(c.cmd("NOOP").startswith("250"))
        c.close()

    def test_starttls(self):
        cert = os.path.join(self.workdir, "cert.pem")
        key = os.path.join(self.workdir, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                        "-out", cert, "-days", "1", "-subj", "/CN=mx.test"],
                       check=True, capture_output=True, timeout=60)
        self.node.stop()
        self.node.config["listeners"] = [{"address": "127.0.0.1", "port": 0,
                                          "tls_certificate": cert, "tls_key": key}]
        self.node.start()
        rc, out = swaks(self.node.port, "--tls", "--from", "s@remote.test", "--to", "alice@example.com")
        self.assertEqual(rc, 0, out)
        msgs = self.messages()
        self.assertEqual(len(msgs), 1)
        body = self.node.spoolctl("show", msgs[0]["id"], "--body").stdout
        self.assertIn("ESMTPS", body)
        self.assertIn("TLS", body)


class SmtpSourceLoad(SpooldTestCase):
    def test_ten_thousand_messages_over_twenty_sessions(self):
        with open(os.path.join(self.workdir, "recipients"), "w") as f:
            f.write("alice@example.com\n")
        node = self.spoold(outage_config(self.workdir))
        count = int(os.environ.get("SPOOLD_LOAD_COUNT", "10000"))
        r = subprocess.run(["smtp-source", "-s", "20", "-m", str(count), "-l", "2048",
                            "-f", "load@remote.test", "-t", "alice@example.com",
                            f"127.0.0.1:{node.port}"], capture_output=True, text=True, timeout=600)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        status = node.spoolctl("status", "--json").stdout
        import json
        st = json.loads(status)
        self.assertEqual(st["messages"], count, status)
        # Bodies: every message is the 2048-byte smtp-source body plus our trace header.
        msgs = node.list_json("--limit", "50")
        digests = set()
        for m in msgs:
            body = node.spoolctl("show", m["id"], "--body").stdout
            payload = body.split("\n\n", 1)[1] if "\n\n" in body else body
            digests.add(hashlib.sha256(payload.encode()).hexdigest())
        self.assertEqual(len(digests), 1, "smtp-source bodies must be stored identically")


if __name__ == "__main__":
    unittest.main(verbosity=2)
