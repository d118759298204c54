"""spoolctl end to end: builds real spools with gen_spool (through the spool API) and
drives every verb of the real spoolctl binary, checking text, --json and exit codes.

Standard library only. Binaries come from $SPOOLD_BUILD_DIR (default: <repo>/build).
"""
import ctypes
import email
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
BUILD_DIR = os.environ.get("SPOOLD_BUILD_DIR", os.path.join(SOURCE_DIR, "build"))
SPOOLCTL = os.path.join(BUILD_DIR, "spoolctl")
GEN_SPOOL = os.path.join(BUILD_DIR, "gen_spool")

COUNT = 300
COUNT_REQUEUE = 200


def run(*args, stdin=subprocess.DEVNULL, check=True):
    p = subprocess.run([SPOOLCTL, *args], stdin=stdin, capture_output=True, timeout=120)
    if check and p.returncode != 0:
        raise AssertionError(f"spoolctl {' '.join(args)} exited {p.returncode}: {p.stderr.decode()}")
    return p


def make_spool(tmp, name, count=COUNT, seed=7):
    path = os.path.join(tmp, name)
    subprocess.run([GEN_SPOOL, "--spool", path, "--count", str(count), "--users", "20",
                    "--seed", str(seed), "--deferred", "0.3", "--held", "0.1"],
                   check=True, capture_output=True, timeout=120)
    return path


CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def queue_id_value(text):
    v = 0
    for c in text:
        v = (v << 5) | CROCKFORD.index(c)
    return v


class MdbVal(ctypes.Structure):
    _fields_ = [("mv_size", ctypes.c_size_t), ("mv_data", ctypes.c_void_p)]


def break_index(spool, table, key, delete):
    """Deletes or adds one raw index entry behind the spool's back, through liblmdb
    itself (ctypes), as disk damage or a bug would: the test of `check`."""
    lib = ctypes.CDLL("liblmdb.so.0")
    env, txn, dbi = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_uint()

    def ok(rc, what):
        if rc != 0:
            raise AssertionError(f"{what}: lmdb error {rc}")

    ok(lib.mdb_env_create(ctypes.byref(env)), "mdb_env_create")
    ok(lib.mdb_env_set_maxdbs(env, 32), "mdb_env_set_maxdbs")
    ok(lib.mdb_env_open(env, spool.encode(), 0, 0o600), "mdb_env_open")
    ok(lib.mdb_txn_begin(env, None, 0, ctypes.byref(txn)), "mdb_txn_begin")
    ok(lib.mdb_dbi_open(txn, table.encode(), 0, ctypes.byref(dbi)), "mdb_dbi_open")
    buf = ctypes.create_string_buffer(key, len(key))
    k = MdbVal(len(key), ctypes.cast(buf, ctypes.c_void_p))
    if delete:
        ok(lib.mdb_del(txn, dbi, ctypes.byref(k), None), "mdb_del")
    else:
        v = MdbVal(0, None)
        ok(lib.mdb_put(txn, dbi, ctypes.byref(k), ctypes.byref(v), 0), "mdb_put")
    ok(lib.mdb_txn_commit(txn), "mdb_txn_commit")
    lib.mdb_env_close(env)


