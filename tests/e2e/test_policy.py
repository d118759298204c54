"""Policy end to end: configuration errors and --check-config, SIGHUP reload (keeps
connections and queued mail, refuses a bad file), the recipient directory while the
mailstore is down, and retention: an undeliverable message expires and its DSN
(multipart/report) reaches a test smarthost (Postfix's smtp-sink); the null sender
gets none."""
import email
import email.policy
import glob
import os
import signal
import socket
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (SOURCE_DIR, SPOOLD, SmtpClient, SpooldTestCase, free_port,  # noqa: E402
                     server_replies, swaks, wait_for)


def check_config(path):
    r = subprocess.run([SPOOLD, "--check-config", path], capture_output=True, text=True, timeout=30)
    return r.returncode, (r.stdout + r.stderr).strip()


class ConfigErrors(SpooldTestCase):
    def write(self, text):
        path = os.path.join(self.workdir, "bad.yaml")
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_sample_config_validates(self):
        rc, out = check_config(os.path.join(SOURCE_DIR, "etc", "spoold.yaml"))
        self.assertEqual(rc, 0, out)

    def test_check_config_names_the_keys_a_reload_does_not_apply(self):
        rc, out = check_config(os.path.join(SOURCE_DIR, "etc", "spoold.yaml"))
        self.assertEqual(rc, 0, out)
        note = out.split("note: SIGHUP applies every key but these", 1)[1]
        for key in ("user", "listeners[].port", "listeners[].tls_certificate", "spool.max_size",
                    "mailstores[].host", "bounces.smarthost", "metrics.port", "directory.map_size"):
            self.assertIn(key, note)
        for key in ("limits.", "directory.file", "directory.poll_interval", "rules", "drain.",
                    "classes"):
            self.assertNotIn(key, note)

    def test_each_kind_of_error_names_file_line_and_column(self):
        cases = {
            "unknown key": ("local_domains: [example.com]\nlimits:\n  max_mesage_size: 10MiB\n", ":3:3:"),
            "wrong type": ("local_domains: [example.com]\nlimits:\n  max_recipients: lots\n", ":3:19:"),
            "missing required key": ("hostname: mx.test\n", ":1:1:"),
            "impossible value": ("local_domains: [example.com]\nlisteners:\n  - port: 70000\n", ":3:11:"),
            "bad duration": ("local_domains: [example.com]\nlimits:\n  command_timeout: 5 parsecs\n", ":3:20:"),
        }
        for what, (text, where) in cases.items():
            path = self.write(text)
            rc, out = check_config(path)
            self.assertNotEqual(rc, 0, what)
            self.assertIn(path + where, out, f"{what}: {out}")
            # spoold refuses to start with it too.
            r = subprocess.run([SPOOLD, "--config", path], capture_output=True, text=True, timeout=30)
            self.assertNotEqual(r.returncode, 0, what)
            self.assertIn(where, r.stderr, what)


class ReloadAndDirectory(SpooldTestCase):
    def test_reload_keeps_connections_and_mail_and_refuses_a_bad_file(self):
        directory = os.path.join(self.workdir, "recipients")
        with open(directory, "w") as f:
            f.write("alice@example.com\n")
        node = self.spoold({
            # The mailstore is down throughout: the directory must answer by itself.
            "mailstores": [{"name": "down", "kind": "lmtp", "host": "127.0.0.1", "port": free_port(),
                            "connect_timeout": "1s"}],
            "directory": {"file": directory, "poll_interval": "0s"},
        })
        rc, out = swaks(node.port, "--from", "s@remote.test", "--to", "alice@example.com")
        self.assertEqual(rc, 0, out)
        rc, out = swaks(node.port, "--from", "s@remote.test", "--to", "bob@example.com")
        self.assertIn("550 5.1.1", out)
        # Logged before "ready" when there is no directory; this node has one.
        self.assertFalse(node.has_line("event=no_recipient_directory"))

        # A session in the middle of a transaction survives the reload.
        c = SmtpClient(node.port)
        c.reply()
        c.cmd("EHLO client.test")
        self.assertTrue(c.cmd("MAIL FROM:<s@remote.test>").startswith("250"))
        self.assertTrue(c.cmd("RCPT TO:<alice@example.com>").startswith("250"))

        with open(directory, "a") as f:
            f.write("bob@example.com\n")
        node.config["local_domains"] = ["example.com", "example.net", "example.org"]
        node.write_config()
        node.signal(signal.SIGHUP)
        wait_for(lambda: node.count_lines("event=reloaded") >= 1, 10, what="reload")

        self.assertTrue(c.cmd("DATA").startswith("354"))
        self.assertTrue(c.cmd("Subject: across reload\r\n\r\nbody\r\n.").startswith("250"))
        c.cmd("QUIT")
        c.close()
        rc, out = swaks(node.port, "--from", "s@remote.test", "--to", "bob@example.com")
        self.assertEqual(rc, 0, "reload picked up the new directory entry: " + out)
        self.assertEqual(len(node.list_json()), 3)

        # A broken file is refused and the old configuration stays.
        with open(node.config_path, "a") as f:
            f.write("no_such_key: 1\n")
        node.signal(signal.SIGHUP)
        wait_for(lambda: node.has_line("event=reload_refused"), 10, what="reload refused")
        self.assertIn(":", node.find_line(r"event=reload_refused.*").group(0))
        rc, out = swaks(node.port, "--from", "s@remote.test", "--to", "bob@example.com")
        self.assertEqual(rc, 0, out)
        self.assertEqual(len(node.list_json()), 4)
        self.assertIsNone(node.proc.poll())


