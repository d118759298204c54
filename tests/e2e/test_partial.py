"""The store comes back in pieces (issue 16), against a fake LMTP store for exact control:
- a dead shard (30% of the users) answered 451 4.3.0 at RCPT, or after DATA in LMTP's
  per-recipient replies: spoold drains the healthy users with its breaker closed, parks the
  dead shard's mail behind one probe at a time (no attempt counted), and when the shard
  comes back every message arrives exactly once, with no DSN;
- a flapping store (down, up, down ...): each return is tried by the half-open breaker one
  transaction at a time, then at the initial concurrency, never stampeded, and every message
  arrives exactly once;
- a slow store (ten times the normal latency, no errors): the breaker never moves and the
  drain keeps the configured concurrency.
Real Dovecot with some users unable to receive is test_partial_dovecot.py."""
import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fake_lmtp import FakeLmtp  # noqa: E402
from harness import SpooldTestCase, wait_for  # noqa: E402
from support_partial import (CONNECT_TIMEOUT_S, GROUP_PROBE_FAILED,  # noqa: E402
                             breaker_moves, fake_store, send_all, stopped_totals,
                             troubled_left)

USERS = [f"user{i}@example.com" for i in range(20)]
DEAD = USERS[:6]  # 30%
PER_USER = 5
MAX_PER_RECIPIENT = 2
RETRY_MIN_S = 1
INITIAL = 2  # drain.initial_concurrency
# drain/breaker.hpp's BreakerOptions: one delivery in flight while half-open, three
# successes close it (not configurable).
HALF_OPEN_SUCCESSES = 3
NORMAL_SERVICE_S = 0.02  # the fake store's normal time per transaction
# Short backoffs so the test takes seconds; a dead user in flight at most twice at once.
DEAD_SHARD_DRAIN = {"breaker_failures": 3, "breaker_min_backoff": "200ms",
                    "breaker_max_backoff": "1s", "retry_min": f"{RETRY_MIN_S}s",
                    "retry_max": f"{4 * RETRY_MIN_S}s", "initial_concurrency": 4,
                    "max_concurrency": 8, "max_per_recipient": MAX_PER_RECIPIENT}
BREAKER_OPENED = re.compile(r"event=breaker .*to=open")