class Spoolctl(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="spoolctl-e2e-")
        cls.spool = make_spool(cls.tmp, "main")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def ctl(self, *args, spool=None, **kw):
        return run("--spool", spool or self.spool, *args, **kw)

    def list_json(self, *args, spool=None):
        out = self.ctl("list", "--json", *args, spool=spool).stdout.decode()
        return [json.loads(line) for line in out.splitlines()]

    def status_json(self, spool=None):
        return json.loads(self.ctl("status", "--json", spool=spool).stdout)

    def body(self, qid, spool=None):
        return self.ctl("show", "--body", qid, spool=spool).stdout

    # ---- read verbs ----

    def test_status_counts_every_message_and_agrees_with_a_listing(self):
        st = self.status_json()
        self.assertEqual(st["messages"], COUNT)
        self.assertEqual(sum(c[s]["messages"] for c in st["classes"]
                             for s in ("ready", "deferred", "held")), COUNT)
        self.assertEqual([c["class"] for c in st["classes"]], ["urgent", "normal", "bulk"])
        self.assertFalse(st["paused"])
        self.assertGreater(st["oldest_age_s"], 0)
        rows = self.list_json()
        self.assertEqual(len(rows), COUNT)
        self.assertEqual(sum(r["size"] for r in rows), st["bytes"])
        for c in st["classes"]:
            for s in ("ready", "deferred", "held"):
                n = sum(1 for r in rows if r["class"] == c["class"] and r["state"] == s)
                self.assertEqual(n, c[s]["messages"], f"{c['class']} {s}")
        text = self.ctl("status").stdout.decode()
        self.assertIn(f"messages: {COUNT}", text)
        self.assertIn("urgent", text)

    def test_list_prints_a_table_in_id_order_and_honours_limit(self):
        out = self.ctl("list", "--limit", "10").stdout.decode().splitlines()
        self.assertTrue(out[0].startswith("QUEUE ID"))
        ids = [line.split()[0] for line in out[1:-1]]
        self.assertEqual(len(ids), 10)
        self.assertEqual(ids, sorted(ids))
        self.assertTrue(out[-1].startswith("-- 10 messages"))
        self.assertEqual(len(self.list_json("--limit", "7")), 7)

    def test_filters_select_exactly_the_matching_messages(self):
        rows = self.list_json()

        def pending(r):
            return [x["address"] for x in r["recipients"] if x["state"] in ("queued", "deferred")]

        cases = [
            (("--state", "deferred"), lambda r: r["state"] == "deferred"),
            (("--held",), lambda r: r["state"] == "held"),
            (("--class", "bulk"), lambda r: r["class"] == "bulk"),
            (("--class", "1"), lambda r: r["class_id"] == 1),
            (("--recipient", "user3@example.org"), lambda r: "user3@example.org" in pending(r)),
            (("--recipient", "@example.org"), lambda r: bool(pending(r))),
            (("--recipient", "nobody.example"), lambda r: False),
            (("--sender", "@list5.example"), lambda r: r["sender"].endswith("@list5.example")),
            (("--older-than", "2d"), lambda r: r["age_s"] > 2 * 86400),
            (("--newer-than", "1d"), lambda r: r["age_s"] < 86400),
            (("--min-size", "1500"), lambda r: r["size"] >= 1500),
            (("--class", "urgent", "--state", "ready", "--older-than", "1d"),
             lambda r: r["class"] == "urgent" and r["state"] == "ready" and r["age_s"] > 86400),
        ]
        for args, pred in cases:
            with self.subTest(args=args):
                want = [r["id"] for r in rows if pred(r)]
                got = [r["id"] for r in self.list_json(*args)]
                # Ages move on between the two listings: allow the boundary second.
                if "--older-than" in args or "--newer-than" in args:
                    self.assertLessEqual(len(set(want) ^ set(got)), 1)
                else:
                    self.assertEqual(got, want)
        self.assertTrue(any(pred(r) for r in rows for _, pred in cases[:2]))

    def test_show_prints_envelope_recipients_and_headers(self):
        row = self.list_json("--state", "deferred", "--limit", "1")[0]
        text = self.ctl("show", row["id"]).stdout.decode()
        self.assertIn(f"queue id:    {row['id']}", text)
        self.assertIn("deferred attempts=1", text)
        self.assertIn("last response: 451 4.3.0", text)
        self.assertIn(f"Subject: synthetic message {row['id']}", text)
        self.assertNotIn("spool drain", text.split("Content-Type")[-1])  # headers only
        js = json.loads(self.ctl("show", "--json", row["id"]).stdout)
        self.assertEqual(js["id"], row["id"])
        self.assertIn("Message-ID:", js["headers"])
        body = self.body(row["id"])
        self.assertTrue(body.startswith(b"Received: "))
        self.assertEqual(len(body), row["size"])

    def test_check_passes_on_a_good_spool(self):
        p = self.ctl("check", "--bodies")
        self.assertIn(f"check: {COUNT} messages", p.stdout.decode())
        self.assertIn(": ok", p.stdout.decode())

    def test_check_finds_a_missing_and_a_dangling_ready_index_entry_and_repair_fixes_them(self):
        sp = make_spool(self.tmp, "broken", count=50, seed=41)
        self.assertIn(": ok", self.ctl("check", spool=sp).stdout.decode())
        victim = self.list_json("--state", "ready", "--limit", "1", spool=sp)[0]
        key = bytes([victim["class_id"]]) + queue_id_value(victim["id"]).to_bytes(8, "big")
        break_index(sp, "ready", key, delete=True)
        p = self.ctl("check", spool=sp, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(f"record {victim['id']}: ready but not in the ready index", p.stdout.decode())
        break_index(sp, "ready", key, delete=False)  # put back: clean again
        self.assertEqual(self.ctl("check", spool=sp, check=False).returncode, 0)
        ghost = "0" * 12 + "1"
        break_index(sp, "ready", bytes([1]) + queue_id_value(ghost).to_bytes(8, "big"), delete=False)
        break_index(sp, "ready", key, delete=True)
        p = self.ctl("check", "--json", spool=sp, check=False)
        self.assertEqual(p.returncode, 1)
        report = json.loads(p.stdout)
        self.assertEqual(report["records"], 50)
        self.assertTrue(any(f"{ghost} has no record" in x for x in report["problems"]), report)
        self.assertEqual(len(report["problems"]), 2, report)

        p = self.ctl("check", "--repair", spool=sp)
        out = p.stdout.decode()
        self.assertIn("2 problems", out)
        self.assertIn("repaired:", out)
        self.assertTrue(out.rstrip().endswith(": ok"), out)
        self.assertIn(": ok", self.ctl("check", "--bodies", spool=sp).stdout.decode())
        self.assertEqual(self.status_json(spool=sp)["messages"], 50)  # repair removes nothing
        self.assertIn(victim["id"], [r["id"] for r in self.list_json("--state", "ready", spool=sp)])

    # ---- bad input ----

    def test_wrong_paths_and_bad_input_are_clear_errors(self):
        p = run("--spool", os.path.join(self.tmp, "missing"), "status", check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn(b"not a spool", p.stderr)
        empty = os.path.join(self.tmp, "empty-dir")
        os.makedirs(empty, exist_ok=True)
        p = run("--spool", empty, "list", check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn(b"no data.mdb", p.stderr)
        self.assertFalse(os.path.exists(os.path.join(empty, "data.mdb")))  # nothing created
        for args, code, text in [
            (("frob",), 2, b"unknown verb"),
            (("list", "--older-than", "soon"), 2, b"duration"),
            (("list", "--class", "nosuch"), 2, b"unknown class"),
            (("show", "not-an-id"), 2, b"not a queue id"),
            (("show", "0000000000000"), 1, b"no such message"),
            (("hold",), 2, b"--all"),
            (("export", "--all"), 2, b"--dir"),
        ]:
            with self.subTest(args=args):
                p = self.ctl(*args, check=False)
                self.assertEqual(p.returncode, code, p.stderr)
                self.assertIn(text, p.stderr)
        self.assertEqual(self.status_json()["messages"], COUNT)

    # ---- write verbs, each on its own spool ----

    def test_hold_release_flush_set_class_and_delete(self):
        sp = make_spool(self.tmp, "writes", seed=11)
        ready = self.list_json("--state", "ready", "--limit", "2", spool=sp)
        ids = [r["id"] for r in ready]
        self.assertIn("held 2 messages", self.ctl("hold", *ids, spool=sp).stdout.decode())
        self.assertEqual({r["state"] for r in self.list_json("--held", spool=sp) if r["id"] in ids}, {"held"})
        before_held = len(self.list_json("--held", spool=sp))
        self.ctl("release", *ids, spool=sp)
        self.assertEqual(len(self.list_json("--held", spool=sp)), before_held - 2)

        deferred = len(self.list_json("--state", "deferred", spool=sp))
        self.assertGreater(deferred, 0)
        # Held messages keep their deferred recipients: flush counts them too.
        with_deferred = sum(1 for r in self.list_json(spool=sp)
                            if any(x["state"] == "deferred" for x in r["recipients"]))
        out = self.ctl("flush", "--yes", spool=sp).stdout.decode()
        self.assertIn(f"flushed {with_deferred} messages", out)
        self.assertEqual(self.list_json("--state", "deferred", spool=sp), [])

        n_list5 = len(self.list_json("--sender", "@list5.example", spool=sp))
        self.ctl("set-class", "--yes", "--sender", "@list5.example", "urgent", spool=sp)
        self.assertEqual({r["class"] for r in self.list_json("--sender", "@list5.example", spool=sp)},
                         {"urgent"} if n_list5 else set())
        self.ctl("set-class", ids[0], "bulk", spool=sp)
        self.assertEqual(json.loads(self.ctl("show", "--json", ids[0], spool=sp).stdout)["class"], "bulk")

        victims = self.list_json("--sender", "@list7.example", spool=sp)
        self.assertTrue(victims)
        p = self.ctl("delete", "--sender", "@list7.example", spool=sp, check=False)
        self.assertEqual(p.returncode, 1)  # no terminal, no --yes: refused
        self.assertIn(b"refusing without --yes", p.stderr)
        self.assertEqual(len(self.list_json("--sender", "@list7.example", spool=sp)), len(victims))
        out = self.ctl("delete", "--yes", "--sender", "@list7.example", spool=sp).stdout.decode()
        self.assertIn(f"deleted {len(victims)} message", out)
        self.assertEqual(self.list_json("--sender", "@list7.example", spool=sp), [])
        self.ctl("delete", ids[1], spool=sp)  # by id: no question
        self.assertEqual(self.status_json(spool=sp)["messages"], COUNT - len(victims) - 1)
        self.assertIn(": ok", self.ctl("check", spool=sp).stdout.decode())

    def test_every_write_by_filter_asks_and_without_a_terminal_refuses_unless_yes(self):
        sp = make_spool(self.tmp, "confirm", count=60, seed=13)

        def facts():
            return [(r["id"], r["state"], r["class"], r["expires_ms"],
                     [x["state"] for x in r["recipients"]]) for r in self.list_json(spool=sp)]
        before = facts()
        cases = [
            ("hold", "--older-than", "1h"),
            ("release", "--held"),
            ("delete", "--older-than", "1h"),
            ("flush", "--state", "deferred"),
            ("flush",),  # no filter: every message, so it asks too
            ("set-class", "--older-than", "1h", "bulk"),
        ]
        for args in cases:
            with self.subTest(args=args):
                p = self.ctl(*args, spool=sp, check=False)
                self.assertEqual(p.returncode, 1, p.stderr)
                self.assertIn(f"spoolctl: {args[0]}: refusing without --yes: {args[0]} ".encode(), p.stderr)
                self.assertIn(b"(stdin is not a terminal)", p.stderr)
                self.assertIn(b"nothing changed", p.stderr)
                self.assertEqual(p.stdout, b"")
        self.assertEqual(facts(), before)  # nothing was touched
        # By queue id nothing asks.
        held = [r[0] for r in before if r[1] != "held"][:2]
        self.assertIn("held 2 messages", self.ctl("hold", *held, spool=sp).stdout.decode())

    def test_the_question_counts_what_changes_and_only_yes_on_the_terminal_acts(self):
        sp = make_spool(self.tmp, "terminal", count=80, seed=17)
        rows = self.list_json("--class", "urgent", spool=sp)
        n = sum(1 for r in rows if r["state"] != "held")
        self.assertTrue(0 < n < len(rows))  # some are held already: they are not counted

        def on_terminal(answer, *args):
            master, slave = os.openpty()
            try:
                os.write(master, answer.encode() + b"\n")
                p = subprocess.run([SPOOLCTL, "--spool", sp, *args], stdin=slave, capture_output=True,
                                   timeout=60)
            finally:
                os.close(slave)
                os.close(master)
            return p

        p = on_terminal("n", "hold", "--class", "urgent")
        self.assertEqual(p.returncode, 1)
        self.assertIn(f"hold {n} message{'s' if n != 1 else ''} (".encode(), p.stderr)
        self.assertIn(b"? [y/N]", p.stderr)
        self.assertEqual(len(self.list_json("--held", "--class", "urgent", spool=sp)), len(rows) - n)
        p = on_terminal("y", "hold", "--class", "urgent")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(f"held {n} message".encode(), p.stdout)
        self.assertEqual(len(self.list_json("--held", "--class", "urgent", spool=sp)), len(rows))
        p = on_terminal("y", "set-class", "--class", "urgent", "bulk")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(f"set-class {len(rows)} messages (".encode(), p.stderr)
        self.assertIn(b" to bulk? [y/N]", p.stderr)
        self.assertEqual(self.list_json("--class", "urgent", spool=sp), [])

    def test_requeue_classifies_by_todays_rules_and_recomputes_expiry_from_arrival(self):
        sp = make_spool(self.tmp, "requeue", count=200, seed=19)
        config = os.path.join(self.tmp, "requeue.yaml")
        with open(config, "w") as f:
            f.write(f"""local_domains: [example.org]
spool: {{path: {sp}}}
classes:
  - {{name: urgent, retention: 30d}}
  - {{name: normal, retention: 2d}}
  - {{name: bulk, retention: 1d, on_expiry: hold}}
default_class: bulk
rules:
  - {{class: urgent, sender: "@list5.example"}}
  - {{class: normal, headers: [{{name: Subject, regex: "synthetic message .*[05]$"}}]}}
""")
        retention_ms = {"urgent": 30 * 86400_000, "normal": 2 * 86400_000, "bulk": 86400_000}

        def expected_class(r):
            if r["sender"].endswith("@list5.example"):
                return "urgent"
            return "normal" if r["id"][-1] in "05" else "bulk"

        p = run("--spool", sp, "requeue", "--all", "--yes", check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn(b"--config", p.stderr)

        before = {r["id"]: r for r in self.list_json(spool=sp)}
        self.assertTrue(any(r["state"] == "deferred" for r in before.values()))
        p = run("--config", config, "requeue", "--all", check=False)  # asks, no terminal
        self.assertEqual(p.returncode, 1)
        self.assertIn(f"requeue {COUNT_REQUEUE} messages (".encode(), p.stderr)
        self.assertEqual({r["id"]: r["class"] for r in self.list_json(spool=sp)},
                         {i: r["class"] for i, r in before.items()})
        one = next(r for r in before.values() if r["state"] == "deferred")
        out = run("--config", config, "requeue", one["id"]).stdout.decode()
        self.assertIn("requeued 1 message", out)
        after_one = json.loads(self.ctl("show", "--json", one["id"], spool=sp).stdout)
        self.assertEqual(after_one["class"], expected_class(one))
        self.assertEqual(after_one["state"], "ready")
        classes_now = {r["id"]: r["class"] for r in self.list_json(spool=sp)}

        t0 = int(time.time() * 1000)
        out = run("--config", config, "requeue", "--all", "--yes").stdout.decode()
        t1 = int(time.time() * 1000)
        self.assertIn(f"requeued {COUNT_REQUEUE} messages", out)
        rows = self.list_json(spool=sp)
        self.assertEqual(len(rows), COUNT_REQUEUE)
        for r in rows:
            want = expected_class(before[r["id"]])
            self.assertEqual(r["class"], want, r["id"])
            self.assertEqual(r["expires_ms"], r["arrival_ms"] + retention_ms[want], r["id"])
            self.assertNotEqual(r["state"], "deferred", r["id"])  # tried again now
            self.assertEqual(r["held"], before[r["id"]]["held"], r["id"])  # holds stay
        moved = sum(1 for r in rows if r["class"] != classes_now[r["id"]])
        self.assertIn(f"({moved} to another class, ", out)
        expired = int(out.split(" to another class, ")[1].split()[0])
        self.assertGreaterEqual(expired, sum(1 for r in rows if r["expires_ms"] <= t0))
        self.assertLessEqual(expired, sum(1 for r in rows if r["expires_ms"] <= t1))
        self.assertGreater(expired, 0)
        self.assertIn(": ok", self.ctl("check", spool=sp).stdout.decode())

    def test_set_class_recomputes_expiry_from_arrival_by_the_new_class(self):
        sp = make_spool(self.tmp, "setclass_expiry", count=20, seed=23)
        config = os.path.join(self.tmp, "setclass.yaml")
        with open(config, "w") as f:
            f.write(f"""local_domains: [example.org]
spool: {{path: {sp}}}
classes:
  - {{name: urgent, retention: 30d}}
  - {{name: normal, retention: 2d}}
  - {{name: bulk, retention: 1d}}
""")
        rows = self.list_json(spool=sp)
        first = next(r["id"] for r in rows if r["class"] != "normal")
        second = next(r["id"] for r in rows if r["class"] != "bulk" and r["id"] != first)
        run("--config", config, "set-class", first, "normal")
        run("--config", config, "set-class", second, "bulk")
        one = json.loads(self.ctl("show", "--json", first, spool=sp).stdout)
        self.assertEqual(one["class"], "normal")
        self.assertEqual(one["expires_ms"], one["arrival_ms"] + 2 * 86400_000)
        two = json.loads(self.ctl("show", "--json", second, spool=sp).stdout)
        self.assertEqual(two["class"], "bulk")
        self.assertEqual(two["expires_ms"], two["arrival_ms"] + 86400_000)
        self.assertIn(": ok", self.ctl("check", spool=sp).stdout.decode())

    def test_pause_and_resume_set_the_flags_status_shows(self):
        sp = make_spool(self.tmp, "pause", count=5)
        self.ctl("pause", spool=sp)
        self.assertTrue(self.status_json(spool=sp)["paused"])
        self.assertIn("PAUSED", self.ctl("status", spool=sp).stdout.decode())
        self.ctl("resume", spool=sp)
        self.assertFalse(self.status_json(spool=sp)["paused"])
        self.assertIn("mailstore dovecot", self.ctl("pause", "--mailstore", "dovecot", spool=sp).stdout.decode())

    # ---- export / import ----

    def originals(self, sp):
        """Original bodies by the queue id in their Subject line."""
        out = {}
        for r in self.list_json(spool=sp):
            out[r["id"]] = self.body(r["id"], spool=sp)
        return out

    def test_export_to_eml_and_import_round_trip_preserves_bodies_and_envelope(self):
        src = make_spool(self.tmp, "eml-src", count=40, seed=21)
        dst = make_spool(self.tmp, "eml-dst", count=1, seed=22)
        rows = {r["id"]: r for r in self.list_json(spool=src)}
        bodies = self.originals(src)
        out_dir = os.path.join(self.tmp, "eml-out")
        self.assertIn("exported 40 messages", self.ctl("export", "--all", "--with-envelope", "--dir", out_dir,
                                                          spool=src).stdout.decode())
        self.assertEqual(sorted(os.listdir(out_dir)), sorted(f"{i}.eml" for i in rows))
        with open(os.path.join(out_dir, next(iter(rows)) + ".eml"), "rb") as f:
            self.assertTrue(f.read().startswith(b"X-Spoold-Envelope-From: <"))
        already = {r["id"] for r in self.list_json(spool=dst)}
        self.assertIn("imported 40 messages", self.ctl("import", out_dir, spool=dst).stdout.decode())
        imported = [r for r in self.list_json(spool=dst) if r["id"] not in already]
        self.assertEqual(len(imported), 40)
        for r in imported:
            body = self.body(r["id"], spool=dst)
            orig_id = email.message_from_bytes(body)["Subject"].split()[-1]
            self.assertEqual(body, bodies[orig_id])
            o = rows[orig_id]
            self.assertEqual(r["sender"], o["sender"])
            self.assertEqual(r["class"], o["class"])
            self.assertEqual([x["address"] for x in r["recipients"]],
                             [x["address"] for x in o["recipients"] if x["state"] in ("queued", "deferred")])
        self.assertIn(": ok", self.ctl("check", spool=dst).stdout.decode())

    def test_export_to_mbox_quotes_from_lines_and_import_restores_the_bytes(self):
        src = make_spool(self.tmp, "mbox-src", count=30, seed=31)
        dst = make_spool(self.tmp, "mbox-dst", count=1, seed=32)
        bodies = self.originals(src)
        mbox = os.path.join(self.tmp, "out.mbox")
        self.ctl("export", "--all", "--with-envelope", "--mbox", mbox, spool=src)
        with open(mbox, "rb") as f:
            data = f.read()
        self.assertEqual(data.count(b"\nFrom ") + data.startswith(b"From "), 30)
        self.assertIn(b"\n>From ", data)  # the generator writes body lines starting "From "
        p = self.ctl("export", "--all", "--mbox", mbox, spool=src, check=False)
        self.assertEqual(p.returncode, 1)  # never overwrites
        self.assertIn("imported 30 messages", self.ctl("import", "--mbox", mbox, spool=dst).stdout.decode())
        for r in self.list_json(spool=dst):
            body = self.body(r["id"], spool=dst)
            orig_id = email.message_from_bytes(body)["Subject"].split()[-1]
            if orig_id in bodies:
                self.assertEqual(body, bodies[orig_id])

    def test_import_refuses_messages_without_an_envelope_and_takes_to_from_the_command_line(self):
        sp = make_spool(self.tmp, "import", count=1)
        eml = os.path.join(self.tmp, "plain.eml")
        with open(eml, "wb") as f:
            f.write(b"Subject: hello\nX-Spoold-Envelope-To: <forged@evil.example>\n\nbody line\nFrom me\n")
        p = self.ctl("import", eml, "--from", "a@b.example", spool=sp, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"no recipients", p.stderr)
        p = self.ctl("import", eml, "--class", "urgent", "--from", "<>", "--to", "x@example.org,y@example.org",
                     spool=sp)
        new = [r for r in self.list_json(spool=sp) if r["class"] == "urgent" and r["sender"] == ""]
        self.assertEqual(len(new), 1)
        self.assertEqual([x["address"] for x in new[0]["recipients"]], ["x@example.org", "y@example.org"])
        self.assertEqual(self.body(new[0]["id"], spool=sp),
                         b"Subject: hello\r\nX-Spoold-Envelope-To: <forged@evil.example>\r\n\r\nbody line\r\nFrom me\r\n")
        mbox = os.path.join(self.tmp, "not.mbox")
        with open(mbox, "wb") as f:
            f.write(b"Subject: not an mbox\n\n")
        p = self.ctl("import", "--mbox", mbox, "--to", "x@example.org", spool=sp, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"not an mbox", p.stderr)


if __name__ == "__main__":
    for binary in (SPOOLCTL, GEN_SPOOL):
        if not os.access(binary, os.X_OK):
            print(f"missing {binary}: build it first", file=sys.stderr)
            sys.exit(1)
    unittest.main(verbosity=2)
