"""A fleet end to end: two spoold nodes, one real redis-server (on a Unix socket of the
test's own), one mailstore (a fake LMTP server that counts transactions in flight). Both
nodes drain a backlog into the store; the store never sees more than the fleet's
max_concurrency at once, also while Redis is killed (each node falls back to its share:
the limit over the live nodes it last saw) and after Redis is back. Every message is
stored exactly once. `spoolctl fleet status --json` shows both nodes and the totals.

The bound while Redis is down, by arithmetic: when it goes, at most FLEET_LIMIT are in
flight (a_1 + a_2 <= L); after, a node starts a delivery only below its share L / N, so
node i runs at most max(a_i, L / N), and the sum is at most L + (N - 1) * L / N (6 here).
Rejoining, a node keeps to its fallback share for a lease TTL while Redis adopts what runs."""
import json
import os
import signal
import smtplib
import subprocess
import sys
import unittest
import urllib.request
from email.message import EmailMessage

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fake_lmtp import FakeLmtp  # noqa: E402
from harness import SPOOLCTL, SpooldTestCase, free_port, wait_for  # noqa: E402

FLEET_LIMIT = 4          # the store's fleet-wide max_concurrency
SERVICE_S = 0.05         # the fake store keeps each transaction this long
PER_NODE = 200           # messages queued on each node
NODES = ("mx1", "mx2")
# At most FLEET_LIMIT transactions of SERVICE_S each: the store takes at most this many
# messages per second, so after KILL_AT of 2 * PER_NODE the drain has at least
# (2 * PER_NODE - KILL_AT) / MAX_RATE = 3.75 s to go when Redis is killed.
MAX_RATE = FLEET_LIMIT / SERVICE_S
KILL_AT = 100
OUTAGE_BOUND = FLEET_LIMIT + (len(NODES) - 1) * (FLEET_LIMIT // len(NODES))


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


class FleetEndToEnd(SpooldTestCase):
    def setUp(self):
        super().setUp()
        self.store = FakeLmtp(SERVICE_S)
        self._procs.append(self.store)
        self.redis = Redis(os.path.join(self.workdir, "redis")).start()
        self._procs.append(self.redis)

    def node(self, name):
        return self.spoold({
            "hostname": f"{name}.test",
            "mailstores": [{"name": "store", "kind": "lmtp", "host": "127.0.0.1",
                            "port": self.store.port, "connect_timeout": "2s",
                            "command_timeout": "5s", "data_timeout": "5s",
                            "fleet": {"max_concurrency": FLEET_LIMIT}}],
            # Each node alone would run up to 8 at once: only the fleet keeps them to 4.
            "drain": {"initial_concurrency": 8, "max_concurrency": 8},
            "metrics": {"address": "127.0.0.1", "port": free_port()},
            "fleet": {"redis": self.redis.socket, "node": name, "timeout": "1s",
                      "lease_ttl": "4s"},
        }, subdir=name)

    def queue(self, node, name):
        with smtplib.SMTP("127.0.0.1", node.port, timeout=30) as s:
            for i in range(PER_NODE):
                msg = EmailMessage()
                msg["From"] = "sender@remote.test"
                msg["To"] = "alice@example.com"
                msg["Subject"] = f"{name}-{i}"
                msg.set_content(f"message {i} queued on {name}\n")
                s.send_message(msg)

    @staticmethod
    def metric(node, name):
        url = f"http://127.0.0.1:{node.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " ") or line.startswith(name + "{"):
                    return float(line.rsplit(" ", 1)[1])
        return None

    def fleet_status(self, node):
        r = subprocess.run([SPOOLCTL, "--config", node.config_path, "fleet", "status", "--json"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return json.loads(r.stdout)

    def test_two_nodes_share_the_store_limit_through_redis_and_without_it(self):
        nodes = {name: self.node(name) for name in NODES}
        for n in nodes.values():
            n.spoolctl("pause")
        for n in nodes.values():
            wait_for(lambda n=n: n.has_line("event=drain_pause paused=true by=spool"), 20,
                     what="drain paused")
        for name, n in nodes.items():
            self.queue(n, name)
        wait_for(lambda: all(n.has_line("event=fleet_started") for n in nodes.values()), 10,
                 what="fleet started")

        # Each node publishes its backlog with its heartbeat (every second).
        def queued(s):
            return s["totals"]["ready"] + s["totals"]["deferred"]
        status = wait_for(lambda: (s := self.fleet_status(nodes["mx1"]))["totals"]["nodes"] == 2
                          and queued(s) == 2 * PER_NODE and s, 20,
                          what="both nodes and their backlog in the fleet view")
        self.assertEqual(sorted(n["node"] for n in status["nodes"]), list(NODES))
        for n in status["nodes"]:
            self.assertEqual(sum(c["ready"] for c in n["classes"].values()), PER_NODE)

        for n in nodes.values():
            n.spoolctl("resume")
        wait_for(lambda: len(self.store.stored()) >= KILL_AT, 60, what=f"{KILL_AT} stored")
        # A request that missed its deadline on a loaded machine puts a node on its fallback
        # share with Redis still up; then only the outage bound holds for this part too.
        fell_back = any(n.has_line("event=fleet_fallback") for n in nodes.values())
        self.redis.kill()
        fleet_peak = self.store.reset_peak()
        self.assertLessEqual(fleet_peak, OUTAGE_BOUND if fell_back else FLEET_LIMIT,
                             "the fleet's limit, through Redis")
        for n in nodes.values():
            # Found at the next sync: within a renewal (lease_ttl / 3) at the latest.
            wait_for(lambda n=n: n.has_line("event=fleet_fallback"), 20, what="fallback logged")
        self.assertLess(len(self.store.stored()), 2 * PER_NODE, "Redis was killed mid-drain")
        self.redis.start()
        for n in nodes.values():
            wait_for(lambda n=n: n.has_line("event=fleet_rejoined"), 20, what="fleet rejoined")

        wait_for(lambda: len(self.store.stored()) >= 2 * PER_NODE, 60, what="all stored")
        for n in nodes.values():
            wait_for(lambda n=n: n.list_json() == [], 30, what="spool empty")
        stored = self.store.stored()
        expected = sorted(f"{name}-{i}" for name in NODES for i in range(PER_NODE))
        self.assertEqual(sorted(stored), expected, "every message stored exactly once")
        self.assertLessEqual(self.store.peak(), OUTAGE_BOUND, "Redis down, then back")
        requests = sum(self.metric(n, "spoold_fleet_redis_requests_total") for n in nodes.values())
        print(f"peak in flight at the store: {fleet_peak} with Redis (limit {FLEET_LIMIT}), "
              f"{self.store.peak()} from its kill on (bound {OUTAGE_BOUND}); "
              f"Redis requests per stored message: {requests / len(stored):.2f}", file=sys.stderr)
        for n in nodes.values():
            self.assertEqual(n.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