class PartialOutage(SpooldTestCase):
    def test_dead_shard_waits_behind_a_probe_while_the_rest_drains(self):
        store = FakeLmtp(service_time=0.005)
        self.addCleanup(store.kill)
        store.set_dead(DEAD)
        node = self.spoold(fake_store(store.port, DEAD_SHARD_DRAIN))
        messages = [([u], f"{u.split('@')[0]}-{n}") for n in range(PER_USER) for u in USERS]
        send_all(node.port, messages)
        sent = {subj: rcpts[0] for rcpts, subj in messages}

        healthy = {subj for subj, user in sent.items() if user not in DEAD}
        wait_for(lambda: {subj for _, subj in store.stored_pairs()} >= healthy, 60,
                 what="every healthy user's mail stored while the shard is down")
        wait_for(lambda: len(node.list_json()) == len(sent) - len(healthy), 30,
                 what="only the dead shard's mail left in the spool")
        for row in node.list_json():
            self.assertIn(row["recipients"][0]["address"], DEAD)
            # deferred, or queued for a moment while it is the group's probe
            self.assertIn(row["recipients"][0]["state"], ("deferred", "queued"))
            self.assertEqual(row["recipients"][0]["attempts"], 0, "no attempt counted")
        self.assertFalse(node.find_line(BREAKER_OPENED.pattern), "the breaker stayed closed")
        self.assertTrue(node.has_line("event=mailbox_group_started"))

        # While the shard stays down the group is retried one probe at a time: a dead
        # user's mail reaches the store at most as often as it was in flight at once before
        # its group knew it (max_per_recipient), plus one try per probe.
        wait_for(lambda: node.count_lines(GROUP_PROBE_FAILED) >= 2, 30 * RETRY_MIN_S,
                 what="two failed probes of the dead shard's group")
        store.set_dead([])
        refused = store.refused_count()  # final: nobody is refused from now on

        # The shard is back: the next probe is answered and releases the rest.
        wait_for(lambda: len(store.stored_pairs()) >= len(sent), 60,
                 what="the dead shard's mail delivered once it came back")
        wait_for(lambda: node.list_json() == [], 30, what="spool empty")
        pairs = store.stored_pairs()
        self.assertEqual(sorted(subj for _, subj in pairs), sorted(sent), "each message once")
        for rcpt, subj in pairs:
            self.assertEqual(rcpt, sent[subj])
        self.assertFalse(node.find_line(BREAKER_OPENED.pattern), "the breaker stayed closed")
        self.assertFalse(node.has_line("event=dsn "), "no DSN before retention")
        # Every refusal is logged by now (the spool is empty, so every result is in).
        probes = node.count_lines(GROUP_PROBE_FAILED)
        self.assertLessEqual(refused, len(DEAD) * MAX_PER_RECIPIENT + probes)
        self.assertLess(refused, len(DEAD) * PER_USER)

    def test_dead_shard_after_data_defers_those_recipients_only(self):
        # LMTP answers each recipient after the data: the shard's users get 451 4.3.0 there
        # while the others in the same transaction are stored. Messages for one dead and one
        # healthy user check that the healthy copy is delivered once and never again.
        users, dead = USERS[:10], USERS[:3]
        store = FakeLmtp(service_time=0.005)
        self.addCleanup(store.kill)
        store.set_dead(dead, at="data")
        node = self.spoold(fake_store(store.port, DEAD_SHARD_DRAIN))
        messages = [([u], f"{u.split('@')[0]}-{n}") for n in range(3) for u in users]
        messages += [([d, h], f"pair-{i}") for i, (d, h) in enumerate(zip(dead, users[5:]))]
        send_all(node.port, messages)
        pairs = sorted((r, subj) for rcpts, subj in messages for r in rcpts)
        healthy = {(r, subj) for r, subj in pairs if r not in dead}

        wait_for(lambda: set(store.stored_pairs()) >= healthy, 60,
                 what="every healthy user's mail stored while the shard fails after DATA")
        rows = wait_for(lambda: troubled_left(node, messages, dead), 30,
                        what="only the messages with a dead shard's recipient left in the spool")
        for row in rows:
            for r in row["recipients"]:
                if r["address"] in dead:
                    self.assertIn(r["state"], ("deferred", "queued"))
                    self.assertEqual(r["attempts"], 0, "no attempt counted")
        self.assertTrue(node.has_line("event=mailbox_group_started"))
        wait_for(lambda: node.count_lines(GROUP_PROBE_FAILED) >= 1, 30 * RETRY_MIN_S,
                 what="a failed probe of the dead shard's group")
        self.assertEqual(breaker_moves(node), [], "the breaker stayed closed")

        store.set_dead([])
        refused = store.refused_count()  # final: nobody is refused from now on
        wait_for(lambda: len(store.stored_pairs()) >= len(pairs), 60,
                 what="the dead shard's mail delivered once it came back")
        wait_for(lambda: node.list_json() == [], 30, what="spool empty")
        self.assertEqual(sorted(store.stored_pairs()), pairs, "each recipient's copy once")
        self.assertEqual(breaker_moves(node), [], "the breaker stayed closed")
        self.assertFalse(node.has_line("event=dsn "), "no DSN before retention")
        # As at RCPT: each dead user refused at most max_per_recipient times before its group
        # knew it, then once per probe.
        probes = node.count_lines(GROUP_PROBE_FAILED)
        self.assertLessEqual(refused, len(dead) * MAX_PER_RECIPIENT + probes)
        totals = stopped_totals(node)
        self.assertEqual((totals["delivered"], totals["failed"]), (len(pairs), 0))

    def test_flapping_store_is_not_stampeded_at_each_return(self):
        # Down (421 to everything) until the breaker has opened and a probe has failed, up
        # until a few messages more are stored, three times; down from the start, so the
        # first return meets the whole backlog. After each return the first
        # HALF_OPEN_SUCCESSES transactions run alone (the half-open trial), the next
        # INITIAL ones at most INITIAL at once (slow start), and no message is stored twice:
        # the fake stores atomically with its 250s (see fake_lmtp.py), so a cut transaction
        # stored nothing and every retry is a first delivery.
        users, per_user, cycles = USERS[:8], 10, 3
        store = FakeLmtp(service_time=0.02)
        self.addCleanup(store.kill)
        store.set_down(True)  # the first outage: all the mail is waiting at the first return
        max_backoff_ms = 600
        node = self.spoold(fake_store(store.port, {
            "breaker_failures": 3, "breaker_min_backoff": f"{max_backoff_ms // 2}ms",
            "breaker_max_backoff": f"{max_backoff_ms}ms", "retry_min": "1s", "retry_max": "2s",
            "initial_concurrency": INITIAL, "max_concurrency": 4}))
        messages = [([u], f"{u.split('@')[0]}-{n}") for n in range(per_user) for u in users]
        send_all(node.port, messages)
        # An up phase lasts until this many more are stored: the trial and slow start.
        up_phase = HALF_OPEN_SUCCESSES + INITIAL
        # A probe is at most the longest backoff (plus its connect timeout) after the breaker
        # opened or the last probe failed; ten times that on a loaded machine.
        probe_s = 10 * (max_backoff_ms / 1000 + CONNECT_TIMEOUT_S)
        for cycle in range(1, cycles + 1):
            store.set_down(True)
            wait_for(lambda: breaker_moves(node).count("open") == cycle, 30,
                     what=f"breaker open in outage {cycle}")
            failed = node.count_lines("event=probe mailstore=fake ok=false")
            wait_for(lambda: node.count_lines("event=probe mailstore=fake ok=false") > failed,
                     probe_s, what=f"a failed probe in outage {cycle}")
            self.assertLess(len(store.stored()), len(messages) - up_phase, "mail left to try")
            at_return = len(store.stored())
            store.set_down(False)
            wait_for(lambda: breaker_moves(node).count("closed") == cycle, probe_s,
                     what=f"breaker closed after return {cycle}")
            wait_for(lambda: len(store.stored()) >= at_return + up_phase, 30,
                     what=f"the trial and slow start after return {cycle}")
        wait_for(lambda: len(store.stored()) >= len(messages), 60, what="everything stored")
        wait_for(lambda: node.list_json() == [], 30, what="spool empty")

        self.assertEqual(sorted(store.stored()), sorted(subj for _, subj in messages),
                         "each message exactly once")
        for u in users:
            self.assertEqual(sum(1 for r, _ in store.stored_pairs() if r == u), per_user, u)
        self.assertEqual(breaker_moves(node), ["open", "half-open", "closed"] * cycles)
        for r in range(1, cycles + 1):
            starts = store.in_flight_at_starts(r)
            self.assertEqual(starts[:HALF_OPEN_SUCCESSES], [1] * HALF_OPEN_SUCCESSES,
                             f"return {r}: the half-open trial runs one at a time: {starts}")
            self.assertLessEqual(max(starts[HALF_OPEN_SUCCESSES:up_phase]), INITIAL,
                                 f"return {r}: slow start from initial_concurrency: {starts}")
        self.assertFalse(node.has_line("event=dsn "), "no DSN before retention")
        totals = stopped_totals(node)
        self.assertEqual((totals["delivered"], totals["failed"]), (len(messages), 0))

    def test_slow_store_keeps_its_concurrency(self):
        # Every transaction takes ten times the normal service time and succeeds: latency
        # stays within kLatencyBlowup (4) times the best, so the drain grows to
        # max_concurrency and holds it; nothing is deferred, the breaker never moves.
        max_concurrency = 4
        store = FakeLmtp(service_time=10 * NORMAL_SERVICE_S)
        self.addCleanup(store.kill)
        node = self.spoold(fake_store(store.port, {
            "breaker_failures": 3, "breaker_min_backoff": "200ms", "breaker_max_backoff": "1s",
            "retry_min": "1s", "retry_max": "2s", "initial_concurrency": INITIAL,
            "max_concurrency": max_concurrency}))
        messages = [([u], f"{u.split('@')[0]}-{n}") for n in range(3) for u in USERS[:12]]
        send_all(node.port, messages)
        wait_for(lambda: len(store.stored()) >= len(messages), 60, what="everything stored")
        wait_for(lambda: node.list_json() == [], 30, what="spool empty")
        self.assertEqual(sorted(store.stored()), sorted(subj for _, subj in messages),
                         "each message exactly once")
        self.assertEqual(store.peak(), max_concurrency,
                         "in flight at the store reached max_concurrency and no more")
        self.assertEqual(breaker_moves(node), [], "the breaker never moved")
        self.assertFalse(node.has_line("event=dsn "), "no DSN")
        totals = stopped_totals(node)
        self.assertEqual(totals, {"delivered": len(messages), "deferred": 0, "failed": 0})


if __name__ == "__main__":
    unittest.main()