class ReloadEveryKey(SpooldTestCase):
    def reload(self, node, n):
        node.write_config()
        node.signal(signal.SIGHUP)
        wait_for(lambda: node.count_lines("event=reloaded") >= n, 10, what=f"reload {n}")

    def test_reload_applies_what_it_can_and_names_what_needs_a_restart(self):
        node = self.spoold({"limits": {"max_recipients": 5}})
        rc, out = swaks(node.port, "--from", "s@remote.test", "--to", "a@example.com,b@example.com")
        self.assertEqual(rc, 0, out)

        # A key a reload applies, and two it cannot: the listener and the metrics port.
        node.config["limits"]["max_recipients"] = 1
        node.config["listeners"] = [{"address": "127.0.0.1", "port": free_port()}]
        node.config["metrics"] = {"address": "127.0.0.1", "port": free_port()}
        self.reload(node, 1)
        self.assertEqual(node.count_lines("event=reload_restart_needed"), 1)
        self.assertTrue(node.has_line('note="restart needed for: listeners[].port, metrics.port"'),
                        node.log_text())
        rc, out = swaks(node.port, "--from", "s@remote.test", "--to", "a@example.com,b@example.com")
        self.assertIn("452 4.5.3", out)  # applied to a new session on the old listener
        with self.assertRaises(ConnectionRefusedError):  # the new ones were not bound
            socket.create_connection(("127.0.0.1", node.config["listeners"][0]["port"]), timeout=5)
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", node.config["metrics"]["port"]), timeout=5)

        # Still different from what runs: said again at the next reload.
        self.reload(node, 2)
        self.assertEqual(node.count_lines("event=reload_restart_needed"), 2)
        # Back to what runs: nothing to say.
        node.config["listeners"] = [{"address": "127.0.0.1", "port": 0}]
        del node.config["metrics"]
        self.reload(node, 3)
        self.assertEqual(node.count_lines("event=reload_restart_needed"), 2)
        self.assertIsNone(node.proc.poll())

    def test_a_reload_turns_the_directory_on_moves_it_and_turns_it_off(self):
        node = self.spoold({"directory": {"poll_interval": "0s"}})

        def verdict(rcpt):
            rc, out = swaks(node.port, "--from", "s@remote.test", "--to", rcpt, "--quit-after", "RCPT")
            replies = server_replies(out)
            return replies[-2][:3] if replies[-1].startswith("221") else replies[-1][:3]

        self.assertEqual(verdict("bob@example.com"), "250")  # no directory: everyone
        first = os.path.join(self.workdir, "first")
        second = os.path.join(self.workdir, "second")
        with open(first, "w") as f:
            f.write("alice@example.com\n")
        with open(second, "w") as f:
            f.write("bob@example.com\n")

        node.config["directory"]["file"] = first
        self.reload(node, 1)
        self.assertEqual(verdict("alice@example.com"), "250")
        self.assertEqual(verdict("bob@example.com"), "550")

        node.config["directory"]["file"] = second
        self.reload(node, 2)
        self.assertEqual(verdict("alice@example.com"), "550")
        self.assertEqual(verdict("bob@example.com"), "250")

        # A directory file that cannot be read is refused with the whole reload.
        node.config["directory"]["file"] = os.path.join(self.workdir, "missing")
        node.config["limits"] = {"max_recipients": 1}
        node.write_config()
        node.signal(signal.SIGHUP)
        wait_for(lambda: node.has_line("event=reload_refused"), 10, what="reload refused")
        self.assertIn("missing", node.find_line(r"event=reload_refused.*").group(0))
        self.assertEqual(verdict("alice@example.com"), "550")
        rc, out = swaks(node.port, "--from", "s@remote.test", "--to", "bob@example.com,bob+x@example.com")
        self.assertEqual(rc, 0, out)  # max_recipients 1 was not applied either

        node.config["directory"]["file"] = ""
        del node.config["limits"]
        self.reload(node, 3)
        self.assertEqual(verdict("alice@example.com"), "250")
        self.assertEqual(verdict("nobody@example.com"), "250")
        self.assertIsNone(node.proc.poll())


