#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "milter/codec.hpp"
#include "tests/support/milter_wire.hpp"

using namespace spoold;
using namespace spoold::milter;
using spoold::test::be32;
using spoold::test::milter_packet;
using spoold::test::z;
using Kind = Response::Kind;

namespace {

// Every packet in `bytes`, which must hold whole packets only.
std::vector<Packet> split(const std::string& bytes) {
    PacketReader reader;
    reader.feed(bytes);
    std::vector<Packet> out;
    for (;;) {
        auto p = reader.next();
        REQUIRE(p);
        if (!*p) {
            return out;
        }
        out.push_back(**p);
    }
}

Response decoded(char code, const std::string& data = {}) {
    auto r = decode_response(Packet{code, data});
    REQUIRE_MESSAGE(r, (r ? "" : r.error().message));
    return *r;
}

// The error for a reply that must be refused: always kProtocol.
std::string refusal(char code, const std::string& data = {}) {
    auto r = decode_response(Packet{code, data});
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == ErrorKind::kProtocol);
    return r.error().message;
}

} // namespace

TEST_CASE("each command we send is one packet: length of code and data, code, data") {
    CHECK(encode_option_negotiation(6, 0x1FF, 0x3) ==
          milter_packet('O', be32(6) + be32(0x1FF) + be32(0x3)));
    CHECK(encode_helo("client.test") == milter_packet('H', z("client.test")));
    CHECK(encode_mail("a@b.test", {"SIZE=10", "BODY=8BITMIME"}) ==
          milter_packet('M', z("<a@b.test>") + z("SIZE=10") + z("BODY=8BITMIME")));
    CHECK(encode_rcpt("", {}) == milter_packet('R', z("<>")));
    CHECK(encode_header("Subject", "hi") == milter_packet('L', z("Subject") + z("hi")));
    CHECK(encode_command(Command::kEndOfBody) == milter_packet('E'));
    CHECK(encode_command(Command::kQuit) == milter_packet('Q'));
    CHECK(encode_macros(Command::kRcpt, {{"{rcpt_addr}", "a@b"}, {"i", "Q1"}}) ==
          milter_packet('D', std::string("R") + z("{rcpt_addr}") + z("a@b") + z("i") + z("Q1")));
}

TEST_CASE("connect carries the family, the port in network order and the address") {
    CHECK(encode_connect("[192.0.2.1]", "192.0.2.1", 0x1234) ==
          milter_packet('C', z("[192.0.2.1]") + "4\x12\x34" + z("192.0.2.1")));
    CHECK(encode_connect("[::1]", "::1", 25) ==
          milter_packet('C', z("[::1]") + std::string("6\0\x19", 3) + z("::1")));
    CHECK(encode_connect("unknown", "", 0) == milter_packet('C', z("unknown") + "U"));
}

TEST_CASE("a body goes in packets of at most 65535 bytes, in order") {
    const std::string body =
        std::string(kMaxBodyChunk, 'a') + std::string(kMaxBodyChunk, 'b') + "c";
    const auto packets = split(encode_body(body));
    REQUIRE(packets.size() == 3);
    CHECK(packets[0].code == 'B');
    CHECK(packets[0].data == std::string(kMaxBodyChunk, 'a'));
    CHECK(packets[1].data == std::string(kMaxBodyChunk, 'b'));
    CHECK(packets[2].data == "c");
    CHECK(encode_body("").empty());
}

TEST_CASE("the packet reader splits a stream however it is cut") {
    const std::string stream =
        milter_packet('c') + milter_packet('h', z("X-A") + z("1")) + milter_packet('a');
    for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
        CAPTURE(cut);
        PacketReader reader;
        std::vector<Packet> got;
        auto drain = [&] {
            for (;;) {
                auto p = reader.next();
                REQUIRE(p);
                if (!*p) {
                    return;
                }
                got.push_back(**p);
            }
        };
        reader.feed(stream.substr(0, cut));
        drain();
        reader.feed(stream.substr(cut));
        drain();
        REQUIRE(got.size() == 3);
        CHECK(got[0].code == 'c');
        CHECK(got[1].code == 'h');
        CHECK(got[1].data == z("X-A") + z("1"));
        CHECK(got[2].code == 'a');
    }
}

