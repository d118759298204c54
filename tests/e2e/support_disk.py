"""Helpers for the full-disk and hostile-client e2e tests (standard library only).

SmallFs: a filesystem of fixed size made by the test itself: a tmpfs (`mount -t tmpfs
-o size=...`), else a loop-mounted ext4 image (dd + mkfs.ext4 + mount -o loop). Both
need root; when neither works the test is skipped with the reason.

MailSender: one SMTP session at a time over a raw socket, sending numbered messages
with a Message-ID and recording the reply at each step, so a test can tell exactly
which messages got 250 and what every refusal was.
"""
import hashlib
import os
import re
import socket
import subprocess
import unittest

from harness import wait_for


def _run(cmd, timeout=60):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


class SmallFs:
    """A fixed-size filesystem mounted at `mountpoint`. Use mount() in setUp (it raises
    unittest.SkipTest when no kind can be mounted) and umount() in teardown."""

    def __init__(self, mountpoint, size_mib, image_dir=None):
        self.mountpoint = mountpoint
        self.size_mib = int(size_mib)
        self.image_dir = image_dir or os.path.dirname(mountpoint)
        self.kind = None
        self.image = None
        self.mounted = False

    def mount(self):
        os.makedirs(self.mountpoint, exist_ok=True)
        reasons = []
        if os.geteuid() != 0:
            raise unittest.SkipTest("full-disk tests need root to mount a small filesystem")
        if os.environ.get("SPOOLD_SMALLFS") != "ext4":  # ext4: try the fallback directly
            r = _run(["mount", "-t", "tmpfs", "-o", f"size={self.size_mib}m,mode=0755", "tmpfs",
                      self.mountpoint])
            if r.returncode == 0:
                self.kind, self.mounted = "tmpfs", True
                return self
            reasons.append("tmpfs: " + (r.stderr or r.stdout).strip())
        self.image = os.path.join(self.image_dir, f"fs-{os.getpid()}-{id(self)}.img")
        steps = [["dd", "if=/dev/zero", f"of={self.image}", "bs=1M", f"count={self.size_mib}"],
                 ["mkfs.ext4", "-q", "-F", "-m", "0", self.image],
                 ["mount", "-o", "loop", self.image, self.mountpoint]]
        for cmd in steps:
            try:
                r = _run(cmd)
            except (OSError, subprocess.TimeoutExpired) as e:
                reasons.append(f"{cmd[0]}: {e}")
                break
            if r.returncode != 0:
                reasons.append(f"{cmd[0]}: " + (r.stderr or r.stdout).strip())
                break
        else:
            self.kind, self.mounted = "ext4-loop", True
            os.chmod(self.mountpoint, 0o755)
            return self
        self._remove_image()
        raise unittest.SkipTest("cannot mount a small filesystem: " + "; ".join(reasons))

    def free_bytes(self):
        st = os.statvfs(self.mountpoint)
        return st.f_bavail * st.f_frsize

    def fill(self, name, leave_free_bytes=0, max_bytes=None):
        """Writes a filler file until only `leave_free_bytes` are left (or ENOSPC, or
        `max_bytes` written). Returns its path and size."""
        path = os.path.join(self.mountpoint, name)
        written = 0
        chunk = b"\0" * (1 << 20)
        with open(path, "wb") as f:
            while True:
                room = self.free_bytes() - leave_free_bytes
                if max_bytes is not None:
                    room = min(room, max_bytes - written)
                if room <= 0:
                    break
                try:
                    n = f.write(chunk[:min(len(chunk), room)])
                    f.flush()
                except OSError:
                    break
                written += n
        return path, os.path.getsize(path)

    def umount(self):
        if self.mounted:
            # A process we stopped may still hold a file for a moment: retry, then detach.
            try:
                wait_for(lambda: _run(["umount", self.mountpoint]).returncode == 0, 5,
                         interval=0.25, what=f"umount {self.mountpoint}")
            except AssertionError:
                _run(["umount", "-l", self.mountpoint])
            self.mounted = False
        self._remove_image()

    def _remove_image(self):
        if self.image and os.path.exists(self.image):
            os.unlink(self.image)
        self.image = None


