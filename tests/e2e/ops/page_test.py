#!/usr/bin/env python3
"""Loads spoold's status page in headless Chromium and checks it rendered the backlog.

    page_test.py URL [--expect CLASS=N ...] [--expect-backlog N] [--min-backlog N]
                     [--screenshot FILE.png]
    page_test.py --fake [...]          against fake_status.py's stand-in (self-test)

URL is the page (e.g. http://127.0.0.1:PORT/). Without --expect* / --min-backlog the
expected numbers are read from URL's ./status just before loading the page, so they
should hold still meanwhile (a daemon with a stopped mailstore, or the stand-in).
--expect CLASS=N checks the class's total (ready + deferred + held) shown in the table.
Exit status 0 when every check passed; the reasons otherwise. Python stdlib only.
"""
import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
from html.parser import HTMLParser

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars",
]
# Virtual time: the page's first poll of ./status and its drawing finish well inside it.
VIRTUAL_TIME_BUDGET_MS = 8000
WINDOW_SIZE = "1280,1100"
CHROMIUM_TIMEOUT_S = 90
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class PageFacts(HTMLParser):
    """Collects what the page shows: data-value of elements with an id, per-class cells,
    the text of the live pill and how many paths each chart drew."""

    def __init__(self):
        super().__init__()
        self.values = {}          # element id -> data-value
        self.classes = {}         # class name -> {field: data-value}
        self.chart_paths = {}     # svg id -> number of shapes and labels drawn
        self.live_text = ""
        self._row_class = None
        self._svg = None
        self._in_live = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a and "data-value" in a:
            self.values[a["id"]] = a["data-value"]
        if tag == "tr":
            self._row_class = a.get("data-class")
        if tag == "td" and self._row_class and "data-field" in a:
            self.classes.setdefault(self._row_class, {})[a["data-field"]] = a.get("data-value")
        if tag == "svg":
            self._svg = a.get("id")
            self.chart_paths.setdefault(self._svg, 0)
        if tag in ("path", "rect", "line", "text") and self._svg:
            self.chart_paths[self._svg] += 1
        self._in_live = a.get("id") == "live"

    def handle_endtag(self, tag):
        if tag == "tr":
            self._row_class = None
        if tag == "svg":
            self._svg = None
        self._in_live = False

    def handle_data(self, data):
        if self._in_live:
            self.live_text += data.strip()


def find_chromium(explicit):
    for candidate in [explicit, "chromium", "chromium-browser", "google-chrome"]:
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    sys.exit("page_test: chromium not found (Debian: apt-get install chromium)")


def run_chromium(chromium, url, extra):
    """One headless run in a throw-away profile; returns stdout."""
    with tempfile.TemporaryDirectory(prefix="spoold-chromium-") as profile:
        cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
               f"--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}", f"--window-size={WINDOW_SIZE}",
               *extra, url]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=CHROMIUM_TIMEOUT_S, check=False)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr.decode(errors="replace")[-4000:])
            sys.exit(f"page_test: chromium exited with {proc.returncode}")
        return proc.stdout.decode(errors="replace")


def expectations_from_status(url):
    status_url = urllib.parse.urljoin(url, "status")
    with urllib.request.urlopen(status_url, timeout=10) as r:
        status = json.load(r)
    per_class = {c["name"]: c["ready"] + c["deferred"] + c["held"] for c in status["classes"]}
    return per_class, status["backlog"]


def check(url, expect, expect_backlog, min_backlog, screenshot, chromium):
    dom = run_chromium(chromium, url, ["--dump-dom"])
    facts = PageFacts()
    facts.feed(dom)
    failures = []

    if facts.live_text != "live":
        failures.append(f"the page did not read ./status (status pill says {facts.live_text!r})")
    for name, want in expect.items():
        shown = facts.classes.get(name, {}).get("total")
        if shown != str(want):
            failures.append(f"class {name}: page shows total {shown!r}, expected {want}")
    backlog = facts.values.get("backlog")
    if expect_backlog is not None and backlog != str(expect_backlog):
        failures.append(f"backlog: page shows {backlog!r}, expected {expect_backlog}")
    if min_backlog is not None and not (backlog and backlog.isdigit() and int(backlog) >= min_backlog):
        failures.append(f"backlog: page shows {backlog!r}, expected at least {min_backlog}")
    for chart in ("chart-backlog", "chart-rates", "chart-breaker"):
        if facts.chart_paths.get(chart, 0) == 0:
            failures.append(f"{chart} drew nothing")

    if screenshot:
        path = pathlib.Path(screenshot).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            path.unlink()
        run_chromium(chromium, url, [f"--screenshot={path}"])
        if not path.exists() or path.read_bytes()[:8] != PNG_SIGNATURE:
            failures.append(f"no PNG screenshot at {path}")
        else:
            print(f"page_test: screenshot {path} ({path.stat().st_size} bytes)")

    print(f"page_test: backlog shown {backlog}, classes "
          + ", ".join(f"{n}={f.get('total')}" for n, f in facts.classes.items()))
    return failures


def parse_expect(items):
    out = {}
    for item in items:
        name, sep, value = item.rpartition("=")
        if not sep or not name or not value.isdigit():
            sys.exit(f"page_test: --expect wants CLASS=N, got {item!r}")
        out[name] = int(value)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("url", nargs="?", help="the status page, e.g. http://127.0.0.1:PORT/")
    ap.add_argument("--fake", action="store_true", help="serve fake_status.py's stand-in and test it")
    ap.add_argument("--expect", action="append", default=[], metavar="CLASS=N")
    ap.add_argument("--expect-backlog", type=int)
    ap.add_argument("--min-backlog", type=int)
    ap.add_argument("--screenshot", metavar="FILE.png")
    ap.add_argument("--chromium", default=os.environ.get("CHROMIUM"))
    args = ap.parse_args()
    if bool(args.url) == args.fake:
        ap.error("give either a URL or --fake")
    chromium = find_chromium(args.chromium)

    server = None
    url = args.url
    if args.fake:
        sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
        import fake_status  # noqa: E402 (next to this file, only needed here)
        server, url = fake_status.start()

    try:
        expect = parse_expect(args.expect)
        expect_backlog = args.expect_backlog
        if not expect and expect_backlog is None and args.min_backlog is None:
            expect, expect_backlog = expectations_from_status(url)
        failures = check(url, expect, expect_backlog, args.min_backlog, args.screenshot, chromium)
    finally:
        if server:
            server.shutdown()

    for f in failures:
        print(f"page_test: FAIL {f}", file=sys.stderr)
    if failures:
        sys.exit(1)
    print("page_test: ok")


if __name__ == "__main__":
    main()
