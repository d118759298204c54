"""Hostile SMTP clients for test_hostile.py, run as a separate process (so its event
loop does not share a GIL with the well-behaved client that measures latency).

    python3 hostile_driver.py PORT DURATION_S SCALE

Opens about 2,500 * SCALE concurrent connections from 127.0.0.2..127.0.0.9 that
misbehave in the ways listed in KINDS, each worker reconnecting when the server closes
it, until DURATION_S has passed; then closes everything and prints one JSON object of
counters on stdout. Bounded: every worker stops at the deadline, every read has a
timeout. Standard library only.
"""
import asyncio
import json
import os
import random
import resource
import sys
import time

# kind -> concurrent workers at SCALE 1
KINDS = {
    "stall": 1200,        # connect, read the greeting, never send anything
    "garbage": 200,       # random bytes (NUL, 8-bit, stray CR/LF)
    "overlong": 200,      # command lines of 64 KiB and more, no line end for a while
    "rcpt_flood": 200,    # MAIL FROM then hundreds of pipelined RCPTs
    "data_stall": 300,    # DATA, some body, then silence (never the final dot)
    "quit_junk": 200,     # EHLO, QUIT and 64 KiB of pipelined junk after it
    "huge_header": 100,   # DATA then a 1 MiB header line without CRLF, then silence
}
SOURCES = [f"127.0.0.{i}" for i in range(2, 10)]
READ_TIMEOUT = 30.0


class Counters(dict):
    def add(self, key, n=1):
        self[key] = self.get(key, 0) + n


C = Counters()


async def open_conn(port, rng):
    src = rng.choice(SOURCES)
    r, w = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, local_addr=(src, 0), limit=1 << 20), 10)
    C.add("connections")
    return r, w


async def read_reply(r, timeout=READ_TIMEOUT):
    """One complete reply (last line), or None when the server closed."""
    while True:
        line = await asyncio.wait_for(r.readline(), timeout)
        if not line:
            return None
        if len(line) < 4 or line[3:4] != b"-":
            return line.decode(errors="replace").rstrip("\r\n")


async def drain_until_closed(r, deadline, kind):
    """Reads and counts replies until the server closes or the deadline; returns the
    seconds it took and the replies seen."""
    start = time.monotonic()
    seen = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None, seen
        try:
            line = await asyncio.wait_for(r.readline(), left)
        except asyncio.TimeoutError:
            return None, seen
        except (ConnectionError, OSError):
            return time.monotonic() - start, seen
        if not line:
            return time.monotonic() - start, seen
        text = line.decode(errors="replace").rstrip("\r\n")
        seen.append(text)
        if text[:1] == "5":
            C.add(f"{kind}:5xx")
        if text.startswith("421"):
            C.add(f"{kind}:421")
            # Before EHLO there are no enhanced status codes: "421 host Error: timeout".
            if "timeout" in text:
                C.add(f"{kind}:timeout_421")


def close(w):
    try:
        w.close()
    except Exception:  # noqa: BLE001
        pass


async def h_stall(port, rng, deadline):
    r, w = await open_conn(port, rng)
    try:
        greeting = await read_reply(r)
        if greeting and greeting.startswith("421"):
            C.add("stall:refused_421")
            return
        took, _ = await drain_until_closed(r, deadline, "stall")
        if took is not None:
            C.add("stall:closed_by_server")
            C["stall:max_close_s"] = max(C.get("stall:max_close_s", 0), round(took, 2))
    finally:
        close(w)


async def h_garbage(port, rng, deadline):
    r, w = await open_conn(port, rng)
    try:
        await read_reply(r)
        for _ in range(40):
            if time.monotonic() > deadline or r.at_eof():
                break
            w.write(bytes(rng.getrandbits(8) for _ in range(rng.randint(16, 1024))))
            if rng.random() < 0.5:
                w.write(b"\r\n")
            await w.drain()
            C.add("garbage:chunks")
            await asyncio.sleep(0.05)
        await drain_until_closed(r, min(deadline, time.monotonic() + 8), "garbage")
    finally:
        close(w)


async def h_overlong(port, rng, deadline):
    r, w = await open_conn(port, rng)
    try:
        await read_reply(r)
        w.write(b"EHLO overlong.test\r\n")
        line = b"MAIL FROM:<" + b"a" * (64 * 1024)
        for _ in range(16):
            if time.monotonic() > deadline:
                break
            w.write(line)
            await w.drain()
            C.add("overlong:bytes", len(line))
            await asyncio.sleep(0.1)
        w.write(b">\r\nNOOP\r\n")
        await w.drain()
        took, seen = await drain_until_closed(r, min(deadline, time.monotonic() + 8), "overlong")
        C.add("overlong:line_too_long", sum(1 for s in seen if s.startswith("500 5.5.2")))
        C.add("overlong:noop_ok_after", sum(1 for s in seen if s.startswith("250 2.0.0 OK")))
    finally:
        close(w)


