#include "milter/codec.hpp"

#include <fmt/format.h>

#include <cctype>

#include "common/reply_parser.hpp"

namespace spoold::milter {
namespace {

void put32(std::string& out, std::uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) {
        out.push_back(static_cast<char>((v >> static_cast<unsigned>(shift)) & 0xFFU));
    }
}

std::uint32_t get32(std::string_view s) {
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
        v = (v << 8U) | static_cast<unsigned char>(s[static_cast<std::size_t>(i)]);
    }
    return v;
}

// Length (the code byte plus the data), code, data.
std::string packet(char code, std::string_view data) {
    std::string out;
    out.reserve(5 + data.size());
    put32(out, static_cast<std::uint32_t>(data.size() + 1));
    out.push_back(code);
    out.append(data);
    return out;
}

std::string packet(Command c, std::string_view data) { return packet(static_cast<char>(c), data); }

// NUL-terminated strings in a reply's data, read in order.
class Fields {
public:
    explicit Fields(std::string_view data) : data_(data) {}
    std::optional<std::uint32_t> u32() {
        if (data_.size() - pos_ < 4) {
            return std::nullopt;
        }
        const std::uint32_t v = get32(data_.substr(pos_));
        pos_ += 4;
        return v;
    }
    std::optional<std::string> str() {
        const std::size_t nul = data_.find('\0', pos_);
        if (nul == std::string_view::npos) {
            return std::nullopt;
        }
        std::string s(data_.substr(pos_, nul - pos_));
        pos_ = nul + 1;
        return s;
    }
    bool done() const { return pos_ == data_.size(); }

private:
    std::string_view data_;
    std::size_t pos_ = 0;
};

Error malformed(char code, std::string_view what) {
    return Error{ErrorKind::kProtocol,
                 fmt::format("malformed milter reply '{}': {}",
                             std::isprint(static_cast<unsigned char>(code)) != 0
                                 ? std::string(1, code)
                                 : fmt::format("\\x{:02x}", static_cast<unsigned char>(code)),
                             what)};
}

// SMFIR_REPLYCODE: "550 5.7.1 text", or several such lines joined by CRLF (libmilter's
// smfi_setmlreply), 4xx or 5xx only.
Result<Reply> decode_reply_code(std::string_view text) {
    auto reply = parse_reply(std::string(text) + "\r\n");
    if (!reply) {
        return tl::unexpected(reply.error());
    }
    if (reply->code < 400 || reply->code > 599) {
        return fail(ErrorKind::kProtocol,
                    fmt::format("milter reply code {} is not 4xx or 5xx", reply->code));
    }
    return reply;
}

} // namespace

std::string encode_option_negotiation(std::uint32_t version, std::uint32_t actions,
                                      std::uint32_t protocol) {
    std::string data;
    put32(data, version);
    put32(data, actions);
    put32(data, protocol);
    return packet(Command::kOptionNegotiation, data);
}

std::string encode_macros(Command for_command, const Macros& macros) {
    std::string data(1, static_cast<char>(for_command));
    for (const auto& [name, value] : macros) {
        data += name;
        data += '\0';
        data += value;
        data += '\0';
    }
    return packet(Command::kMacro, data);
}

std::string encode_connect(std::string_view hostname, std::string_view address,
                           std::uint16_t port) {
    std::string data(hostname);
    data += '\0';
    if (address.empty()) {
        data += 'U';
        return packet(Command::kConnect, data);
    }
    data += address.find(':') != std::string_view::npos ? '6' : '4';
    data.push_back(static_cast<char>(port >> 8U));
    data.push_back(static_cast<char>(port & 0xFFU));
    data += address;
    data += '\0';
    return packet(Command::kConnect, data);
}

std::string encode_helo(std::string_view name) {
    std::string data(name);
    data += '\0';
    return packet(Command::kHelo, data);
}

namespace {

std::string envelope_args(std::string_view address, const std::vector<std::string>& params) {
    std::string data = fmt::format("<{}>", address);
    data += '\0';
    for (const auto& p : params) {
        data += p;
        data += '\0';
    }
    return data;
}

} // namespace

std::string encode_mail(std::string_view address, const std::vector<std::string>& params) {
    return packet(Command::kMail, envelope_args(address, params));
}

std::string encode_rcpt(std::string_view address, const std::vector<std::string>& params) {
    return packet(Command::kRcpt, envelope_args(address, params));
}

std::string encode_header(std::string_view name, std::string_view value) {
    std::string data(name);
    data += '\0';
    data += value;
    data += '\0';
    return packet(Command::kHeader, data);
}

std::string encode_body(std::string_view bytes) {
    std::string out;
    for (std::size_t pos = 0; pos < bytes.size(); pos += kMaxBodyChunk) {
        out += packet(Command::kBody, bytes.substr(pos, kMaxBodyChunk));
    }
    return out;
}

std::string encode_command(Command command) { return packet(command, {}); }

void PacketReader::feed(std::string_view bytes) {
    if (pos_ > 0 && pos_ == buffer_.size()) {
        buffer_.clear();
        pos_ = 0;
    }
    buffer_.append(bytes);
}

