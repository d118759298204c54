"""End-to-end harness: starts the real spoold (and Dovecot, Postfix) on loopback,
talks to them with real clients, and stops every process it started.

Each test gets its own temporary directory; spoold listens on port 0 and the harness
reads the bound port from its `event=listening` log line, then waits for `event=ready`.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.abspath(os.path.join(HERE, "..", ".."))
BUILD_DIR = os.environ.get("SPOOLD_BUILD_DIR", os.path.join(SOURCE_DIR, "build"))
SPOOLD = os.path.join(BUILD_DIR, "spoold")
SPOOLCTL = os.path.join(BUILD_DIR, "spoolctl")
DOVECOT_SCRIPT = os.path.join(SOURCE_DIR, "tests", "support", "dovecot-lmtp.sh")

START_TIMEOUT = 30.0


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def poll_until(predicate, timeout, interval=0.05):
    """Polls `predicate` until it returns a truthy value, which it returns, or `timeout`
    seconds pass: then None (for a test that measures whether it happens at all)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


def wait_for(predicate, timeout, interval=0.05, what="condition"):
    """Polls `predicate` until it returns a truthy value (returned) or fails the test once
    `timeout` seconds pass. The one way a test waits for something to have happened."""
    value = poll_until(predicate, timeout, interval)
    if not value:
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")
    return value


def yaml_value(v, indent):
    pad = "  " * indent
    if isinstance(v, dict):
        lines = []
        for k, x in v.items():
            if isinstance(x, (dict, list)) and x:
                lines.append(f"{pad}{k}:")
                lines.append(yaml_value(x, indent + 1))
            else:
                lines.append(f"{pad}{k}: {yaml_scalar(x)}")
        return "\n".join(lines)
    if isinstance(v, list):
        lines = []
        for x in v:
            if isinstance(x, dict):
                inner = yaml_value(x, indent + 1).lstrip()
                lines.append(f"{pad}- {inner}")
            else:
                lines.append(f"{pad}- {yaml_scalar(x)}")
        return "\n".join(lines)
    return pad + yaml_scalar(v)


def yaml_scalar(x):
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, (int, float)):
        return str(x)
    if isinstance(x, list) and not x:
        return "[]"
    if isinstance(x, dict) and not x:
        return "{}"
    return json.dumps(str(x))


def deep_merge(base, extra):
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