async def h_rcpt_flood(port, rng, deadline):
    r, w = await open_conn(port, rng)
    try:
        await read_reply(r)
        w.write(b"EHLO flood.test\r\nMAIL FROM:<evil@hostile.test>\r\n")
        await w.drain()
        n = 0
        for batch in range(3):
            if time.monotonic() > deadline:
                break
            w.write(b"".join(b"RCPT TO:<u%d@example.com>\r\n" % (n + i) for i in range(100)))
            n += 100
            await w.drain()
            await asyncio.sleep(0.2)
        # Never DATA: the envelope is abandoned. Read what came back, then wait to be
        # closed by the command timeout.
        took, seen = await drain_until_closed(r, deadline, "rcpt_flood")
        C.add("rcpt_flood:rcpts_sent", n)
        C.add("rcpt_flood:452_4.5.3", sum(1 for s in seen if s.startswith("452 4.5.3")))
        C.add("rcpt_flood:250_rcpt", sum(1 for s in seen if s.startswith("250 2.1.5")))
    finally:
        close(w)


async def h_data_stall(port, rng, deadline):
    r, w = await open_conn(port, rng)
    try:
        await read_reply(r)
        w.write(b"EHLO stall.test\r\nMAIL FROM:<evil@hostile.test>\r\n"
                b"RCPT TO:<alice@example.com>\r\nDATA\r\n")
        await w.drain()
        w.write(b"Subject: never ends\r\n\r\n" + b"x" * 70 + b"\r\n")
        for _ in range(rng.randint(0, 100)):
            w.write(b"y" * 998 + b"\r\n")
        await w.drain()
        took, seen = await drain_until_closed(r, deadline, "data_stall")
        if took is not None:
            C.add("data_stall:closed_by_server")
            C["data_stall:max_close_s"] = max(C.get("data_stall:max_close_s", 0), round(took, 2))
        C.add("data_stall:354", sum(1 for s in seen if s.startswith("354")))
        C.add("data_stall:250_msg", sum(1 for s in seen if s.startswith("250 2.0.0 OK queued")))
    finally:
        close(w)


async def h_quit_junk(port, rng, deadline):
    r, w = await open_conn(port, rng)
    try:
        await read_reply(r)
        junk = b"".join(rng.choice([b"MAIL FROM:<evil@hostile.test>\r\n",
                                    b"RCPT TO:<alice@example.com>\r\n", b"DATA\r\n",
                                    b"Subject: smuggled\r\n\r\nbody\r\n.\r\n", b"\x00\xff" * 64,
                                    b"NOOP\r\n"]) for _ in range(800))
        w.write(b"EHLO junk.test\r\nQUIT\r\n" + junk[:64 * 1024])
        try:
            await w.drain()
        except (ConnectionError, OSError):
            pass
        took, seen = await drain_until_closed(r, min(deadline, time.monotonic() + 8), "quit_junk")
        replies = [s for s in seen if len(s) >= 4 and s[3] == " "]
        if "221" in [s[:3] for s in replies]:
            C.add("quit_junk:221")
            after = replies[[s[:3] for s in replies].index("221") + 1:]
            C.add("quit_junk:replies_after_221", len(after))
        if took is not None:
            C.add("quit_junk:closed_by_server")
    finally:
        close(w)


async def h_huge_header(port, rng, deadline):
    r, w = await open_conn(port, rng)
    try:
        await read_reply(r)
        w.write(b"EHLO huge.test\r\nMAIL FROM:<evil@hostile.test>\r\n"
                b"RCPT TO:<alice@example.com>\r\nDATA\r\nSubject: ")
        chunk = b"A" * (64 * 1024)
        for _ in range(16):  # 1 MiB header line, no CRLF
            if time.monotonic() > deadline:
                break
            w.write(chunk)
            await w.drain()
            C.add("huge_header:bytes", len(chunk))
            await asyncio.sleep(0.05)
        took, seen = await drain_until_closed(r, deadline, "huge_header")
        if took is not None:
            C.add("huge_header:closed_by_server")
        C.add("huge_header:250_msg", sum(1 for s in seen if s.startswith("250 2.0.0 OK queued")))
    finally:
        close(w)


HANDLERS = {k: globals()["h_" + k] for k in KINDS}


async def worker(kind, port, rng, deadline, start_delay):
    await asyncio.sleep(start_delay)
    while time.monotonic() < deadline:
        try:
            await HANDLERS[kind](port, rng, deadline)
        except asyncio.TimeoutError:
            C.add(f"{kind}:client_timeout")
        except (ConnectionError, OSError) as e:
            C.add(f"{kind}:error:{type(e).__name__}")
        await asyncio.sleep(0.2 + rng.random() * 0.3)


async def main(port, duration, scale):
    rng = random.Random(7)
    deadline = time.monotonic() + duration
    tasks = []
    only = os.environ.get("HOSTILE_KINDS")  # for investigating one kind at a time
    for kind, n in KINDS.items():
        if only and kind not in only.split(","):
            continue
        for i in range(max(1, int(n * scale))):
            tasks.append(asyncio.create_task(
                worker(kind, port, random.Random(rng.random()), deadline, rng.random() * 3.0)))
    C["workers"] = len(tasks)
    await asyncio.wait(tasks, timeout=duration + 15)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    port, duration, scale = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
    t0 = time.monotonic()
    asyncio.run(main(port, duration, scale))
    C["elapsed_s"] = round(time.monotonic() - t0, 1)
    json.dump(C, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")
    sys.stdout.flush()
    os._exit(0)
