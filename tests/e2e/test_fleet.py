"""A fleet end to end: three spoold nodes, one real redis-server (on a Unix socket of the
test's own), one mailstore (a fake LMTP server that counts transactions in flight and
records when each began). Every bound is arithmetic on the configuration below and on the
constants of fleet/share.hpp named where used, never a measured guess.

- The store limit: the nodes drain a backlog; the store never sees more than the fleet's
  max_concurrency at once while Redis is up, nor more than the fallback bound while Redis
  is killed and after it is back; every message is stored exactly once; `spoolctl fleet
  status --json` and each node's /status show the three nodes and their backlog.
- A node killed with SIGKILL while it holds the whole budget: its slots go back within its
  lease TTL (plus a renewal period and a request timeout), and the others take them over.
- An urgent message on a node with nothing else is delivered before half of the other
  nodes' bulk (the fleet's urgent reserve).
- The fleet rate limit holds within 10% over a window long enough that the bucket's burst
  and the tokens' lifetime are small against it.
- One probe for the fleet: while the store is down one node probes it, the others do not;
  when its probe succeeds the others hear it well within a second.

The fallback bound: while Redis is down a node starts a delivery only below its share c_i
(logged with event=fleet_fallback), so it runs at most max(a_i, c_i), where a_i is what it
ran when Redis went (sum a_i <= L). The sum is at most L + sum c_i - min c_i (all of L on
the node of the smallest share). Rejoining, a node keeps to c_i for a lease TTL while
Redis adopts what runs. While only some nodes have fallen back (a request that missed its
deadline on a loaded machine), or when some fell back before the others, at most L + the
fallen nodes' shares."""
import json
import os
import re
import smtplib
import subprocess
import sys
import time
import unittest
import urllib.request
from datetime import datetime, timezone
from email.message import EmailMessage

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fake_lmtp import FakeLmtp  # noqa: E402
from harness import (SPOOLCTL, Redis, SpooldTestCase, deep_merge, free_port,  # noqa: E402
                     wait_for)

NODES = ("mx1", "mx2", "mx3")
LEASE_TTL_S = 4.0
TIMEOUT_S = 1.0
RENEWAL_S = LEASE_TTL_S / 3  # fleet/share.cpp: a lease is renewed every lease_ttl / 3
LOCAL_LIMIT = 8              # each node's own drain.max_concurrency

FLEET_LIMIT = 4              # the store's fleet-wide max_concurrency
SERVICE_S = 0.05             # the fake store keeps each transaction this long
PER_NODE = 150               # messages queued on each node
# At most FLEET_LIMIT transactions of SERVICE_S each: the store takes at most this many
# messages per second, so after KILL_AT of 3 * PER_NODE the drain has at least
# (3 * PER_NODE - KILL_AT) / MAX_RATE = 4.4 s to go when Redis is killed.
MAX_RATE = FLEET_LIMIT / SERVICE_S
KILL_AT = 100

# A killed node's lease ends at most LEASE_TTL_S after its last renewal, which came before
# the kill; the next sync of another node (at the latest a renewal later, and a request
# may take TIMEOUT_S) gives its slots back to the pool. Its status expires with it.
TAKEOVER_DEADLINE_S = LEASE_TTL_S + RENEWAL_S + TIMEOUT_S
# Fallen back meanwhile: a retry (fleet/share.hpp kRetryMs), a request, a lease TTL's grace.
REJOIN_S = 0.25 + TIMEOUT_S + LEASE_TTL_S
KILL_SERVICE_S = 0.25
KILL_PER_NODE = 40

URGENT_RESERVE = 1
URGENT_SERVICE_S = 0.1
BULK_PER_NODE = 100          # on each of two nodes; half the bulk is BULK_PER_NODE

FLEET_RATE = 40.0            # the store's fleet-wide max_rate, per second
BURST = max(1, int(FLEET_RATE * 0.1))  # fleet/share.cpp: a tenth of a second's worth
TOKEN_LIFETIME_S = 0.5       # fleet/share.hpp kTokenLifetimeMs: unused tokens go then
RATE_PER_NODE = 120
RATE_SKIP = 10               # deliveries left out at each end of the measured window
# Deliveries beginning in a window of T seconds spent tokens granted within T plus a token
# lifetime, and a GCRA grants at most rate * t + burst + 1 in any t: R (T + 0.5) + 5. That
# is within 10% of R T for T >= (0.5 R + 5) / 0.1 R = 6.25 s; the window is the begin
# times of deliveries RATE_SKIP + 1 ... 3 * RATE_PER_NODE - RATE_SKIP, 8.5 s at R.
MIN_RATE_WINDOW_S = (TOKEN_LIFETIME_S * FLEET_RATE + BURST + 1) / (0.1 * FLEET_RATE)

