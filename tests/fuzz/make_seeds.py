#!/usr/bin/env python3
# Writes the seed corpora under tests/fuzz/corpus/ (committed; rerun after changing a format).
# Seeds are realistic inputs in each target's input layout; the fuzzer mutates from there.
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
ROOT = os.path.dirname(os.path.dirname(HERE))


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# ---- SMTP session: 8 control bytes (seed of splits and intake verdicts), then the client.
def session(name, control, transcript):
    write("fuzz_smtp_session", name, struct.pack("<Q", control) + transcript.encode("utf-8"))


ENVELOPE = "EHLO client.example\r\nMAIL FROM:<sender@origin.example>\r\nRCPT TO:<user@example.com>\r\n"
BODY = "From: a@origin.example\r\nTo: user@example.com\r\nSubject: hi\r\n\r\nHello\r\n"

session("plain", 1, ENVELOPE + "DATA\r\n" + BODY + ".\r\nQUIT\r\n")
session("pipelined", 2, "EHLO c\r\nMAIL FROM:<a@b.example> SIZE=120\r\nRCPT TO:<x@example.com>\r\n"
        "RCPT TO:<y@example.com>\r\nRCPT TO:<unknown@example.com>\r\nDATA\r\n" + BODY + ".\r\n"
        "MAIL FROM:<>\r\nRCPT TO:<postmaster@example.com>\r\nRSET\r\nNOOP\r\nQUIT\r\n")
session("smuggle_lf_dot_lf", 3, ENVELOPE + "DATA\r\n" + BODY + "\n.\nMAIL FROM:<evil@x.example>\r\n"
        "RCPT TO:<victim@example.com>\r\nDATA\r\nforged\r\n.\r\n.\r\nQUIT\r\n")
session("smuggle_cr_dot_cr", 4, ENVELOPE + "DATA\r\n" + BODY + "\r.\rMAIL FROM:<e@x.example>\r\n.\r\nQUIT\r\n")
session("smuggle_mixed", 5, ENVELOPE + "DATA\r\n" + BODY + "\r\n.\nRCPT TO:<z@example.com>\r\n\n.\r\n"
        "..dotstuffed\r\n.\r\nQUIT\r\n")
session("bdat", 6, ENVELOPE + "BDAT 20\r\nSubject: chunked\r\n\r\nBDAT 9 LAST\r\nbody.\r\n\r\n"
        "MAIL FROM:<a@b.example>\r\nRCPT TO:<user@example.com>\r\nBDAT 0 LAST\r\nQUIT\r\n")
session("bdat_bad", 7, "EHLO c\r\nBDAT 5\r\nhello MAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.com>\r\n"
        "BDAT 99999999999999999999 LAST\r\nBDAT 3\r\na\nbBDAT -1\r\nDATA\r\n.\r\nQUIT\r\n")
session("starttls", 8, "EHLO c\r\nSTARTTLS\r\nEHLO c\r\nSTARTTLS\r\n" + ENVELOPE[len("EHLO client.example\r\n"):]
        + "DATA\r\n" + BODY + ".\r\nQUIT\r\n")
session("helo_garbage", 9, "HELO c\r\n\x00\x01\xff junk\r\nmail from:<A@B.EXAMPLE>\r\nrcpt to:<Postmaster>\r\n"
        "data\r\n\r\n.\r\n" + "X" * 700 + "\r\nVRFY u\r\nEXPN l\r\nHELP\r\nquit\r\nafter quit\r\n")
session("dsn_utf8", 10, "EHLO c\r\nMAIL FROM:<s@origin.example> RET=HDRS ENVID=id+2B1 BODY=8BITMIME SMTPUTF8\r\n"
        "RCPT TO:<user@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;user+40example.com\r\n"
        "RCPT TO:<δοκιμή@example.com> NOTIFY=NEVER ORCPT=utf-8;δοκιμή@example.com\r\n"
        "DATA\r\nSubject: ü\r\n\r\n.\r\nQUIT\r\n")
