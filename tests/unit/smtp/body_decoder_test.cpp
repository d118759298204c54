#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "smtp/body_decoder.hpp"

using namespace spoold::smtp;

namespace {

struct Run {
    std::string out;
    std::size_t consumed = 0;
    ContentEnd end = ContentEnd::kNone;
};

// Feeds `in` to the decoder in pieces of at most `piece` bytes until it reports an end
// or the input runs out; at the end of a message, finish() completes it.
Run feed(BodyDecoder& d, std::string_view in, std::size_t piece = std::string_view::npos) {
    Run r;
    do {
        const std::size_t before = r.out.size();
        const DecodeStep step = d.decode(in.substr(r.consumed, piece), r.out);
        CHECK(step.produced == r.out.size() - before);
        REQUIRE((step.consumed > 0 || step.end != ContentEnd::kNone || r.consumed == in.size()));
        r.consumed += step.consumed;
        r.end = step.end;
    } while (r.end == ContentEnd::kNone && r.consumed < in.size());
    if (r.end == ContentEnd::kMessage) {
        const std::size_t before = r.out.size();
        const std::size_t added = d.finish(r.out);
        CHECK(added == r.out.size() - before);
    }
    return r;
}

// The end-of-data variants of SEC Consult's "SMTP Smuggling" (2023) and its follow-ups,
// as in smuggling_test.cpp, which drives them through the whole session.
const std::vector<std::string> kSmugglingVariants = {
    "\n.\n", "\n.\r\n",     "\r.\r",       "\r\n.\n",   "\r\n.\r",       "\r.\r\n",
    "\n.\r", "\r\n.\r\r\n", "\r\n\r.\r\n", "\n\n.\n\n", "\r\r\n.\r\r\n", ".\n",
};

constexpr std::string_view kSmuggled = "MAIL FROM:<admin@bank.example>\r\n"
                                       "RCPT TO:<victim@example.com>\r\n"
                                       "DATA\r\n"
                                       "From: admin@bank.example\r\n\r\nsmuggled\r\n";

} // namespace

TEST_CASE("DATA content: what is stored, where it ends, and whether a bare CR or LF was seen") {
    struct Row {
        std::string input; // what the client sends after DATA's 354
        std::string stored;
        bool ended;
        std::string rest; // input after the end-of-data line, left for the caller
        bool bare;
    };
    const std::string long_line(5000, 'z');
    const Row rows[] = {
        {".\r\n", "", true, "", false},
        {"a\r\n.\r\n", "a\r\n", true, "", false},
        {"a\r\n.\r\nNOOP\r\n", "a\r\n", true, "NOOP\r\n", false},
        {"\r\n.\r\n", "\r\n", true, "", false},
        {"..leading dot\r\n..\r\n...\r\nmiddle . dot\r\nend.\r\n. space\r\n.\r\n",
         ".leading dot\r\n.\r\n..\r\nmiddle . dot\r\nend.\r\n space\r\n", true, "", false},
        {"a\r\n..\r\nb\r\n.\r\n", "a\r\n.\r\nb\r\n", true, "", false},
        {"a\r\n. \r\nb\r\n.\r\n", "a\r\n \r\nb\r\n", true, "", false},
        {"a\r\n.x\r\nb\r\n.\r\n", "a\r\nx\r\nb\r\n", true, "", false},
        {"a.\r\nb\r\n.\r\n", "a.\r\nb\r\n", true, "", false},
        {long_line + "\r\n.\r\n", long_line + "\r\n", true, "", false},
        // No end yet: everything is consumed and the decoder waits for more.
        {"a\r\n.\r", "a\r\n", false, "", false},
        {"a\r\n..", "a\r\n.", false, "", false},
        // Bare LF and bare CR are kept as content and noted.
        {"a\nb\r\n.\r\n", "a\nb\r\n", true, "", true},
        {"a\rb\r\n.\r\n", "a\rb\r\n", true, "", true},
        {"a\r\n.\n", "a\r\n\n", false, "", true},
        {".\r.\r\n.\r\n", "\r.\r\n", true, "", true},
        {"a\r\r\n.\r\n", "a\r\r\n", true, "", true},
    };
    for (const auto& row : rows) {
        CAPTURE(row.input);
        BodyDecoder d;
        d.begin_data();
        const Run r = feed(d, row.input);
        CHECK(r.out == row.stored);
        CHECK((r.end == ContentEnd::kMessage) == row.ended);
        CHECK(row.input.substr(r.consumed) == row.rest);
        CHECK(d.bare_newline() == row.bare);
    }
}

