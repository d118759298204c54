"""Helpers for the partial-recovery e2e tests (issue 16; standard library only): submitting
one-subject messages, a fake LMTP store's spoold configuration, and what spoold's log says
of its breaker and its drain's totals."""
import re
import smtplib
from email.message import EmailMessage

GROUP_PROBE_FAILED = "event=mailbox_group_probe ok=false"
BREAKER_TO = re.compile(r"event=breaker .*\bto=(\S+)")
CONNECT_TIMEOUT_S = 1  # the fake store's connect_timeout (fake_store)
DRAIN_STOPPED = re.compile(r"event=drain_stopped delivered=(\d+) deferred=(\d+) failed=(\d+)")


def send_all(port, messages):
    """Submits (recipients, subject) pairs over SMTP, one message each."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        for rcpts, subject in messages:
            msg = EmailMessage()
            msg["From"] = "sender@remote.test"
            msg["To"] = ", ".join(rcpts)
            msg["Subject"] = subject
            msg.set_content(f"{subject}\n")
            s.send_message(msg)


def fake_store(port, drain):
    """spoold's configuration for one fake LMTP store with these drain settings."""
    return {"mailstores": [{"name": "fake", "kind": "lmtp", "host": "127.0.0.1", "port": port,
                            "connect_timeout": f"{CONNECT_TIMEOUT_S}s", "command_timeout": "5s",
                            "data_timeout": "5s"}],
            "drain": drain}


def breaker_moves(node):
    """The states the breaker moved to, in order."""
    return [m.group(1) for m in map(BREAKER_TO.search, node.lines()) if m]


def stopped_totals(node):
    """Stops spoold; its drain's delivered, deferred and failed recipients over the run."""
    node.stop()
    m = node.find_line(DRAIN_STOPPED.pattern)
    assert m, "no drain_stopped line"
    return {"delivered": int(m.group(1)), "deferred": int(m.group(2)), "failed": int(m.group(3))}


def troubled_left(node, messages, troubled):
    """The spool's rows once every copy but the troubled users' is recorded delivered and only
    the messages with a troubled recipient are left (None until then; for wait_for)."""
    waiting = sum(1 for rcpts, _ in messages if set(rcpts) & set(troubled))
    rows = node.list_json()
    done = all(r["state"] == "delivered" for row in rows for r in row["recipients"]
               if r["address"] not in troubled)
    return rows if done and len(rows) == waiting else None