session("errors", 11, "EHLO\r\nMAIL FROM:<a@b.example>\r\nMAIL FROM:a@b\r\nRCPT TO:<>\r\nDATA\r\n"
        "MAIL FROM:<a@b.example> SIZE=999999999999\r\nMAIL FROM:<a@b.example> FOO=BAR\r\n"
        "RCPT TO:<a@other.example>\r\nRCPT TO:<temp@example.com>\r\nBDAT 1\r\nx" * 2)
session("long_data", 12, ENVELOPE + "DATA\r\n" + ("line " * 300 + "\r\n") * 4 + ".\r\nQUIT\r\n")

# ---- addresses: one options byte (1 allow null, 2 allow UTF-8, 4 allow Postmaster), then text.
for i, (opts, text) in enumerate([
    (0, "<user@example.com>"),
    (1, "<> SIZE=100 BODY=8BITMIME"),
    (0, "<\"quoted local\\\"part\"@example.com> RET=FULL ENVID=abc+2Bdef"),
    (0, "<@relay1.example,@relay2.example:user@example.com>"),
    (4, "<Postmaster>"),
    (0, "<user@[192.0.2.1]>"),
    (0, "<user@[IPv6:2001:db8::1]>"),
    (2, "<δοκιμή@παράδειγμα.δοκιμή> SMTPUTF8"),
    (2, "utf-8;δοκιμή@example.com"),
    (0, "rfc822;user+40example.com"),
    (0, "SUCCESS,FAILURE,DELAY"),
    (0, "NEVER"),
    (0, "<user@example.com> NOTIFY=SUCCESS ORCPT=rfc822;a+40b.example"),
    (3, "<a.b-c+tag@sub-domain.example.com>"),
    (0, "<user@[IPv6:2001:db8::\x001]>"),  # was accepted: inet_pton stopped at the NUL
]):
    write("fuzz_address", "seed%02d" % i, bytes([opts]) + text.encode("utf-8"))

# ---- headers: 2 bytes of scan bound selector, then sender NUL recipients NUL client NUL message.
def headers(name, bound, sender, rcpts, client, message):
    write("fuzz_header_scan", name, struct.pack(">H", bound) + b"\0".join(
        [sender.encode(), rcpts.encode(), client.encode(), message.encode("utf-8")]))


headers("urgent", 0x8000, "boss@example.com", "user@example.com", "192.0.2.7",
        "From: Boss <boss@example.com>\r\nPriority: urgent\r\nSubject: now\r\n\r\nbody\r\n")
headers("bulk_list", 0x8000, "list@lists.example.com", "noc@example.com,a@example.com", "2001:db8:1::5",
        "List-Id: <news.lists.example.com>\r\nList-Unsubscribe: <mailto:u@x>\r\nPrecedence:  bulk \r\n\r\n")
headers("folded", 0x8000, "", "user@example.com", "[203.0.113.5]",
        "Subject: a\r\n very\r\n\tlong\r\n  folded line\r\nX-Priority: 1 (Highest)\r\n"
        "Importance: high\r\nAuto-Submitted: auto-replied\r\n\r\n")
headers("bare_lf_cut", 0x0040, "alerts@monitoring.example.com", "x@example.net", "192.0.2.200",
        "From: a\nSubject: aaabbbc123\n continued\nno colon line\n : empty name\nBad Name: x\nTo: y\n\n")
# Values past the classifier's 4 KiB match cap, and enough bytes that libFuzzer's length
# limit (the largest seed) lets mutations reach them.
headers("long_values", 0x8000, "a@example.org", "b@example.com", "198.51.100.1",
        "Subject: " + "ab" * 2100 + "c1\r\nPriority: " + "x" * 3000 + "\r\n urgent\r\n"
        "Precedence: bulk" + " " * 4200 + "\r\n\r\n")
headers("garbage", 0x0100, "a", "b", "not an ip", "\x01\x02: \x7f\r\n\r\r\n\tcontinuation first\r\nX:\r\n")

# ---- spool record v1 (see spool/record.hpp), written by a tiny encoder.
def s(b):
    b = b.encode("utf-8") if isinstance(b, str) else b
    return struct.pack(">I", len(b)) + b