Result<std::optional<Packet>> PacketReader::next() {
    if (failed_) {
        return tl::unexpected(*failed_);
    }
    const std::string_view avail = std::string_view(buffer_).substr(pos_);
    if (avail.size() < 4) {
        return std::optional<Packet>{};
    }
    const std::uint32_t length = get32(avail);
    if (length == 0 || length > kMaxPacket) {
        failed_ = Error{ErrorKind::kProtocol, fmt::format("milter packet of length {}", length)};
        return tl::unexpected(*failed_);
    }
    if (avail.size() < 4 + std::size_t{length}) {
        return std::optional<Packet>{};
    }
    Packet p{avail[4], std::string(avail.substr(5, length - 1))};
    pos_ += 4 + length;
    if (pos_ == buffer_.size()) {
        buffer_.clear();
        pos_ = 0;
    }
    return std::optional<Packet>{std::move(p)};
}

Result<Negotiated> decode_negotiation(const Packet& packet) {
    if (packet.code != static_cast<char>(Command::kOptionNegotiation)) {
        return tl::unexpected(malformed(packet.code, "expected the option negotiation"));
    }
    Fields f(packet.data);
    const auto version = f.u32();
    const auto actions = f.u32();
    const auto protocol = f.u32();
    if (!version || !actions || !protocol) {
        return tl::unexpected(malformed(packet.code, "shorter than 12 bytes"));
    }
    Negotiated n{*version, *actions, *protocol, {}};
    while (!f.done()) {
        const auto stage = f.u32();
        const auto names = f.str();
        if (!stage || !names || *stage >= kMacroStages) {
            return tl::unexpected(malformed(packet.code, "bad macro list"));
        }
        n.macros.at(*stage) = *names;
    }
    return n;
}

bool Response::final() const {
    switch (kind) {
    case Kind::kAccept:
    case Kind::kContinue:
    case Kind::kDiscard:
    case Kind::kReject:
    case Kind::kTempFail:
    case Kind::kReplyCode:
    case Kind::kShutdown:
    case Kind::kConnectionFail:
    case Kind::kSkip: return true;
    case Kind::kProgress:
    case Kind::kAddHeader:
    case Kind::kInsertHeader:
    case Kind::kChangeHeader:
    case Kind::kQuarantine:
    case Kind::kAddRecipient:
    case Kind::kDeleteRecipient:
    case Kind::kChangeFrom:
    case Kind::kReplaceBody: return false;
    }
    return true;
}

Result<Response> decode_response(const Packet& p) {
    using Kind = Response::Kind;
    Response r;
    Fields f(p.data);
    auto simple = [&](Kind k) -> Result<Response> {
        if (!p.data.empty()) {
            return tl::unexpected(malformed(p.code, "unexpected data"));
        }
        r.kind = k;
        return r;
    };
    switch (p.code) {
    case 'a': return simple(Kind::kAccept);
    case 'c': return simple(Kind::kContinue);
    case 'd': return simple(Kind::kDiscard);
    case 'r': return simple(Kind::kReject);
    case 't': return simple(Kind::kTempFail);
    case '4': return simple(Kind::kShutdown);
    case 'f': return simple(Kind::kConnectionFail);
    case 's': return simple(Kind::kSkip);
    case 'p': return simple(Kind::kProgress);
    case 'b': r.kind = Kind::kReplaceBody; return r;
    case 'y': {
        const auto text = f.str();
        if (!text || !f.done()) {
            return tl::unexpected(malformed(p.code, "reply text without its NUL"));
        }
        auto reply = decode_reply_code(*text);
        if (!reply) {
            return tl::unexpected(malformed(p.code, reply.error().message));
        }
        r.kind = Kind::kReplyCode;
        r.reply = std::move(*reply);
        return r;
    }
    case 'h':
    case 'i':
    case 'm': {
        if (p.code != 'h') {
            const auto index = f.u32();
            if (!index) {
                return tl::unexpected(malformed(p.code, "no header index"));
            }
            r.index = *index;
        }
        auto name = f.str();
        auto value = f.str();
        if (!name || !value || !f.done()) {
            return tl::unexpected(malformed(p.code, "header name and value expected"));
        }
        r.kind = p.code == 'h' ? Kind::kAddHeader
                               : (p.code == 'i' ? Kind::kInsertHeader : Kind::kChangeHeader);
        r.name = std::move(*name);
        r.value = std::move(*value);
        return r;
    }
    case 'q':
    case '+':
    case '-':
    case '2':
    case 'e': {
        auto text = f.str();
        if (!text) {
            return tl::unexpected(malformed(p.code, "string without its NUL"));
        }
        if (!f.done() && (p.code == '2' || p.code == 'e')) {
            auto params = f.str();
            if (!params) {
                return tl::unexpected(malformed(p.code, "parameters without their NUL"));
            }
            r.params = std::move(*params);
        }
        if (!f.done()) {
            return tl::unexpected(malformed(p.code, "trailing data"));
        }
        r.text = std::move(*text);
        switch (p.code) {
        case 'q': r.kind = Kind::kQuarantine; break;
        case '-': r.kind = Kind::kDeleteRecipient; break;
        case 'e': r.kind = Kind::kChangeFrom; break;
        default: r.kind = Kind::kAddRecipient; break;
        }
        return r;
    }
    default: return tl::unexpected(malformed(p.code, "unknown reply"));
    }
}

std::string strip_brackets(std::string_view address) {
    while (!address.empty() && (address.front() == ' ' || address.front() == '\t')) {
        address.remove_prefix(1);
    }
    while (!address.empty() && (address.back() == ' ' || address.back() == '\t')) {
        address.remove_suffix(1);
    }
    if (address.size() >= 2 && address.front() == '<' && address.back() == '>') {
        address = address.substr(1, address.size() - 2);
    }
    return std::string(address);
}

} // namespace spoold::milter
