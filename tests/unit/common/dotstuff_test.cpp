#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "common/dotstuff.hpp"

using namespace spoold;

namespace {

std::string stuff_whole(std::string_view body) {
    DotStuffer s;
    std::string out;
    s.feed(body, out);
    s.finish(out);
    return out;
}

// Feeds `body` split at every possible single position and checks each gives `want`.
void check_all_splits(std::string_view body, const std::string& want) {
    for (std::size_t cut = 0; cut <= body.size(); ++cut) {
        DotStuffer s;
        std::string out;
        s.feed(body.substr(0, cut), out);
        s.feed(body.substr(cut), out);
        s.finish(out);
        CHECK_MESSAGE(out == want, "split at " << cut);
    }
}

} // namespace

TEST_CASE("a CRLF body passes through and gets the final dot") {
    CHECK(stuff_whole("Subject: x\r\n\r\nhello\r\n") == "Subject: x\r\n\r\nhello\r\n.\r\n");
}

TEST_CASE("a dot at the start of a line is doubled, elsewhere it is not") {
    CHECK(stuff_whole(".\r\n..x\r\na.b\r\n") == "..\r\n...x\r\na.b\r\n.\r\n");
    CHECK(stuff_whole(".first") == "..first\r\n.\r\n");
}

TEST_CASE("bare LF and bare CR become CRLF") {
    CHECK(stuff_whole("a\nb\rc\r\n") == "a\r\nb\r\nc\r\n.\r\n");
    CHECK(stuff_whole("a\n.b\r.c") == "a\r\n..b\r\n..c\r\n.\r\n");
}

TEST_CASE("an unterminated last line is terminated before the final dot") {
    CHECK(stuff_whole("no newline") == "no newline\r\n.\r\n");
    CHECK(stuff_whole("ends in CR\r") == "ends in CR\r\n.\r\n");
    CHECK(stuff_whole("") == ".\r\n");
}

TEST_CASE("the result does not depend on where the body is split") {
    check_all_splits("a\r\n.b\r\n..\r\nc\rd\n.\r\n", "a\r\n..b\r\n...\r\nc\r\nd\r\n..\r\n.\r\n");
    check_all_splits(".\r\n.", "..\r\n..\r\n.\r\n");
}

TEST_CASE("byte-at-a-time feeding matches whole feeding, and the stuffer is reusable") {
    const std::string body = "x\r\n.y\n\r\n.\r\r\n.z";
    DotStuffer s;
    std::string out;
    for (const char c : body) {
        s.feed(std::string_view(&c, 1), out);
    }
    s.finish(out);
    CHECK(out == stuff_whole(body));
    std::string second;
    s.feed(".again\r\n", second);
    s.finish(second);
    CHECK(second == "..again\r\n.\r\n");
}

TEST_CASE("LF normalisation turns CRLF and bare CR into LF across pieces") {
    LfNormalizer n;
    std::string out;
    n.feed("a\r", out);
    n.feed("\nb\rc\r", out);
    n.finish(out);
    CHECK(out == "a\nb\nc\n");
    std::string plain;
    n.feed("x\ny", plain);
    n.finish(plain);
    CHECK(plain == "x\ny");
}
