// libFuzzer target: a mail filter's byte stream as milter/codec reads it (packet framing,
// every reply and request, the option negotiation). Input: one byte choosing how the
// stream is cut into reads, then the stream.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "milter/codec.hpp"
#include "tests/fuzz/fuzz_check.hpp"

using namespace spoold;
using spoold::fuzz::check;
using namespace spoold::milter;

namespace {

struct Split {
    std::vector<Packet> packets;
    bool failed = false;
};

// Every packet of `stream`, fed in reads of `step` bytes (0: all at once).
Split read_all(std::string_view stream, std::size_t step) {
    Split out;
    PacketReader reader;
    std::size_t pos = 0;
    do {
        const std::size_t n = step == 0 ? stream.size() : std::min(step, stream.size() - pos);
        reader.feed(stream.substr(pos, n));
        pos += n;
        for (;;) {
            auto p = reader.next();
            if (!p) {
                check(p.error().kind == ErrorKind::kProtocol,
                      "a framing error that is not kProtocol");
                out.failed = true;
                return out;
            }
            if (!*p) {
                break;
            }
            out.packets.push_back(std::move(**p));
        }
    } while (pos < stream.size());
    return out;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) {
        return 0;
    }
    const std::size_t step = data[0];
    const std::string_view stream(reinterpret_cast<const char*>(data) + 1, size - 1);

    // How the stream is cut into reads changes nothing.
    const Split whole = read_all(stream, 0);
    const Split cut = read_all(stream, step);
    check(whole.failed == cut.failed, "framing depends on how the stream was read");
    check(whole.packets.size() == cut.packets.size(), "packet count depends on the reads");

    std::size_t framed = 0;
    for (std::size_t i = 0; i < whole.packets.size(); ++i) {
        const Packet& p = whole.packets[i];
        check(p.code == cut.packets[i].code && p.data == cut.packets[i].data,
              "packet contents depend on the reads");
        check(p.data.size() + 1 <= kMaxPacket, "a packet over kMaxPacket was framed");
        framed += 5 + p.data.size();

        auto r = decode_response(p);
        if (!r) {
            check(r.error().kind == ErrorKind::kProtocol, "a decode error that is not kProtocol");
            check(!r.error().message.empty(), "a decode error without a message");
        } else {
            using Kind = Response::Kind;
            if (r->kind == Kind::kReplyCode) {
                check(r->reply.code >= 400 && r->reply.code <= 599, "a reply code outside 4xx/5xx");
                check(r->final(), "a reply code that is not final");
            }
            if (r->kind == Kind::kProgress || r->kind == Kind::kAddHeader ||
                r->kind == Kind::kChangeHeader || r->kind == Kind::kInsertHeader) {
                check(!r->final(), "a request or progress taken as final");
            }
            // Names and values come from NUL-terminated fields.
            check(r->name.find('\0') == std::string::npos, "a NUL inside a header name");
            check(r->value.find('\0') == std::string::npos, "a NUL inside a header value");
            check(r->text.find('\0') == std::string::npos, "a NUL inside a request's text");
            (void)strip_brackets(r->text);
        }
        if (auto n = decode_negotiation(p)) {
            check(p.code == 'O' && p.data.size() >= 12, "a negotiation from a short packet");
            for (const auto& names : n->macros) {
                check(names.find('\0') == std::string::npos, "a NUL inside a macro list");
            }
        }
    }
    check(framed <= stream.size(), "more bytes framed than were read");
    return 0;
}