TEST_CASE("a packet of length 0 or over the limit is an error, and the reader stays failed") {
    for (const std::uint32_t length :
         {0U, static_cast<std::uint32_t>(kMaxPacket + 1), 0xFFFFFFFFU}) {
        CAPTURE(length);
        PacketReader reader;
        reader.feed(be32(length));
        auto p = reader.next();
        REQUIRE_FALSE(p);
        CHECK(p.error().kind == ErrorKind::kProtocol);
        CHECK(p.error().message == "milter packet of length " + std::to_string(length));
        reader.feed(milter_packet('c'));
        CHECK_FALSE(reader.next()); // no resynchronising on a broken stream
    }
    // The largest allowed packet still passes.
    PacketReader reader;
    reader.feed(milter_packet('h', std::string(kMaxPacket - 1, 'x')));
    auto p = reader.next();
    REQUIRE(p);
    REQUIRE(*p);
    CHECK((*p)->data.size() == kMaxPacket - 1);
}

TEST_CASE("every reply without data decodes to its kind; data after it is refused") {
    struct Row {
        char code;
        Kind kind;
        bool final;
    };
    const Row rows[] = {
        {'a', Kind::kAccept, true},         {'c', Kind::kContinue, true},
        {'d', Kind::kDiscard, true},        {'r', Kind::kReject, true},
        {'t', Kind::kTempFail, true},       {'4', Kind::kShutdown, true},
        {'f', Kind::kConnectionFail, true}, {'s', Kind::kSkip, true},
        {'p', Kind::kProgress, false},
    };
    for (const Row& row : rows) {
        CAPTURE(row.code);
        const Response r = decoded(row.code);
        CHECK(r.kind == row.kind);
        CHECK(r.final() == row.final);
        CHECK(refusal(row.code, "x") ==
              std::string("malformed milter reply '") + row.code + "': unexpected data");
    }
    // Replacing the body is never offered: decoded so the chain can call it a violation.
    const Response body = decoded('b', "new body");
    CHECK(body.kind == Kind::kReplaceBody);
    CHECK_FALSE(body.final());
}

TEST_CASE("a reply code is a 4xx or 5xx reply, one line or several") {
    const Response one = decoded('y', z("550 5.7.1 Go away"));
    CHECK(one.kind == Kind::kReplyCode);
    CHECK(one.final());
    CHECK(one.reply.code == 550);
    CHECK(one.reply.enhanced == "5.7.1");
    CHECK(one.reply.lines == std::vector<std::string>{"Go away"});

    const Response multi = decoded('y', z("451-4.7.1 first\r\n451 4.7.1 second"));
    CHECK(multi.reply.code == 451);
    CHECK(multi.reply.lines == std::vector<std::string>{"first", "second"});

    CHECK(refusal('y', z("250 2.0.0 ok")).find("is not 4xx or 5xx") != std::string::npos);
    CHECK(refusal('y', "550 5.7.1 no NUL") ==
          "malformed milter reply 'y': reply text without its NUL");
    CHECK(refusal('y', z("550 a") + "trailing").find("without its NUL") != std::string::npos);
    CHECK(refusal('y', z("not a reply")).rfind("malformed milter reply 'y': ", 0) == 0);
}

TEST_CASE("header requests: add, insert at an index, change an occurrence or delete it") {
    const Response add = decoded('h', z("X-Spam") + z("yes"));
    CHECK(add.kind == Kind::kAddHeader);
    CHECK(add.name == "X-Spam");
    CHECK(add.value == "yes");
    CHECK_FALSE(add.final());

    const Response insert = decoded('i', be32(0) + z("Received") + z("by filter"));
    CHECK(insert.kind == Kind::kInsertHeader);
    CHECK(insert.index == 0);
    CHECK(insert.name == "Received");
    CHECK(insert.value == "by filter");

    const Response change = decoded('m', be32(2) + z("Subject") + z("[spam] hi"));
    CHECK(change.kind == Kind::kChangeHeader);
    CHECK(change.index == 2);
    CHECK(change.value == "[spam] hi");

    const Response remove = decoded('m', be32(1) + z("X-Old") + z(""));
    CHECK(remove.kind == Kind::kChangeHeader);
    CHECK(remove.value.empty());

    CHECK(refusal('i', std::string("\0\0", 2)) == "malformed milter reply 'i': no header index");
    CHECK(refusal('m', "") == "malformed milter reply 'm': no header index");
    CHECK(refusal('h', z("X-Only-Name")) ==
          "malformed milter reply 'h': header name and value expected");
    CHECK(refusal('h', z("X") + z("v") + "x") ==
          "malformed milter reply 'h': header name and value expected");
}