class Spoold:
    """One spoold process with its own spool, config and mailstore directory."""

    def __init__(self, workdir, config=None):
        self.workdir = workdir
        self.spool_dir = os.path.join(workdir, "spool")
        self.maildir = os.path.join(workdir, "mail")
        self.config_path = os.path.join(workdir, "spoold.yaml")
        self.log_path = os.path.join(workdir, "spoold.log")
        base = {
            "hostname": "mx.test",
            "listeners": [{"address": "127.0.0.1", "port": 0}],
            "local_domains": ["example.com", "example.net"],
            "spool": {"path": self.spool_dir},
            "mailstores": [{"name": "default", "kind": "maildir", "maildir_root": self.maildir}],
            "logging": {"level": "info"},
        }
        self.config = deep_merge(base, config or {})
        self.proc = None
        self.port = None
        self.metrics_port = None
        self._lines = []
        self._lock = threading.Lock()

    def write_config(self):
        os.makedirs(self.maildir, exist_ok=True)
        with open(self.config_path, "w") as f:
            f.write(yaml_value(self.config, 0) + "\n")

    def start(self, wait_ready=True):
        self.write_config()
        self._lines = []
        self.port = None
        logf = open(self.log_path, "a")
        self.proc = subprocess.Popen([SPOOLD, "--config", self.config_path],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, errors="replace")
        self._reader = threading.Thread(target=self._read, args=(self.proc, logf), daemon=True)
        self._reader.start()
        if wait_ready:
            wait_for(lambda: self.has_line("event=ready") or self._died(), START_TIMEOUT,
                     what="spoold ready")
            if self.proc.poll() is not None:
                raise AssertionError("spoold exited at start:\n" + self.log_text())
            m = wait_for(lambda: self.find_line(r"event=listening .*port=(\d+)"), 5,
                         what="listening line")
            self.port = int(m.group(1))
            mm = self.find_line(r"event=metrics_listening .*port=(\d+)")
            if mm:
                self.metrics_port = int(mm.group(1))
        return self

    def _died(self):
        return self.proc.poll() is not None

    def _read(self, proc, logf):
        for line in proc.stderr:
            with self._lock:
                self._lines.append(line.rstrip("\n"))
            logf.write(line)
            logf.flush()
        logf.close()
        proc.stderr.close()

    def lines(self):
        with self._lock:
            return list(self._lines)

    def has_line(self, needle):
        return any(needle in l for l in self.lines())

    def find_line(self, pattern):
        rx = re.compile(pattern)
        for l in self.lines():
            m = rx.search(l)
            if m:
                return m
        return None

    def count_lines(self, needle):
        return sum(1 for l in self.lines() if needle in l)

    def log_text(self):
        return "\n".join(self.lines())

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=20):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError("spoold did not stop on SIGTERM within %ss" % timeout)
        self._reader.join(5)
        return self.proc.returncode

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
            self._reader.join(5)

    def spoolctl(self, *args, check=True, input=None):
        cmd = [SPOOLCTL, "--spool", self.spool_dir] + list(args)
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, input=input)
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        return r

    def list_json(self, *filters):
        out = self.spoolctl("list", "--json", *filters).stdout
        return [json.loads(l) for l in out.splitlines() if l.strip()]

    def metric(self, name):
        """The first sample of metric `name` on /metrics (metrics.port must be set)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " ") or line.startswith(name + "{"):
                    return float(line.rsplit(" ", 1)[1])
        return None

    def maildir_files(self, address):
        local, domain = address.split("@", 1)
        new = os.path.join(self.maildir, domain, local, "new")
        if not os.path.isdir(new):
            return []
        return sorted(os.path.join(new, f) for f in os.listdir(new))


def swaks(port, *args, timeout=60, input=None):
    """Runs swaks against 127.0.0.1:port; returns (exit code, transcript)."""
    cmd = ["swaks", "--server", "127.0.0.1", "--port", str(port), "--timeout", "20",
           "--hide-informational"] + list(args)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input,
                       errors="replace")
    return r.returncode, r.stdout + r.stderr


def server_replies(transcript):
    """The reply lines (code and text) swaks received, in order."""
    out = []
    for line in transcript.splitlines():
        m = re.match(r"^\s*<[-~*]{0,2}\s+(\d{3})([ -])(.*)$", line)
        if m and m.group(2) == " ":
            out.append(f"{m.group(1)} {m.group(3)}".strip())
    return out


class SmtpClient:
    """A raw SMTP client for byte-exact tests (smuggling, bare LF, pipelining)."""

    def __init__(self, port, timeout=20):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def reply_line(self):
        """Reads one line of a reply, without its CRLF."""
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed; buffered " + repr(self.buf))
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode(errors="replace")

    def reply(self):
        """Reads one complete (possibly multi-line) reply; returns its last line."""
        while True:
            text = self.reply_line()
            if len(text) < 4 or text[3] != "-":
                return text

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.reply()

    def closed(self, timeout=5):
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (socket.timeout, ConnectionResetError):
            return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class SpooldTestCase(unittest.TestCase):
    """Gives each test a temp dir and stops everything it started."""

    def setUp(self):
        self.workdir = tempfile.mkdtemp(prefix="spoold-e2e-")
        os.chmod(self.workdir, 0o755)  # Dovecot's auth process runs as user dovecot
        self._procs = []
        self._cleanups_run = False
        # unittest skips tearDown when setUp fails (a helper that never got ready); a
        # cleanup still runs then, so what setUp started is stopped on every path.
        self.addCleanup(self.tearDown)

    def tearDown(self):
        if self._cleanups_run:
            return
        self._cleanups_run = True
        for p in reversed(self._procs):
            try:
                p.kill() if hasattr(p, "kill") else None
            except Exception as e:  # report, never hide: the test result shows it
                print("teardown:", e, file=sys.stderr)
        if os.environ.get("SPOOLD_KEEP_TMP") != "1":
            shutil.rmtree(self.workdir, ignore_errors=True)

    def spoold(self, config=None, start=True, subdir="node"):
        d = os.path.join(self.workdir, subdir)
        os.makedirs(d, exist_ok=True)
        s = Spoold(d, config)
        self._procs.append(s)
        if start:
            s.start()
        return s


class Redis:
    """redis-server on a Unix socket in `directory`; nothing persisted, so a restart
    comes back empty (as a Redis that lost its data would)."""

    def __init__(self, directory):
        self.dir = directory
        self.socket = os.path.join(directory, "redis.sock")
        self.proc = None
        os.makedirs(directory, exist_ok=True)

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", "0", "--unixsocket", self.socket, "--save", "",
             "--appendonly", "no", "--dir", self.dir, "--logfile",
             os.path.join(self.dir, "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: self._answers() or self.proc.poll() is not None, 20, what="redis")
        if self.proc.poll() is not None:
            raise AssertionError("redis-server exited at start")
        return self

    def _answers(self):
        r = subprocess.run(["redis-cli", "-s", self.socket, "PING"], capture_output=True,
                           text=True, timeout=10)
        return r.stdout.strip() == "PONG"

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        if os.path.exists(self.socket):
            os.unlink(self.socket)


class Dovecot:
    """A private Dovecot serving LMTP on a loopback port, with Maildirs under its own
    directory (mail/<domain>/<user>/) and a passwd-file user database. Runs as the
    `mail` user's uid so no root-only paths are needed for mail."""

    def __init__(self, workdir, users, quota_full=()):
        self.dir = workdir
        self.users = list(users)
        self.quota_full = set(quota_full)
        self.port = free_port()
        self.proc = None
        os.makedirs(self.dir, exist_ok=True)

    def _write_config(self):
        import pwd
        mail = pwd.getpwnam("mail")
        uid, gid = mail.pw_uid, mail.pw_gid
        for sub in ("run", "state", "mail"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        maildir = os.path.join(self.dir, "mail")
        os.chown(maildir, uid, gid)
        os.chmod(self.dir, 0o755)
        with open(os.path.join(self.dir, "users"), "w") as f:
            for u in self.users:
                extra = "userdb_quota_rule=*:storage=1B" if u in self.quota_full else ""
                f.write(f"{u}:{{PLAIN}}secret:{uid}:{gid}::{maildir}::{extra}\n")
        conf = f"""
base_dir = {self.dir}/run
state_dir = {self.dir}/state
log_path = {self.dir}/dovecot.log
info_log_path = {self.dir}/dovecot.log
protocols = lmtp
listen = 127.0.0.1
ssl = no
first_valid_uid = {uid}
last_valid_uid = 0
first_valid_gid = 0
default_internal_user = dovecot
default_login_user = dovenull
mail_location = maildir:{maildir}/%d/%n
mail_plugins = $mail_plugins quota
lmtp_rcpt_check_quota = yes
passdb {{
  driver = passwd-file
  args = {self.dir}/users
}}
userdb {{
  driver = passwd-file
  args = {self.dir}/users
}}
plugin {{
  quota = maildir:User quota
}}
quota_full_tempfail = yes
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {self.port}
  }}
}}
service anvil {{
  chroot =
}}
"""
        self.conf = os.path.join(self.dir, "dovecot.conf")
        with open(self.conf, "w") as f:
            f.write(conf)

    def start(self):
        if self.proc and self.proc.poll() is None:
            return self
        self._write_config()
        self.proc = subprocess.Popen(["dovecot", "-F", "-c", self.conf],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     start_new_session=True)

        def listening():
            if self.proc.poll() is not None:
                raise AssertionError("dovecot exited: " + self.proc.stderr.read().decode() +
                                     self.log())
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    return s.recv(512).startswith(b"220")
            except OSError:
                return False
        wait_for(listening, 20, what="dovecot lmtp")
        return self

    def log(self):
        try:
            return open(os.path.join(self.dir, "dovecot.log")).read()
        except OSError:
            return ""

    def freeze(self):
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def thaw(self):
        os.killpg(self.proc.pid, signal.SIGCONT)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGCONT)
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None

    kill = stop

    def messages(self, address):
        local, domain = address.split("@", 1)
        out = []
        for sub in ("new", "cur"):
            d = os.path.join(self.dir, "mail", domain, local, sub)
            if os.path.isdir(d):
                out += [os.path.join(d, f) for f in os.listdir(d)]
        return sorted(out)

    @staticmethod
    def header(path, name):
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line in ("\n", "\r\n"):
                    break
                if line.lower().startswith(name.lower() + ":"):
                    return line.split(":", 1)[1].strip()
        return None

    def delivery_order(self):
        """Subjects of every delivered message, in the order Dovecot stored them."""
        entries = []
        for u in self.users:
            for m in self.messages(u):
                base = os.path.basename(m)
                mt = re.match(r"^(\d+)\.M(\d+)P(\d+)", base)
                key = (int(mt.group(1)), int(mt.group(2))) if mt else (0, 0)
                entries.append((key, self.header(m, "Subject")))
        return [s for _, s in sorted(entries)]