TEST_CASE("a NUL byte is content that is noted, wherever it is, and never an end of data") {
    struct Row {
        std::string input; // after DATA's 354
        std::string stored;
    };
    const Row rows[] = {
        {std::string("a\r\n\0.\r\nb\r\n.\r\n", 13), std::string("a\r\n\0.\r\nb\r\n", 10)},
        {std::string("\0\r\n.\r\n", 6), std::string("\0\r\n", 3)},
        {std::string("a\0b\r\n.\r\n", 8), std::string("a\0b\r\n", 5)},
        {std::string(".\0\r\n.\r\n", 7), std::string("\0\r\n", 3)},
    };
    for (const auto& row : rows) {
        CAPTURE(row.input);
        for (const std::size_t piece : {1, 2, 100}) {
            BodyDecoder d;
            d.begin_data();
            const Run r = feed(d, row.input, piece);
            CHECK(r.out == row.stored);
            CHECK(r.end == ContentEnd::kMessage);
            CHECK(r.consumed == row.input.size());
            CHECK(d.nul_byte());
            CHECK_FALSE(d.bare_newline());
            CHECK(d.refused());
        }
    }
    BodyDecoder clean;
    clean.begin_data();
    feed(clean, "a\r\n.\r\n");
    CHECK_FALSE(clean.nul_byte());
    CHECK_FALSE(clean.refused());
    // BDAT: the same rule, in any chunk.
    BodyDecoder chunks;
    chunks.begin_chunk(3, false);
    feed(chunks, "abc");
    CHECK_FALSE(chunks.nul_byte());
    chunks.begin_chunk(3, true);
    feed(chunks, std::string("d\0e", 3));
    CHECK(chunks.nul_byte());
    CHECK(chunks.refused());
    chunks.reset();
    CHECK_FALSE(chunks.nul_byte());
}

TEST_CASE("no smuggling variant ends DATA early; each is content with a bare CR or LF") {
    for (const auto& v : kSmugglingVariants) {
        CAPTURE(v);
        const std::string input = "hello" + v + std::string(kSmuggled) + "\r\n.\r\n";
        BodyDecoder d;
        d.begin_data();
        const Run r = feed(d, input);
        CHECK(r.end == ContentEnd::kMessage);
        CHECK(r.consumed == input.size()); // only the real CRLF.CRLF ended it
        CHECK(d.bare_newline());
        CHECK(r.out.find("MAIL FROM:<admin@bank.example>") != std::string::npos);
    }
}

TEST_CASE("DATA decodes the same whatever the pieces it arrives in") {
    std::vector<std::string> inputs = {
        "line\r\n..stuffed\r\n.\r\nNOOP\r\n",
        "a\r\n. \r\n..\r\n.x\r\n\r\n.\r\n",
    };
    for (const auto& v : kSmugglingVariants) {
        inputs.push_back("hello" + v + std::string(kSmuggled) + "\r\n.\r\nQUIT\r\n");
    }
    for (const auto& input : inputs) {
        CAPTURE(input);
        BodyDecoder whole;
        whole.begin_data();
        const Run expected = feed(whole, input);
        for (const std::size_t piece : {1, 2, 3, 5}) {
            CAPTURE(piece);
            BodyDecoder d;
            d.begin_data();
            const Run r = feed(d, input, piece);
            CHECK(r.out == expected.out);
            CHECK(r.consumed == expected.consumed);
            CHECK(r.end == expected.end);
            CHECK(d.bare_newline() == whole.bare_newline());
        }
        // Every split into two writes.
        for (std::size_t cut = 1; cut < input.size(); ++cut) {
            CAPTURE(cut);
            BodyDecoder d;
            d.begin_data();
            Run first = feed(d, std::string_view(input).substr(0, cut));
            if (first.end == ContentEnd::kNone) {
                const Run second = feed(d, std::string_view(input).substr(cut));
                first.out += second.out;
                first.consumed += second.consumed;
                first.end = second.end;
            }
            CHECK(first.out == expected.out);
            CHECK(first.consumed == expected.consumed);
        }
    }
}