TEST_CASE("envelope requests and quarantine carry their address or reason") {
    struct Row {
        char code;
        std::string data;
        Kind kind;
        std::string text;
        std::string params;
    };
    const Row rows[] = {
        {'q', z("looks like spam"), Kind::kQuarantine, "looks like spam", ""},
        {'+', z("<new@b.test>"), Kind::kAddRecipient, "<new@b.test>", ""},
        {'2', z("<new@b.test>") + z("NOTIFY=NEVER"), Kind::kAddRecipient, "<new@b.test>",
         "NOTIFY=NEVER"},
        {'2', z("<new@b.test>"), Kind::kAddRecipient, "<new@b.test>", ""},
        {'-', z("<old@b.test>"), Kind::kDeleteRecipient, "<old@b.test>", ""},
        {'e', z("<bounce@b.test>") + z("SIZE=1"), Kind::kChangeFrom, "<bounce@b.test>", "SIZE=1"},
        {'e', z("<>"), Kind::kChangeFrom, "<>", ""},
    };
    for (const Row& row : rows) {
        CAPTURE(row.code);
        const Response r = decoded(row.code, row.data);
        CHECK(r.kind == row.kind);
        CHECK(r.text == row.text);
        CHECK(r.params == row.params);
        CHECK_FALSE(r.final());
    }
    CHECK(refusal('q', "no NUL") == "malformed milter reply 'q': string without its NUL");
    CHECK(refusal('+', z("<a@b>") + z("PARAMS")) == "malformed milter reply '+': trailing data");
    CHECK(refusal('e', z("<a@b>") + "x") ==
          "malformed milter reply 'e': parameters without their NUL");
}

TEST_CASE("an unknown reply code is refused and named, printable or not") {
    CHECK(refusal('Z') == "malformed milter reply 'Z': unknown reply");
    CHECK(refusal('\x01') == "malformed milter reply '\\x01': unknown reply");
}

TEST_CASE("the option negotiation answer: version, actions, steps and macro lists") {
    const auto plain = decode_negotiation(Packet{'O', be32(6) + be32(0x21) + be32(0x1000)});
    REQUIRE(plain);
    CHECK(plain->version == 6);
    CHECK(plain->actions == 0x21);
    CHECK(plain->protocol == 0x1000);
    for (const auto& m : plain->macros) {
        CHECK(m.empty());
    }

    const auto lists = decode_negotiation(Packet{'O', be32(6) + be32(0) + be32(0) + be32(1) +
                                                          z("{tls_version} j") + be32(5) + z("i")});
    REQUIRE(lists);
    CHECK(lists->macros[static_cast<std::size_t>(MacroStage::kHelo)] == "{tls_version} j");
    CHECK(lists->macros[static_cast<std::size_t>(MacroStage::kEndOfMessage)] == "i");

    CHECK_FALSE(decode_negotiation(Packet{'c', ""}));
    CHECK_FALSE(decode_negotiation(Packet{'O', be32(6) + be32(0)}));
    CHECK_FALSE(decode_negotiation(Packet{'O', be32(6) + be32(0) + be32(0) + be32(7) + z("i")}));
    CHECK_FALSE(decode_negotiation(Packet{'O', be32(6) + be32(0) + be32(0) + be32(1) + "j"}));
    const auto shorter = decode_negotiation(Packet{'O', be32(6)});
    REQUIRE_FALSE(shorter);
    CHECK(shorter.error().kind == ErrorKind::kProtocol);
    CHECK(shorter.error().message == "malformed milter reply 'O': shorter than 12 bytes");
}

TEST_CASE("filters' addresses lose their brackets and surrounding blanks") {
    CHECK(strip_brackets("<a@b.test>") == "a@b.test");
    CHECK(strip_brackets(" \t<a@b.test> ") == "a@b.test");
    CHECK(strip_brackets("a@b.test") == "a@b.test");
    CHECK(strip_brackets("<>").empty());
    CHECK(strip_brackets("<a@b").compare("<a@b") == 0);
}