def record(ident, arrival, klass, state, due, expires, flags, held, size, body_ref, strings, rcpts):
    out = struct.pack(">BQqBBqqIBQQ", 1, ident, arrival, klass, state, due, expires, flags, held, size, body_ref)
    out += b"".join(s(x) for x in strings)
    out += struct.pack(">I", len(rcpts))
    for address, orcpt, notify, rstate, next_attempt, attempts, last in rcpts:
        out += s(address) + s(orcpt) + struct.pack(">BBqI", notify, rstate, next_attempt, attempts) + s(last)
    return out


STRINGS = ["sender@origin.example", "SIZE=120 BODY=8BITMIME", "HDRS", "id-1", "192.0.2.7", "client.example",
           "TLSv1.3 cipher=TLS_AES_256_GCM_SHA384"]
T = 1_700_000_000_000
write("fuzz_record", "ready_one_rcpt", record(0x1234567, T, 1, 0, 0, T + 86400000, 0, 0, 2048, 7, STRINGS,
                                            [("user@example.com", "rfc822;user@example.com", 6, 0, 0, 0, "")]))
write("fuzz_record", "deferred_two_rcpts", record(
    0x1234568, T, 0, 1, T + 60000, 0, 4, 0, 100, 8, ["", "", "", "", "2001:db8::1", "h", ""],
    [("a@example.com", "", 0, 1, T + 60000, 3, "451 4.2.0 try later"),
     ("b@example.com", "", 1, 2, 0, 1, "250 2.0.0 ok")]))
write("fuzz_record", "held_expired", record(0x99, T, 2, 2, 0, T, 8, 1, 1, 9, STRINGS,
                                          [("c@example.com", "", 0, 4, 0, 9, "expired")]))
write("fuzz_record", "build_mode", b"\xff" + bytes(range(200)))

# ---- config: the sample file and a few small ones.
write("fuzz_config", "minimal.yaml", "local_domains: [example.com]\n")
write("fuzz_config", "rules.yaml", """local_domains: [example.com, example.net]
classes:
  - {name: urgent, weight: 8, retention: 7d, on_expiry: bounce}
  - {name: normal, weight: 4}
  - {name: bulk, weight: 1, retention: 2d, on_expiry: discard}
default_class: normal
rules:
  - class: urgent
    sender: ["alerts@example.com", "@monitoring.example.com"]
    client_net: [192.0.2.0/24, "2001:db8:1::/48"]
  - class: bulk
    size_over: 20MiB
    headers:
      - {name: Precedence, regex: "^\\\\s*(bulk|list)"}
limits: {max_message_size: 10MiB, max_line_length: 1KiB}
""")
write("fuzz_config", "bad.yaml", "local_domains: [example.com\nclasses: {name: x}\n  - : :\n")
shutil.copy(os.path.join(ROOT, "etc", "spoold.yaml"), os.path.join(CORPUS, "fuzz_config", "spoold.yaml"))


# ---- milter: one byte cutting the stream into reads, then what a filter writes.
def milter_packet(code, data=b""):
    return struct.pack("!I", len(data) + 1) + code + data


def milter(name, cut, packets):
    write("fuzz_milter_reply", name, bytes([cut]) + b"".join(packets))


milter("negotiation", 0, [milter_packet(b"O", struct.pack("!III", 6, 0x1FF, 0x1000)
                                        + struct.pack("!I", 1) + b"{tls_version} j\0")])
milter("continue_accept", 3, [milter_packet(b"c"), milter_packet(b"p"), milter_packet(b"a")])
milter("refusals", 7, [milter_packet(b"r"), milter_packet(b"t"), milter_packet(b"d"),
                       milter_packet(b"4"), milter_packet(b"f"), milter_packet(b"s")])
milter("reply_code", 5, [milter_packet(b"y", b"554 5.7.1 Gtube pattern\0"),
                         milter_packet(b"y", b"451-4.7.1 one\r\n451 4.7.1 two\0")])