# The probe: breakers open after PROBE_FAILURES and probe at most PROBE_BACKOFF_S apart.
# A recovery the prober saw is published with its next sync (a request: under
# PROBE_TIMEOUT_S, or the node falls back) and heard by the others at their next health poll
# (fleet/share.hpp kHealthPollMs, 250 ms, and a request): 0.85 s, leaving 0.15 s of the
# issue's second for the other requests a node's Redis loop may be busy with (each about a
# millisecond on loopback), so the fleet's slow start begins together.
PROBE_TIMEOUT_S = 0.3
PROBE_LEASE_TTL_S = 1.2
PROBE_FAILURES = 2
PROBE_BACKOFF_S = 0.5
PROBE_PER_NODE = 20
PROBE_ROUNDS = 3
HEARD_WITHIN_S = 1.0
assert PROBE_TIMEOUT_S + 0.25 + PROBE_TIMEOUT_S < HEARD_WITHIN_S
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z ")  # each log line's UTC time

URGENT_RULES = [{"class": "urgent", "headers": [{"name": "Priority", "regex": "^\\s*urgent"}]},
                {"class": "bulk", "headers": [{"name": "Precedence", "regex": "^\\s*bulk"}]}]


class FleetTestCase(SpooldTestCase):
    def setUp(self):
        super().setUp()
        self.redis = Redis(os.path.join(self.workdir, "redis")).start()
        self._procs.append(self.redis)

    def start_store(self, service_s, port=0):
        self.store = FakeLmtp(service_s, port)
        self._procs.append(self.store)
        self.store_port = self.store.port
        return self.store

    def node(self, name, store_fleet, extra=None):
        config = {
            "hostname": f"{name}.test",
            "mailstores": [{"name": "store", "kind": "lmtp", "host": "127.0.0.1",
                            "port": self.store_port, "connect_timeout": "2s",
                            "command_timeout": "5s", "data_timeout": "5s",
                            "fleet": store_fleet}],
            # Each node alone would run up to 8 at once: only the fleet keeps them lower.
            "drain": {"initial_concurrency": LOCAL_LIMIT, "max_concurrency": LOCAL_LIMIT},
            "metrics": {"address": "127.0.0.1", "port": free_port()},
            "fleet": {"redis": self.redis.socket, "node": name,
                      "timeout": f"{TIMEOUT_S * 1000:.0f}ms",
                      "lease_ttl": f"{LEASE_TTL_S * 1000:.0f}ms"},
        }
        return self.spoold(deep_merge(config, extra or {}), subdir=name)

    def paused_nodes(self, store_fleet, per_node=0, extra=None):
        """Every node started with its drain paused, once the fleet has seen it, and
        `per_node` messages queued on each (subjects NODE-0, NODE-1, ...)."""
        nodes = {name: self.node(name, store_fleet, extra) for name in NODES}
        for n in nodes.values():
            n.spoolctl("pause")
        for n in nodes.values():
            wait_for(lambda n=n: n.has_line("event=drain_pause paused=true by=spool"), 20,
                     what="drain paused")
        wait_for(lambda: all(n.has_line("event=fleet_started") for n in nodes.values()), 10,
                 what="fleet started")
        for name, n in nodes.items():
            self.queue(n, name, per_node)
        return nodes

    @staticmethod
    def queue(node, prefix, count, headers=()):
        with smtplib.SMTP("127.0.0.1", node.port, timeout=30) as s:
            for i in range(count):
                msg = EmailMessage()
                msg["From"] = "sender@remote.test"
                msg["To"] = "alice@example.com"
                msg["Subject"] = f"{prefix}-{i}"
                for name, value in headers:
                    msg[name] = value
                msg.set_content(f"message {i} queued as {prefix}\n")
                s.send_message(msg)

    def fleet_status(self, node):
        r = subprocess.run([SPOOLCTL, "--config", node.config_path, "fleet", "status", "--json"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return json.loads(r.stdout)

    @staticmethod
    def status_doc(node):
        url = f"http://127.0.0.1:{node.metrics_port}/status"
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.loads(r.read().decode())

    @staticmethod
    def store_view(status):
        return next(s for s in status["mailstores"] if s["name"] == "store")

    def slots(self, status):
        """node -> slots it holds of the store's fleet budget (general + reserve)."""
        return {n: h["general"] + h["reserve"] for n, h in self.store_view(status)["slots"].items()}

    @staticmethod
    def fallback_shares(nodes):
        """node -> the largest concurrency share it logged falling back to."""
        shares = {}
        for name, n in nodes.items():
            found = [int(m.group(1)) for l in n.lines()
                     if (m := re.search(r"event=fleet_fallback .*\bconcurrency=(\d+)", l))]
            if found:
                shares[name] = max(found)
        return shares

    @staticmethod
    def fallback_bound(shares, together=True):
        """The most in flight at the store, `shares` being fallback_shares(); `together`:
        every node fell back when Redis went, none before."""
        if len(shares) == len(NODES) and together:
            return FLEET_LIMIT + sum(shares.values()) - min(shares.values())
        return FLEET_LIMIT + sum(shares.values())

    def stop_all(self, nodes):
        for n in nodes.values():
            self.assertEqual(n.stop(), 0)


class StoreLimit(FleetTestCase):
    def test_three_nodes_share_the_store_limit_through_redis_and_without_it(self):
        self.start_store(SERVICE_S)
        nodes = self.paused_nodes({"max_concurrency": FLEET_LIMIT}, PER_NODE)

        # Each node publishes its backlog with its heartbeat (every second).
        def queued(s):
            return s["totals"]["ready"] + s["totals"]["deferred"]
        status = wait_for(lambda: (s := self.fleet_status(nodes["mx1"]))["totals"]["nodes"]
                          == len(NODES) and queued(s) == len(NODES) * PER_NODE and s, 20,
                          what="every node and its backlog in the fleet view")
        self.assertEqual(sorted(n["node"] for n in status["nodes"]), list(NODES))
        for n in status["nodes"]:
            self.assertEqual(sum(c["ready"] for c in n["classes"].values()), PER_NODE)
        # The status page's document carries the same view, as the node last read it.
        page = wait_for(lambda: (f := self.status_doc(nodes["mx2"])["fleet"])
                        and queued(f) == len(NODES) * PER_NODE and f, 20,
                        what="the fleet in mx2's /status")
        self.assertEqual(sorted(n["node"] for n in page["nodes"]), list(NODES))

        for n in nodes.values():
            n.spoolctl("resume")
        wait_for(lambda: len(self.store.stored()) >= KILL_AT, 60, what=f"{KILL_AT} stored")
        # A request that missed its deadline on a loaded machine puts a node on its fallback
        # share with Redis still up; then the partial fallback bound holds for this part.
        early = self.fallback_shares(nodes)
        self.redis.kill()
        fleet_peak = self.store.reset_peak()
        self.assertLessEqual(fleet_peak, self.fallback_bound(early),
                             f"the fleet's limit, through Redis (fallen back: {early})")
        for n in nodes.values():
            # Found at the next sync: within a renewal (lease_ttl / 3) at the latest.
            wait_for(lambda n=n: n.has_line("event=fleet_fallback"), 20, what="fallback logged")
        total = len(NODES) * PER_NODE
        self.assertLess(len(self.store.stored()), total, "Redis was killed mid-drain")
        self.redis.start()
        for n in nodes.values():
            wait_for(lambda n=n: n.has_line("event=fleet_rejoined"), 20, what="fleet rejoined")

        wait_for(lambda: len(self.store.stored()) >= total, 60, what="all stored")
        for n in nodes.values():
            wait_for(lambda n=n: n.list_json() == [], 30, what="spool empty")
        stored = self.store.stored()
        expected = sorted(f"{name}-{i}" for name in NODES for i in range(PER_NODE))
        self.assertEqual(sorted(stored), expected, "every message stored exactly once")
        shares = self.fallback_shares(nodes)
        outage_bound = self.fallback_bound(shares, together=not early)
        self.assertLessEqual(self.store.peak(), outage_bound, f"Redis down, then back: {shares}")
        requests = sum(n.metric("spoold_fleet_redis_requests_total") for n in nodes.values())
        print(f"peak in flight at the store: {fleet_peak} with Redis (limit {FLEET_LIMIT}), "
              f"{self.store.peak()} from its kill on (bound {outage_bound}); "
              f"Redis requests per stored message: {requests / len(stored):.2f}", file=sys.stderr)
        self.stop_all(nodes)


class KilledNode(FleetTestCase):
    def test_a_node_killed_while_holding_the_budget_frees_it_within_the_lease_ttl(self):
        self.start_store(KILL_SERVICE_S)
        nodes = self.paused_nodes({"max_concurrency": FLEET_LIMIT}, KILL_PER_NODE)
        victim = nodes.pop("mx3")
        victim.spoolctl("resume")
        # Alone, mx3 takes the whole budget and fills it.
        wait_for(lambda: self.store.now_in_flight() == FLEET_LIMIT
                 and self.slots(self.fleet_status(victim)).get("mx3") == FLEET_LIMIT, 20,
                 what="mx3 holding and using the whole budget")
        victim.kill()
        killed_at = time.monotonic()
        for n in nodes.values():
            n.spoolctl("resume")
        # Nothing but its lease running out takes a node's slots from it.
        after = self.fleet_status(nodes["mx1"])
        self.assertEqual(self.slots(after).get("mx3"), FLEET_LIMIT, after)

        def taken_over():
            s = self.fleet_status(nodes["mx1"])
            held = self.slots(s)
            return ("mx3" not in held and sum(held.values()) == FLEET_LIMIT
                    and sorted(n["node"] for n in s["nodes"]) == ["mx1", "mx2"]
                    # mx3's transactions ended with its connections (within a service time
                    # of the kill, long before its lease): these are the others'.
                    and self.store.now_in_flight() == FLEET_LIMIT and s)
        status = wait_for(taken_over, TAKEOVER_DEADLINE_S + REJOIN_S,
                          what="the budget taken over")
        took = time.monotonic() - killed_at
        # A node that fell back meanwhile (a request past its deadline) keeps to its
        # fallback share for a lease TTL after it rejoins.
        fallen = self.fallback_shares(nodes)
        self.assertLessEqual(took, TAKEOVER_DEADLINE_S + (REJOIN_S if fallen else 0), fallen)
        self.assertEqual(set(self.slots(status)), {"mx1", "mx2"}, status)
        fallen.update(self.fallback_shares({"mx3": victim}))
        self.assertLessEqual(self.store.peak(), self.fallback_bound(fallen, together=False))
        print(f"mx3 killed holding {FLEET_LIMIT} slots: taken over by mx1 and mx2 after "
              f"{took:.2f} s (lease TTL {LEASE_TTL_S} s, deadline {TAKEOVER_DEADLINE_S:.2f} s)",
              file=sys.stderr)
        self.stop_all(nodes)


class UrgentReserve(FleetTestCase):
    def test_urgent_mail_on_one_node_goes_before_half_the_others_bulk(self):
        self.start_store(URGENT_SERVICE_S)
        nodes = self.paused_nodes({"max_concurrency": FLEET_LIMIT,
                                   "urgent_reserve": URGENT_RESERVE}, 0, {"rules": URGENT_RULES})
        for name in ("mx1", "mx2"):
            self.queue(nodes[name], f"bulk-{name}", BULK_PER_NODE, [("Precedence", "bulk")])
        nodes["mx3"].spoolctl("resume")
        for name in ("mx1", "mx2"):
            nodes[name].spoolctl("resume")
        # Bulk fills every slot but the reserve; from here it stores at most
        # (FLEET_LIMIT - URGENT_RESERVE) / URGENT_SERVICE_S = 30 a second, so half of it
        # takes 3.3 s at least.
        wait_for(lambda: self.store.now_in_flight() == FLEET_LIMIT - URGENT_RESERVE, 20,
                 what="bulk in every general slot")
        self.queue(nodes["mx3"], "urgent", 1, [("Priority", "urgent")])
        wait_for(lambda: "urgent-0" in self.store.stored(), 30, what="the urgent message stored")
        stored = self.store.stored()
        bulk_before = stored.index("urgent-0")
        self.assertLess(bulk_before, BULK_PER_NODE, "before half of the others' bulk")
        self.assertLessEqual(self.store.peak(),
                             self.fallback_bound(self.fallback_shares(nodes), together=False))
        print(f"urgent message on mx3 stored after {bulk_before} of {2 * BULK_PER_NODE} bulk "
              f"messages on mx1 and mx2", file=sys.stderr)
        self.stop_all(nodes)


class RateLimit(FleetTestCase):
    def test_the_fleet_rate_limit_holds_within_ten_percent(self):
        self.start_store(SERVICE_S)
        nodes = self.paused_nodes({"max_rate": FLEET_RATE}, RATE_PER_NODE)
        for n in nodes.values():
            n.spoolctl("resume")
        total = len(NODES) * RATE_PER_NODE
        wait_for(lambda: len(self.store.stored()) >= total, 60, what="all stored")
        starts = sorted(self.store.stored_starts())
        window = starts[RATE_SKIP:total - RATE_SKIP]
        span = window[-1] - window[0]
        rate = (len(window) - 1) / span
        # A node fallen back (a request past its deadline) starts deliveries at its share of
        # the rate, by its own clock, on top of the fleet's.
        extra = sum(FLEET_RATE / len(NODES) for _ in self.fallback_shares(nodes))
        print(f"fleet rate: {rate:.1f}/s over {span:.2f} s ({len(window)} deliveries), "
              f"limit {FLEET_RATE}/s, nodes fallen back: {len(self.fallback_shares(nodes))}",
              file=sys.stderr)
        self.assertGreaterEqual(span, MIN_RATE_WINDOW_S, "a window the burst is small in")
        self.assertLessEqual(rate, 1.1 * FLEET_RATE + extra)
        # Each node could start LOCAL_LIMIT / SERVICE_S = 160 a second: only the fleet's
        # rate holds them back, and it is used.
        self.assertGreaterEqual(rate, 0.9 * FLEET_RATE)
        self.stop_all(nodes)


class FleetProbe(FleetTestCase):
    @staticmethod
    def logged_at(node, needle):
        """Unix time (the log's timestamp) of the first line with `needle`."""
        for line in node.lines():
            if needle in line and (m := LOG_TIME.match(line)):
                return datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f").replace(
                    tzinfo=timezone.utc).timestamp()
        return None

    def test_one_node_probes_the_down_store_for_the_fleet_and_all_hear_it_recover(self):
        self.store_port = free_port()  # nothing listens there yet: the store is down
        drain = {"breaker_failures": PROBE_FAILURES, "breaker_min_backoff": "200ms",
                 "breaker_max_backoff": f"{PROBE_BACKOFF_S * 1000:.0f}ms",
                 "retry_min": "1s", "retry_max": "2s"}
        fleet = {"timeout": f"{PROBE_TIMEOUT_S * 1000:.0f}ms",
                 "lease_ttl": f"{PROBE_LEASE_TTL_S * 1000:.0f}ms"}
        nodes = self.paused_nodes({"max_concurrency": FLEET_LIMIT}, PROBE_PER_NODE,
                                  {"drain": drain, "fleet": fleet})
        for n in nodes.values():
            n.spoolctl("resume")
        for n in nodes.values():
            wait_for(lambda n=n: n.has_line("to=open"), 30, what="breaker open")
        prober = wait_for(lambda: self.store_view(self.fleet_status(nodes["mx1"]))["prober"],
                          10, what="a prober")
        self.assertIn(prober, nodes)
        failed = "event=probe mailstore=store ok=false"
        before = {name: n.count_lines(failed) for name, n in nodes.items()}
        wait_for(lambda: nodes[prober].count_lines(failed) >= before[prober] + PROBE_ROUNDS,
                 PROBE_ROUNDS * (PROBE_BACKOFF_S + 2) + 5, what="the prober's probes")
        probed = {name: n.count_lines(failed) - before[name] for name, n in nodes.items()}
        # A node fallen back (a request past its deadline) probes for itself, by design.
        alone = self.fallback_shares(nodes)
        for name in nodes:
            if name != prober and name not in alone:
                self.assertEqual(probed[name], 0, f"only {prober} probes: {probed}")

        self.start_store(0.01, self.store_port)
        recovered = wait_for(lambda: self.logged_at(nodes[prober],
                                                    "event=probe mailstore=store ok=true"),
                             PROBE_BACKOFF_S + 10, what="the prober's probe succeeding")
        lags = {}
        for name, n in nodes.items():
            if name == prober or name in alone:
                continue
            heard = wait_for(lambda n=n: self.logged_at(n, "ok=true by=fleet"), 10,
                             what=f"{name} hearing the recovery")
            lags[name] = round(heard - recovered, 3)
        print(f"{prober} probed {probed[prober]} times for the fleet, the others {probed}; "
              f"recovery heard after {lags} s (bound {HEARD_WITHIN_S:.2f} s), fallen back: "
              f"{sorted(alone)}", file=sys.stderr)
        for name, lag in lags.items():
            self.assertLessEqual(lag, HEARD_WITHIN_S, name)
        total = len(NODES) * PROBE_PER_NODE
        wait_for(lambda: len(self.store.stored()) >= total, 60, what="all stored")
        expected = sorted(f"{name}-{i}" for name in NODES for i in range(PROBE_PER_NODE))
        self.assertEqual(sorted(self.store.stored()), expected, "every message stored once")
        self.stop_all(nodes)


if __name__ == "__main__":
    unittest.main(verbosity=2)