def body_for(n, size):
    """A deterministic body of about `size` bytes, CRLF lines, no leading dots."""
    line = f"message {n} " + "z" * 60
    lines = []
    total = 0
    i = 0
    while total < size:
        s = f"{i:06d} {line}"
        lines.append(s)
        total += len(s) + 2
        i += 1
    return "\r\n".join(lines) + "\r\n"


def digest(text):
    return hashlib.sha256(text.replace("\r\n", "\n").rstrip("\n").encode()).hexdigest()


class MailSender:
    """Sends messages one at a time over a reused SMTP session; reconnects when the
    server closed it. Each send() returns (stage, reply): stage is where the last reply
    came from ("connect", "mail", "rcpt", "data", "end") and reply its last line."""

    def __init__(self, port, rcpt, prefix="m", timeout=30):
        self.port = port
        self.rcpt = rcpt
        self.prefix = prefix
        self.timeout = timeout
        self.sock = None
        self.buf = b""
        self.acked = {}      # Message-ID -> (queue id, body digest)
        self.sent = {}       # Message-ID -> body digest, for every message tried
        self.refusals = []   # (Message-ID, stage, reply)
        self.seq = 0

    def _connect(self):
        self.close()
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
        self.buf = b""
        greeting = self._reply()
        if not greeting.startswith("220"):
            raise ConnectionError("greeting " + greeting)
        r = self._cmd("EHLO sender.test")
        if not r.startswith("250"):
            raise ConnectionError("EHLO " + r)

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode(errors="replace")

    def _reply(self):
        while True:
            t = self._line()
            if len(t) < 4 or t[3] != "-":
                return t

    def _cmd(self, line):
        self.sock.sendall(line.encode() + b"\r\n")
        return self._reply()

    def message(self, n, size):
        mid = f"<{self.prefix}-{n}@sender.test>"
        body = body_for(n, size)
        head = (f"From: sender@sender.test\r\nTo: {self.rcpt}\r\nSubject: {self.prefix} {n}\r\n"
                f"Message-ID: {mid}\r\n\r\n")
        return mid, head, body

    def send(self, size):
        self.seq += 1
        mid, head, body = self.message(self.seq, size)
        self.sent[mid] = digest(body)
        stage = "connect"
        try:
            if self.sock is None:
                self._connect()
            stage = "mail"
            r = self._cmd("MAIL FROM:<sender@sender.test>")
            if r.startswith("250"):
                stage = "rcpt"
                r = self._cmd(f"RCPT TO:<{self.rcpt}>")
            if r.startswith("250"):
                stage = "data"
                r = self._cmd("DATA")
            if r.startswith("354"):
                stage = "end"
                self.sock.sendall((head + body + ".\r\n").encode())
                r = self._reply()
            if r.startswith("250") and stage == "end":
                m = re.search(r"queued as (\S+)", r)
                self.acked[mid] = (m.group(1) if m else None, digest(body))
            else:
                self.refusals.append((mid, stage, r))
                if r.startswith("421"):
                    self.close()
                elif stage in ("mail", "rcpt", "data"):
                    self._cmd("RSET")
        except (OSError, ConnectionError) as e:
            r = f"--- {type(e).__name__}: {e}"
            self.refusals.append((mid, stage, r))
            self.close()
        return stage, r

    def close(self):
        if self.sock is not None:
            try:
                self.sock.sendall(b"QUIT\r\n")
            except OSError:
                pass
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None


def exported_messages(node, outdir):
    """Exports the whole spool with spoolctl into `outdir`; returns
    {Message-ID: (queue id, body digest)}."""
    os.makedirs(outdir, exist_ok=True)
    node.spoolctl("export", "--all", "--dir", outdir)
    out = {}
    for name in os.listdir(outdir):
        if not name.endswith(".eml"):
            continue
        with open(os.path.join(outdir, name), "rb") as f:
            text = f.read().decode(errors="replace")
        out[message_id(text)] = (name[:-4], body_digest(text))
    return out


def message_id(text):
    m = re.search(r"^Message-ID:\s*(\S+)", text, re.M | re.I)
    return m.group(1) if m else None


def body_digest(text):
    text = text.replace("\r\n", "\n")
    parts = text.split("\n\n", 1)
    return digest(parts[1] if len(parts) == 2 else "")


def vm_status(pid):
    """VmRSS and VmHWM of a process in bytes."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                k, v = line.split(":", 1)
                out[k] = int(v.split()[0]) * 1024
    return out