milter("headers", 11, [milter_packet(b"h", b"X-Spamd-Result\0default: False\0"),
                       milter_packet(b"i", struct.pack("!I", 0) + b"Received\0by rspamd\0"),
                       milter_packet(b"m", struct.pack("!I", 1) + b"Subject\0\0"),
                       milter_packet(b"a")])
milter("envelope", 2, [milter_packet(b"q", b"spam\0"), milter_packet(b"+", b"<a@b.example>\0"),
                       milter_packet(b"2", b"<a@b.example>\0NOTIFY=NEVER\0"),
                       milter_packet(b"-", b"<c@d.example>\0"),
                       milter_packet(b"e", b"<>\0SIZE=10\0"), milter_packet(b"b", b"body"),
                       milter_packet(b"a")])
milter("oversized", 1, [struct.pack("!I", 0xFFFFFFFF) + b"c"])

# ---- PROXY protocol: the first bytes of a connection.
V2_SIG = b"\r\n\r\n\0\r\nQUIT\n"
write("fuzz_proxy_header", "v1_tcp4", "PROXY TCP4 192.0.2.1 198.51.100.7 54321 25\r\nEHLO x\r\n")
write("fuzz_proxy_header", "v1_tcp6", "PROXY TCP6 2001:db8::5 ::1 40000 2525\r\n")
write("fuzz_proxy_header", "v1_unknown", "PROXY UNKNOWN\r\n")
write("fuzz_proxy_header", "v2_tcp4", V2_SIG + bytes([0x21, 0x11]) + struct.pack("!H", 12)
      + bytes([192, 0, 2, 1, 198, 51, 100, 7]) + struct.pack("!HH", 54321, 25) + b"EHLO x\r\n")
write("fuzz_proxy_header", "v2_tcp6_tlv", V2_SIG + bytes([0x21, 0x21]) + struct.pack("!H", 36 + 7)
      + bytes(15) + b"\x05" + bytes(15) + b"\x01" + struct.pack("!HH", 40000, 2525)
      + b"\x01\x00\x04" + b"smtp")
write("fuzz_proxy_header", "v2_local", V2_SIG + bytes([0x20, 0x00]) + struct.pack("!H", 0))
# ---- the drain's reply parser: 8 control bytes (seed of the splits), then the server's bytes.
def server(target, name, control, text):
    write(target, name, struct.pack("<Q", control) + (text.encode("utf-8") if isinstance(text, str) else text))


EHLO = ("250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n"
        "250-ENHANCEDSTATUSCODES\r\n250-STARTTLS\r\n250 SMTPUTF8\r\n")
server("fuzz_reply_parser", "ehlo", 1, "220 mx.example.com ESMTP\r\n" + EHLO)
server("fuzz_reply_parser", "lmtp_per_rcpt", 2, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n"
       "354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 <a@example.com> Saved\r\n"
       "452 4.2.2 <b@example.com> Mailbox is full\r\n")
server("fuzz_reply_parser", "bare_lf_and_codes", 3, "250-first\n250-2.0.0 second\n250 2.0.0 2.0.0 x\n"
       "421 4.3.2 shutting down\r\n550 5.1.1\r\n250\r\n")
# A line of exactly kMaxReplyLineBytes (2048) before its CR LF, and one over it.
server("fuzz_reply_parser", "longest_line", 4, "250 " + "a" * 2044 + "\r\n" + "250 " + "b" * 2045 + "\r\n")
server("fuzz_reply_parser", "endless_multiline", 5, "250-x\r\n" * 300 + "250 end\r\n")
server("fuzz_reply_parser", "garbage", 6, b"\x00\xff 250 \r\n25\r\n999 no\r\n250-a\r\n451 b\r\n")

# ---- the client session against a hostile server: control bytes, then the server's bytes.
server("fuzz_client_session", "lmtp_ok", 1, "220 lmtp.example.com LMTP ready\r\n" + EHLO
       + "250 2.1.0 Ok\r\n" + "250 2.1.5 Ok\r\n" * 4 + "354 go\r\n" + "250 2.0.0 Saved\r\n" * 4
       + "250 2.0.0 Ok\r\n" * 8 + "221 2.0.0 Bye\r\n")