TEST_CASE("BDAT chunks: content as is, bare CR/LF across chunks, the last line completed") {
    struct Row {
        std::vector<std::string> chunks; // the last one is sent as BDAT ... LAST
        std::string stored;
        bool bare;
    };
    const Row rows[] = {
        {{"line 1\r\n", ".dot kept\r\n", "last\r\n"}, "line 1\r\n.dot kept\r\nlast\r\n", false},
        {{"line 1\r", "\nab", ""}, "line 1\r\nab\r\n", false},
        {{"abcde", ""}, "abcde\r\n", false},
        {{"abcde"}, "abcde\r\n", false},
        {{""}, "", false},
        {{"..\r\n.\r\n"}, "..\r\n.\r\n", false},
        {{".dot kept\n", "\r\nlast\r\n"}, ".dot kept\n\r\nlast\r\n", true},
        {{"abc\r"}, "abc\r", true},
        {{"abc\r", ""}, "abc\r", true},
        {{"abc\r", "x\r\n"}, "abc\rx\r\n", true},
        {{"abc", "\n"}, "abc\n", true},
    };
    for (const auto& row : rows) {
        CAPTURE(row.chunks.front());
        BodyDecoder d;
        std::string out;
        for (std::size_t i = 0; i < row.chunks.size(); ++i) {
            const bool last = i + 1 == row.chunks.size();
            d.begin_chunk(row.chunks[i].size(), last);
            const Run r = feed(d, row.chunks[i]);
            CHECK(r.consumed == row.chunks[i].size());
            CHECK(r.end == (last ? ContentEnd::kMessage : ContentEnd::kChunk));
            out += r.out;
        }
        CHECK(out == row.stored);
        CHECK(d.bare_newline() == row.bare);
    }
}

TEST_CASE("BDAT with the smuggling sequences is noted as bare CR/LF") {
    for (const auto& v : kSmugglingVariants) {
        CAPTURE(v);
        const std::string content = "hello" + v + "world\r\n";
        BodyDecoder d;
        d.begin_chunk(content.size(), true);
        const Run r = feed(d, content);
        CHECK(r.end == ContentEnd::kMessage);
        CHECK(r.out == content);
        CHECK(d.bare_newline());
    }
}

TEST_CASE("a BDAT chunk takes exactly its size, in any pieces, and leaves the rest") {
    const std::string input = "0123456789NOOP\r\n";
    for (const std::size_t piece : {1, 3, 10, 100}) {
        CAPTURE(piece);
        BodyDecoder d;
        d.begin_chunk(10, false);
        const Run r = feed(d, input, piece);
        CHECK(r.end == ContentEnd::kChunk);
        CHECK(r.consumed == 10);
        CHECK(r.out == "0123456789");
    }
    BodyDecoder d;
    d.begin_chunk(0, true);
    const Run empty = feed(d, "NOOP\r\n");
    CHECK(empty.end == ContentEnd::kMessage);
    CHECK(empty.consumed == 0);
}

TEST_CASE("a refused BDAT chunk is read and dropped without touching the message") {
    BodyDecoder d;
    d.begin_chunk(4, false);
    CHECK(feed(d, "abc\r").end == ContentEnd::kChunk);
    // A refused chunk in between: its bytes (a bare LF among them) count for nothing.
    d.skip_chunk(12);
    const Run skipped = feed(d, "RSET\n\nQUIT\r\nNOOP\r\n");
    CHECK(skipped.end == ContentEnd::kSkipped);
    CHECK(skipped.consumed == 12);
    CHECK(skipped.out.empty());
    CHECK_FALSE(d.bare_newline());
    // The CR that ended the first chunk still pairs with the next accepted chunk's LF.
    d.begin_chunk(1, true);
    const Run last = feed(d, "\n");
    CHECK(last.out == "\n");
    CHECK_FALSE(d.bare_newline());
}

TEST_CASE("reset() starts a new message: the bare CR/LF note and chunk state are gone") {
    BodyDecoder d;
    d.begin_data();
    feed(d, "a\nb");
    REQUIRE(d.bare_newline());
    d.reset();
    CHECK_FALSE(d.bare_newline());
    std::string out;
    CHECK(d.decode("anything", out).consumed == 0); // idle until DATA or BDAT begins
    d.begin_chunk(1, true);
    const Run r = feed(d, "x");
    CHECK(r.out == "x\r\n");
    CHECK_FALSE(d.bare_newline());
}
