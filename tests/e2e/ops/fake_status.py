#!/usr/bin/env python3
"""A stand-in for spoold's ops endpoint: serves daemon/http/page.html at / and a made-up
/status document (an outage an hour long: the breaker open, a backlog growing, then a
recovery), so page_test.py can be tried without a daemon. Python stdlib only.

    python3 fake_status.py [--port 0] [--empty]   prints "listening PORT URL", serves until killed

--empty serves a daemon just started: classes at zero, no history, nothing draining.
"""
import argparse
import json
import math
import pathlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PAGE = pathlib.Path(__file__).resolve().parents[3] / "daemon" / "http" / "page.html"
INTERVAL_MS = 5000
SAMPLES = 720

# What the page must show; page_test.py --fake checks these numbers.
CLASSES = [
    {"name": "urgent", "ready": 1234, "deferred": 56, "held": 0, "bytes": 48_300_000},
    {"name": "normal", "ready": 45678, "deferred": 2100, "held": 7, "bytes": 1_950_000_000},
    {"name": "bulk", "ready": 210987, "deferred": 0, "held": 120, "bytes": 9_100_000_000},
]


def make_empty_status(now_ms=None):
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    return {
        "version": "0.1.0-fake", "now_ms": now_ms, "uptime_s": 3, "paused": True,
        "classes": [dict(c, ready=0, deferred=0, held=0, bytes=0) for c in CLASSES],
        "total_messages": 0, "backlog": 0, "total_bytes": 0, "oldest_age_s": 0,
        "mailstores": [{"name": "dovecot-a", "breaker": "open", "breaker_level": 2,
                        "concurrency_limit": 0, "in_flight": 0, "rate": 0}],
        "ingest_rate": 0, "drain_rate": 0, "drain_eta_s": None, "history": [],
    }


def make_status(now_ms=None):
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    history = []
    final = {c["name"]: c["ready"] + c["deferred"] for c in CLASSES}
    for i in range(SAMPLES):
        t = now_ms - (SAMPLES - 1 - i) * INTERVAL_MS
        f = i / (SAMPLES - 1)
        # Mailstore down for the first 70 % (backlog grows), half-open briefly, then draining.
        if f < 0.70:
            grow, breaker, drain = f / 0.70 * 1.15, 2, 0.0
        elif f < 0.75:
            grow, breaker, drain = 1.15, 1, 20.0
        else:
            grow, breaker, drain = 1.15 - (f - 0.75) / 0.25 * 0.15, 0, 180.0 + 20 * math.sin(i / 9)
        history.append({
            "t": t,
            "backlog": {n: int(v * grow) for n, v in final.items()},
            "ingest": round(75 + 25 * math.sin(i / 25), 2),
            "drain": round(drain, 2),
            "breaker": breaker,
        })
    backlog = sum(final.values())
    total = sum(c["ready"] + c["deferred"] + c["held"] for c in CLASSES)
    drain_rate = 181.5
    return {
        "version": "0.1.0-fake",
        "now_ms": now_ms,
        "uptime_s": 86400 * 2 + 3600 * 5,
        "paused": False,
        "classes": CLASSES,
        "total_messages": total,
        "backlog": backlog,
        "total_bytes": sum(c["bytes"] for c in CLASSES),
        "oldest_age_s": 3 * 3600 + 1200,
        "mailstores": [
            {"name": "dovecot-a", "breaker": "closed", "breaker_level": 0,
             "concurrency_limit": 32, "in_flight": 29, "rate": 120.5},
            {"name": "dovecot-b", "breaker": "half-open", "breaker_level": 1,
             "concurrency_limit": 1, "in_flight": 1, "rate": 61.0},
        ],
        "ingest_rate": 74.2,
        "drain_rate": drain_rate,
        "drain_eta_s": backlog / drain_rate,
        "history": history,
    }


class Handler(BaseHTTPRequestHandler):
    empty = False

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/":
            self.reply(200, "text/html; charset=utf-8", PAGE.read_bytes())
        elif path == "/status":
            self.reply(200, "application/json", json.dumps(make_empty_status() if self.empty else make_status()).encode())
        else:
            self.reply(404, "text/plain", b"not found\n")

    def reply(self, code, ctype, body):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def start(port=0, empty=False):
    """Starts the stand-in on 127.0.0.1 in a thread; returns (server, base URL)."""
    handler = type("StandIn", (Handler,), {"empty": empty})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--empty", action="store_true")
    args = ap.parse_args()
    server, url = start(args.port, args.empty)
    print(f"listening {server.server_address[1]} {url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.shutdown()


if __name__ == "__main__":
    main()