server("fuzz_client_session", "smtp_no_pipelining", 2, "220 relay ESMTP\r\n250-relay\r\n250 8BITMIME\r\n"
       "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 no such user\r\n250 2.1.5 Ok\r\n354 go\r\n"
       "250 2.0.0 queued\r\n250 2.0.0 Ok\r\n" * 2 + "221 Bye\r\n")
server("fuzz_client_session", "starttls", 3, "220 relay\r\n" + EHLO + "220 2.0.0 Ready to start TLS\r\n" + EHLO
       + "250 Ok\r\n250 Ok\r\n354 go\r\n250 Ok\r\n")
server("fuzz_client_session", "trouble", 4, "220 ready\r\n250 ok\r\n250 2.1.0 Ok\r\n452 4.2.2 full\r\n"
       "451 4.3.0 Internal error\r\n354 go\r\n421 4.3.2 shutting down\r\n")
server("fuzz_client_session", "half_reply", 5, "220 ready\r\n" + EHLO + "250 2.1.0 Ok\r\n250-2.1.5 Ok\r\n250-")
server("fuzz_client_session", "garbage", 6, b"220 ready\r\n250 ok\r\n\x00\x01garbage\xff\r\n250 ok\r\n")

# ---- spoolctl import: 8 control bytes (the low bit of the seed's first choice picks .eml
# or mbox, so both seeds of each pair are kept), then the file.
MBOX = ("From sender@origin.example Sun Nov 22 20:10:00 2026\n"
        "X-Spoold-Envelope-To: <user@example.com>\nSubject: one\n\nFrom the start\n>From quoted\n"
        ">>From twice\n\n\nFrom MAILER-DAEMON Sun Nov 22 20:11:00 2026\nSubject: two\r\n\r\nbody\r\n\n")
EML = ("X-Spoold-Envelope-From: <a@origin.example>\r\nX-Spoold-Envelope-To: <b@example.com>\r\n"
       "x-spoold-envelope-to:  <c@example.com> \r\nX-Spoold-Class: urgent\r\nReceived: from x\r\n"
       "Subject: hi\r\n\r\nbody\nbare lf\r\n")
for control in (1, 2):
    write("fuzz_import", f"mbox{control}", struct.pack("<Q", control) + MBOX.encode())
    write("fuzz_import", f"eml{control}", struct.pack("<Q", control) + EML.encode())
write("fuzz_import", "not_mbox", struct.pack("<Q", 3) + b"\n\nSubject: no From_ line\n\nFrom x\n")

# ---- the directory file: 8 control bytes (format, default domain), then the file.
for control in (1, 2, 3):
    write("fuzz_directory_file", f"list{control}", struct.pack("<Q", control) + (
        "\xef\xbb\xbf# mailboxes\nuser@example.com\nUser\n  alias@example.com : user@example.com\n"
        "@example.net: catch@example.com\n@example.org\nuser@example.com: dup@example.com\n"
        "loop@example.com: loop@example.com\n").encode("latin-1"))
    write("fuzz_directory_file", f"passwd{control}", struct.pack("<Q", control) + (
        "user@example.com:{SHA512-CRYPT}$6$x:1000:1000::/home/user::\nbare:x:1:1\n# c\n\n"
        ":nobody:\n").encode())

# ---- the operations endpoint: 8 control bytes, then what a client sends on one connection.
HTTP = ("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /status?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"
        "HEAD / HTTP/1.1\r\nHost: a\r\n\r\nGET /index.html HTTP/1.0\r\n\r\n")
write("fuzz_http", "pipelined", struct.pack("<Q", 1) + HTTP.encode())
write("fuzz_http", "methods", struct.pack("<Q", 2) + (
    "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\nGET /nope HTTP/1.1\r\n\r\n"
    "GET /status<script> HTTP/1.1\r\nConnection: close\r\n\r\n").encode())
write("fuzz_http", "bad", struct.pack("<Q", 3) + b"GET / HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n")
