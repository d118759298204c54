"""The store comes back in pieces, with a real Dovecot: two of six users cannot receive (their
mail directories belong to root, mode 0555, so Dovecot answers their copy after DATA with
`451 4.2.0 <user> Internal error occurred`). spoold delivers everyone else's mail at once
with its breaker closed, keeps the broken users' mail without counting an attempt, and once
their directories are fixed delivers it exactly once, with no DSN."""
import os
import pwd
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Dovecot, SpooldTestCase, wait_for  # noqa: E402
from support_partial import (GROUP_PROBE_FAILED, breaker_moves, send_all,  # noqa: E402
                             stopped_totals, troubled_left)

USERS = [f"user{i}@example.com" for i in range(6)]
BROKEN = USERS[:2]
PER_USER = 4
RETRY_MIN_S = 1
RETRY_MAX_S = 2


class PartialDovecot(SpooldTestCase):
    def test_users_dovecot_cannot_store_for_get_their_mail_once_when_fixed(self):
        dovecot = Dovecot(os.path.join(self.workdir, "dovecot"), USERS)
        self._procs.append(dovecot)
        mail = pwd.getpwnam("mail")
        domain_dir = os.path.join(dovecot.dir, "mail", "example.com")
        os.makedirs(domain_dir)
        os.chown(domain_dir, mail.pw_uid, mail.pw_gid)
        broken_dirs = []
        for user in BROKEN:
            d = os.path.join(domain_dir, user.split("@")[0])
            os.makedirs(d)
            os.chmod(d, 0o555)  # root's: Dovecot (as `mail`) cannot create cur/new/tmp
            broken_dirs.append(d)
        dovecot.start()
        node = self.spoold({
            "mailstores": [{"name": "dovecot", "kind": "lmtp", "host": "127.0.0.1",
                            "port": dovecot.port, "connect_timeout": "1s",
                            "command_timeout": "5s", "data_timeout": "5s"}],
            "drain": {"breaker_failures": 3, "breaker_min_backoff": "200ms",
                      "breaker_max_backoff": "1s", "retry_min": f"{RETRY_MIN_S}s",
                      "retry_max": f"{RETRY_MAX_S}s", "initial_concurrency": 2,
                      "max_concurrency": 4},
        })
        messages = [([u], f"{u.split('@')[0]}-{n}") for n in range(PER_USER) for u in USERS]
        # One copy for a broken user and one for a healthy user in the same transaction.
        messages += [([b, h], f"pair-{i}") for i, (b, h) in enumerate(zip(BROKEN, USERS[2:]))]
        send_all(node.port, messages)
        expected = {u: sorted(subj for rcpts, subj in messages if u in rcpts) for u in USERS}

        def subjects(user):
            return sorted(dovecot.header(m, "Subject") for m in dovecot.messages(user))

        healthy = [u for u in USERS if u not in BROKEN]
        wait_for(lambda: all(subjects(u) == expected[u] for u in healthy), 60,
                 what="every healthy user's mail in Dovecot while the others are broken")
        rows = wait_for(lambda: troubled_left(node, messages, BROKEN), 30,
                        what="only mail with a broken user's copy left in the spool")
        for row in rows:
            for r in row["recipients"]:
                if r["address"] in BROKEN:
                    self.assertIn(r["state"], ("deferred", "queued"))
                    self.assertEqual(r["attempts"], 0, "no attempt counted")
        for user in BROKEN:
            self.assertEqual(dovecot.messages(user), [])
        self.assertTrue(node.find_line(r"event=mailbox_group_started .*451 4\.2\.0"))
        wait_for(lambda: node.count_lines(GROUP_PROBE_FAILED) >= 1, 30 * RETRY_MAX_S,
                 what="a failed probe of the broken users' group")
        self.assertEqual(breaker_moves(node), [], "the breaker stayed closed")

        for d in broken_dirs:  # fixed: the directories are the mail user's again
            os.chown(d, mail.pw_uid, mail.pw_gid)
            os.chmod(d, 0o700)
        # The group's next probe is at most retry_max away; its success releases the rest.
        wait_for(lambda: all(len(dovecot.messages(u)) >= len(expected[u]) for u in BROKEN),
                 30 * RETRY_MAX_S, what="the broken users' mail delivered once they are fixed")
        wait_for(lambda: node.list_json() == [], 30, what="spool empty")
        for user in USERS:
            self.assertEqual(subjects(user), expected[user], f"{user}: each message once")
        self.assertTrue(node.has_line("event=mailbox_group_probe ok=true"))
        self.assertEqual(breaker_moves(node), [], "the breaker stayed closed")
        self.assertFalse(node.has_line("event=dsn "), "no DSN before retention")
        totals = stopped_totals(node)
        copies = sum(len(rcpts) for rcpts, _ in messages)
        self.assertEqual((totals["delivered"], totals["failed"]), (copies, 0))


if __name__ == "__main__":
    unittest.main(verbosity=2)