class SmtpSink:
    """Postfix's smtp-sink, dumping each message it receives to a file."""

    def __init__(self, workdir):
        self.dir = os.path.join(workdir, "sink")
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o777)
        self.port = free_port()
        self.proc = subprocess.Popen(["smtp-sink", "-u", "nobody", "-d", os.path.join(self.dir, "msg."),
                                      f"127.0.0.1:{self.port}", "32"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def messages(self):
        out = []
        for path in sorted(glob.glob(os.path.join(self.dir, "msg.*"))):
            with open(path, "rb") as f:
                out.append(f.read())
        return out

    def kill(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class DsnTestCase(SpooldTestCase):
    def report_parts(self, raw):
        """The three parts of an RFC 3464 report in smtp-sink's dump of it."""
        # smtp-sink's dump starts with the envelope; the message follows its blank line.
        body = raw[raw.index(b"Received:") if b"Received:" in raw else 0:]
        start = body.find(b"From:")
        msg = email.message_from_bytes(body[body.rfind(b"\n", 0, start) + 1 if start > 0 else 0:],
                                       policy=email.policy.default)
        self.assertEqual(msg.get_content_type(), "multipart/report")
        self.assertEqual(msg.get_param("report-type"), "delivery-status")
        parts = list(msg.iter_parts())
        self.assertEqual(parts[0].get_content_type(), "text/plain")
        self.assertEqual(parts[1].get_content_type(), "message/delivery-status")
        self.assertIn(parts[2].get_content_type(), ("text/rfc822-headers", "message/rfc822"))
        return parts

    def only_report(self, node, sink, why):
        """The parts of the one DSN spoold built, which the sink got, to sender@remote.test."""
        self.assertEqual(node.count_lines("event=dsn id="), 1, why)
        msgs = sink.messages()
        self.assertEqual(len(msgs), 1, why)
        self.assertIn("sender@remote.test", msgs[0].decode("utf-8", "replace"))
        return self.report_parts(msgs[0])


class Retention(DsnTestCase):
    def test_expired_message_bounces_with_a_valid_dsn_and_the_null_sender_gets_none(self):
        sink = SmtpSink(self.workdir)
        self._procs.append(sink)
        node = self.spoold({
            "mailstores": [{"name": "down", "kind": "lmtp", "host": "127.0.0.1", "port": free_port(),
                            "connect_timeout": "1s"}],
            "classes": [{"name": "urgent", "weight": 8, "retention": "2s"},
                        {"name": "normal", "weight": 4, "retention": "2s"},
                        {"name": "bulk", "weight": 1, "retention": "2s"}],
            "bounces": {"smarthost": "127.0.0.1", "smarthost_port": sink.port,
                        "dsn_sender": "MAILER-DAEMON"},
        })
        rc, out = swaks(node.port, "--from", "sender@remote.test", "--to", "alice@example.com",
                        "--header", "Subject: will expire", "--header", "Message-ID: <expire-1@remote.test>")
        self.assertEqual(rc, 0, out)
        c = SmtpClient(node.port)
        c.reply()
        c.cmd("EHLO client.test")
        self.assertTrue(c.cmd("MAIL FROM:<>").startswith("250"))
        self.assertTrue(c.cmd("RCPT TO:<bob@example.com>").startswith("250"))
        c.cmd("DATA")
        self.assertTrue(c.cmd("Subject: a bounce\r\n\r\nnull sender\r\n.").startswith("250"))
        c.close()

        wait_for(lambda: len(sink.messages()) >= 1, 60, interval=0.2, what="DSN at the smarthost")
        wait_for(lambda: node.list_json() == [], 30, what="spool empty")
        # Both messages expired; a DSN is built before its expiry is logged, so every DSN
        # there will ever be has been logged, and with the spool empty, sent.
        wait_for(lambda: node.count_lines("event=expire id=") >= 2, 30, what="both expired")
        parts = self.only_report(node, sink, "exactly one DSN: none for the null sender")
        status = parts[1].as_string()
        self.assertIn("Final-Recipient: rfc822; alice@example.com", status.replace("rfc822;alice", "rfc822; alice"))
        self.assertIn("Action: failed", status)
        self.assertIn("<expire-1@remote.test>", parts[2].as_string())


class DelayWarning(DsnTestCase):
    def test_mail_waiting_for_a_down_mailstore_gets_one_delayed_dsn_per_message(self):
        sink = SmtpSink(self.workdir)
        self._procs.append(sink)
        node = self.spoold({
            "mailstores": [{"name": "down", "kind": "lmtp", "host": "127.0.0.1", "port": free_port(),
                            "connect_timeout": "1s"}],
            "bounces": {"smarthost": "127.0.0.1", "smarthost_port": sink.port,
                        "dsn_sender": "MAILER-DAEMON", "delay_warning": "2s"},
        })

        def send(sender, rcpt, subject, params=""):
            c = SmtpClient(node.port)
            c.reply()
            c.cmd("EHLO client.test")
            self.assertTrue(c.cmd(f"MAIL FROM:<{sender}>").startswith("250"))
            self.assertTrue(c.cmd(f"RCPT TO:<{rcpt}>{params}").startswith("250"))
            c.cmd("DATA")
            self.assertTrue(c.cmd(f"Subject: {subject}\r\n\r\nwaiting\r\n.").startswith("250"))
            c.close()

        send("sender@remote.test", "alice@example.com", "default notify")  # NOTIFY counts as DELAY
        send("sender@remote.test", "bob@example.com", "no delay wanted", " NOTIFY=FAILURE")
        send("", "carol@example.com", "null sender")
        send("last@remote.test", "dave@example.com", "asked for delay", " NOTIFY=DELAY,FAILURE")
        # Queue ids are in arrival order and the warnings walk them in that order: the last
        # message's warning comes after every earlier message was looked at.
        wait_for(lambda: len(sink.messages()) >= 2, 60, interval=0.2, what="two delayed DSNs")
        wait_for(lambda: node.count_lines("event=delay_warning id=") >= 2, 30, what="both logged")
        self.assertEqual(node.count_lines("event=delay_warning id="), 2)
        msgs = sink.messages()
        self.assertEqual(len(msgs), 2, "none for NOTIFY=FAILURE or the null sender")
        seen = set()
        for raw in msgs:
            status = self.report_parts(raw)[1].as_string()
            self.assertIn("Action: delayed", status)
            self.assertIn("Status: 4.", status)
            seen |= {r for r in ("alice@example.com", "dave@example.com") if r in status}
        self.assertEqual(seen, {"alice@example.com", "dave@example.com"})
        # The mail itself stays queued for the mailstore.
        self.assertEqual(len(node.list_json()), 4)
        # No recipient directory here: said at start, since it means backscatter later.
        self.assertTrue(node.has_line("event=no_recipient_directory"))



class SuccessNotify(DsnTestCase):
    def test_notify_success_into_maildir_gets_a_delivered_dsn_at_the_smarthost(self):
        # swaks 20201014 (Debian 12) has no option for RCPT parameters: the client is ours.
        sink = SmtpSink(self.workdir)
        self._procs.append(sink)
        node = self.spoold({
            "bounces": {"smarthost": "127.0.0.1", "smarthost_port": sink.port,
                        "dsn_sender": "MAILER-DAEMON"},
        })
        c = SmtpClient(node.port)
        c.reply()
        c.cmd("EHLO client.test")
        self.assertTrue(c.cmd("MAIL FROM:<sender@remote.test> RET=FULL ENVID=e2e+2Bsuccess").startswith("250"))
        self.assertTrue(c.cmd("RCPT TO:<alice@example.com> NOTIFY=SUCCESS,FAILURE "
                              "ORCPT=rfc822;Alice@example.com").startswith("250"))
        self.assertTrue(c.cmd("RCPT TO:<bob@example.com>").startswith("250"))  # failures only
        c.cmd("DATA")
        self.assertTrue(c.cmd("Subject: tell me\r\nMessage-ID: <success-1@remote.test>\r\n\r\n"
                              "secret body\r\n.").startswith("250"))
        c.close()

        wait_for(lambda: len(sink.messages()) >= 1, 60, interval=0.2, what="DSN at the smarthost")
        # The DSN was spooled in the commit that delivered the message, so once the spool is
        # empty every DSN there will be was built (and logged) and sent.
        wait_for(lambda: node.list_json() == [], 30, what="spool empty")
        self.assertEqual(len(node.maildir_files("alice@example.com")), 1)
        self.assertEqual(len(node.maildir_files("bob@example.com")), 1)
        parts = self.only_report(node, sink, "one DSN, for alice only")
        status = parts[1].as_string()
        self.assertIn("Original-Envelope-Id: e2e+success", status)
        self.assertIn("Original-Recipient: rfc822;Alice@example.com", status)
        self.assertIn("Final-Recipient: rfc822; alice@example.com", status)
        self.assertIn("Action: delivered", status)
        self.assertIn("Status: 2.", status)
        self.assertNotIn("bob@example.com", status)
        # A success report returns the header only, even for RET=FULL.
        self.assertEqual(parts[2].get_content_type(), "text/rfc822-headers")
        self.assertIn("<success-1@remote.test>", parts[2].as_string())
        self.assertNotIn("secret body", parts[2].as_string())


if __name__ == "__main__":
    unittest.main(verbosity=2)
