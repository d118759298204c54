"""The bash completion of spoolctl (etc/bash-completion/spoolctl) driven by real bash over
a real spool built with gen_spool: verbs, options, --state values, class names and queue
ids come out as spoolctl itself reports them. That the completion's lists match the verb
table is the unit test tests/unit/tools/completion_test.cpp.

Standard library only. Binaries come from $SPOOLD_BUILD_DIR (default: <repo>/build).
"""
import json
import os
import shutil
import subprocess
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
BUILD_DIR = os.environ.get("SPOOLD_BUILD_DIR", os.path.join(SOURCE_DIR, "build"))
SPOOLCTL = os.path.join(BUILD_DIR, "spoolctl")
GEN_SPOOL = os.path.join(BUILD_DIR, "gen_spool")
COMPLETION = os.path.join(SOURCE_DIR, "etc", "bash-completion", "spoolctl")

COUNT = 300  # below the 1000 ids the completion lists, so every id is offered


class Completion(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="spoolctl-completion-")
        cls.spool = os.path.join(cls.tmp, "spool")
        subprocess.run([GEN_SPOOL, "--spool", cls.spool, "--count", str(COUNT), "--users", "20",
                        "--seed", "3"], check=True, capture_output=True, timeout=120)
        out = subprocess.run([SPOOLCTL, "--spool", cls.spool, "list", "--json"], check=True,
                             capture_output=True, timeout=120).stdout.decode()
        cls.ids = [json.loads(line)["id"] for line in out.splitlines()]

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def complete(self, *words):
        """What bash offers for the last word of `spoolctl WORDS...`."""
        script = ('source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _spoolctl; '
                  'printf "%s\\n" "${COMPREPLY[@]}"')
        p = subprocess.run(["/bin/bash", "--norc", "-c", script, "complete", COMPLETION,
                            SPOOLCTL, *words], capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        return sorted(w for w in p.stdout.decode().splitlines() if w)

    def test_verbs_are_offered_first_and_after_the_global_options(self):
        verbs = ["check", "delete", "export", "fleet", "flush", "help", "hold", "import", "list", "pause",
                 "release", "requeue", "resume", "set-class", "show", "status", "xfer"]
        self.assertEqual(self.complete(""), verbs)
        self.assertEqual(self.complete("--spool", self.spool, "s"), ["set-class", "show", "status"])

    def test_each_verb_is_offered_its_own_options(self):
        self.assertEqual(self.complete("--spool", self.spool, "delete", "--y"), ["--yes"])
        self.assertEqual(self.complete("--spool", self.spool, "list", "--no"), ["--no-header"])
        self.assertEqual(self.complete("--spool", self.spool, "status", "--"),
                         ["--config", "--help", "--json", "--spool"])

    def test_values_come_from_the_spool(self):
        self.assertEqual(self.complete("--spool", self.spool, "list", "--state", "d"),
                         ["deferred"])
        self.assertEqual(self.complete("--spool", self.spool, "hold", "--class", ""),
                         ["bulk", "normal", "urgent"])
        self.assertEqual(len(self.ids), COUNT)
        self.assertEqual(self.complete("--spool", self.spool, "show", ""), sorted(self.ids))
        prefix = self.ids[0][:-1]
        self.assertEqual(self.complete("--spool", self.spool, "show", prefix),
                         sorted(i for i in self.ids if i.startswith(prefix)))


if __name__ == "__main__":
    unittest.main()
