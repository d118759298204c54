// libFuzzer target: a hostile mailstore's bytes into the drain clients' ReplyParser, fed in
// fuzzer-chosen pieces. Every reply it yields is well formed and within the line bounds,
// the split points change nothing (same replies, same verdict as one piece), and each
// reply survives Reply::wire() and parse_reply() unchanged.
// Input: 8 control bytes (seed of the splits), then the server's bytes.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/reply_parser.hpp"
#include "tests/fuzz/fuzz_support.hpp"

using namespace spoold;
using fuzz::check;

namespace {

struct Parsed {
    std::vector<Reply> replies;
    bool failed = false;
};

bool same(const Reply& a, const Reply& b) {
    return a.code == b.code && a.enhanced == b.enhanced && a.lines == b.lines;
}

// Replies until the parser needs more bytes than the input has, or fails.
Parsed parse(std::string_view bytes, fuzz::Choices* splits) {
    Parsed out;
    ReplyParser parser;
    std::size_t pos = 0;
    while (true) {
        auto r = parser.next();
        if (!r) {
            out.failed = true;
            check(!parser.next().has_value(), "a failed parser recovered");
            return out;
        }
        if (*r) {
            out.replies.push_back(std::move(**r));
            continue;
        }
        if (pos == bytes.size()) {
            return out;
        }
        const std::size_t n = splits == nullptr
                                  ? bytes.size() - pos
                                  : std::min(bytes.size() - pos,
                                             1 + splits->below(splits->one_in(4) ? 16 * 1024 : 64));
        parser.feed(bytes.substr(pos, n));
        pos += n;
    }
}

void check_reply(const Reply& r) {
    check(r.code >= 200 && r.code <= 599, "reply code out of range", r.summary());
    check(!r.lines.empty(), "a reply without lines", r.summary());
    check(r.lines.size() <= kMaxReplyLines, "more lines than kMaxReplyLines", r.summary());
    for (const auto& line : r.lines) {
        check(line.size() <= kMaxReplyLineBytes, "a line over kMaxReplyLineBytes", r.summary());
        check(line.find('\n') == std::string::npos, "LF inside a reply line", r.summary());
    }
    if (!r.enhanced.empty()) {
        check(r.enhanced[0] == static_cast<char>('0' + r.code / 100) && r.enhanced[1] == '.',
              "enhanced code does not match the reply class", r.summary());
    }
    const auto again = parse_reply(r.wire());
    check(again.has_value(), "Reply::wire() of a parsed reply does not parse", r.wire());
    check(same(*again, r), "a reply changed through wire() and parse_reply()", r.wire());
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    auto [choices, bytes] = fuzz::split_input(data, size);
    const Parsed split = parse(bytes, &choices);
    const Parsed whole = parse(bytes, nullptr);
    check(split.failed == whole.failed, "the split points changed the verdict");
    check(split.replies.size() == whole.replies.size(), "the split points changed the replies");
    for (std::size_t i = 0; i < whole.replies.size(); ++i) {
        check(same(split.replies[i], whole.replies[i]), "the split points changed a reply",
              whole.replies[i].summary());
        check_reply(whole.replies[i]);
    }
    return 0;
}
