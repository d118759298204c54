#include "common/address.hpp"

#include <arpa/inet.h>

#include <array>
#include <string>
#include <utility>

#include "common/utf8.hpp"

namespace spoold::address {
namespace {

bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_let_dig(char c) { return is_alpha(c) || is_digit(c); }
bool is_high(char c) { return static_cast<unsigned char>(c) >= 0x80; }
char upper(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c; }

// RFC 5322 atext.
bool is_atext(char c) {
    if (is_let_dig(c)) {
        return true;
    }
    constexpr std::string_view kSpecials = "!#$%&'*+-/=?^_`{|}~";
    return kSpecials.find(c) != std::string_view::npos;
}

bool has_high(std::string_view s) {
    for (const char c : s) {
        if (is_high(c)) {
            return true;
        }
    }
    return false;
}

bool is_valid_dot_string(std::string_view s, bool allow_utf8) {
    if (s.empty() || s.front() == '.' || s.back() == '.') {
        return false;
    }
    char prev = 0;
    for (const char c : s) {
        if (c == '.') {
            if (prev == '.') {
                return false;
            }
        } else if (!is_atext(c) && !(allow_utf8 && is_high(c))) {
            return false;
        }
        prev = c;
    }
    return true;
}

// Quoted-string including the quotes: qtextSMTP / quoted-pairSMTP (RFC 5321 4.1.2).
bool is_valid_quoted_string(std::string_view s, bool allow_utf8) {
    if (s.size() < 2 || s.front() != '"' || s.back() != '"') {
        return false;
    }
    for (std::size_t i = 1; i + 1 < s.size(); ++i) {
        const char c = s[i];
        const auto u = static_cast<unsigned char>(c);
        if (c == '\\') {
            if (i + 2 >= s.size()) {
                return false;
            }
            const auto n = static_cast<unsigned char>(s[i + 1]);
            if (n < 32 || n > 126) {
                return false;
            }
            ++i;
        } else if (u >= 0x80) {
            if (!allow_utf8) {
                return false;
            }
        } else if (c == '"' || u < 32 || u > 126) {
            return false;
        }
    }
    return true;
}

bool is_valid_local_part(std::string_view s, bool allow_utf8) {
    if (!s.empty() && s.front() == '"') {
        return is_valid_quoted_string(s, allow_utf8);
    }
    return is_valid_dot_string(s, allow_utf8);
}

// Position of the '@' that separates local part and domain: the last '@' outside a
// quoted local part.
std::size_t find_at(std::string_view mailbox) {
    if (!mailbox.empty() && mailbox.front() == '"') {
        for (std::size_t i = 1; i < mailbox.size(); ++i) {
            if (mailbox[i] == '\\') {
                ++i;
            } else if (mailbox[i] == '"') {
                return i + 1 < mailbox.size() && mailbox[i + 1] == '@' ? i + 1
                                                                       : std::string_view::npos;
            }
        }
        return std::string_view::npos;
    }
    return mailbox.find('@');
}

bool is_valid_ipv4(std::string_view s) {
    int parts = 0;
    std::size_t i = 0;
    while (i <= s.size()) {
        std::size_t digits = 0;
        int value = 0;
        while (i < s.size() && is_digit(s[i])) {
            value = value * 10 + (s[i] - '0');
            ++digits;
            ++i;
            if (digits > 3) {
                return false;
            }
        }
        if (digits == 0 || value > 255) {
            return false;
        }
        ++parts;
        if (i == s.size()) {
            break;
        }
        if (s[i] != '.') {
            return false;
        }
        ++i;
    }
    return parts == 4;
}

int hex_value(char c) {
    if (is_digit(c)) {
        return c - '0';
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

} // namespace

std::string ascii_lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) {
        if (c >= 'A' && c <= 'Z') {
            c = static_cast<char>(c - 'A' + 'a');
        }
    }
    return out;
}

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) {
        return false;
    }
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (upper(a[i]) != upper(b[i])) {
            return false;
        }
    }
    return true;
}

bool is_valid_utf8(std::string_view text) {
    std::size_t i = 0;
    while (i < text.size()) {
        const std::size_t len = utf8::sequence_length(text, i);
        if (len == 0) {
            return false;
        }
        i += len;
    }
    return true;
}

bool is_valid_domain(std::string_view domain, bool allow_utf8) {
    if (domain.empty() || domain.size() > kMaxDomainLength) {
        return false;
    }
    if (allow_utf8 && !is_valid_utf8(domain)) {
        return false;
    }
    std::size_t start = 0;
    while (start <= domain.size()) {
        std::size_t end = domain.find('.', start);
        if (end == std::string_view::npos) {
            end = domain.size();
        }
        const std::string_view label = domain.substr(start, end - start);
        if (label.empty()) {
            return false;
        }
        // sub-domain = Let-dig [Ldh-str]; U-labels (RFC 6531) are taken as UTF-8
        // bytes in the same places; IDNA validity is the resolver's business.
        const auto ok_end = [&](char c) { return is_let_dig(c) || (allow_utf8 && is_high(c)); };
        if (!ok_end(label.front()) || !ok_end(label.back())) {
            return false;
        }
        for (const char c : label) {
            if (!ok_end(c) && c != '-') {
                return false;
            }
        }
        if (end == domain.size()) {
            break;
        }
        start = end + 1;
    }
    return true;
}

bool is_valid_address_literal(std::string_view literal) {
    if (literal.size() < 3 || literal.front() != '[' || literal.back() != ']') {
        return false;
    }
    const std::string_view inner = literal.substr(1, literal.size() - 2);
    const std::size_t colon = inner.find(':');
    if (colon == std::string_view::npos) {
        return is_valid_ipv4(inner);
    }
    const std::string_view tag = inner.substr(0, colon);
    const std::string_view content = inner.substr(colon + 1);
    if (iequals(tag, "IPv6")) {
        // inet_pton stops at a NUL: "[IPv6:::1<NUL>junk]" would pass whole (a fuzz finding).
        if (content.find_first_not_of("0123456789abcdefABCDEF:.") != std::string_view::npos) {
            return false;
        }
        std::array<unsigned char, 16> buf{};
        const std::string text(content);
        return inet_pton(AF_INET6, text.c_str(), buf.data()) == 1;
    }
    // General-address-literal = Standardized-tag ":" 1*dcontent
    if (tag.empty() || !is_let_dig(tag.back()) || content.empty()) {
        return false;
    }
    for (const char c : tag) {
        if (!is_let_dig(c) && c != '-') {
            return false;
        }
    }
    for (const char c : content) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 33 || u > 126 || c == '[' || c == ']' || c == '\\') {
            return false;
        }
    }
    return true;
}

bool is_valid_mailbox(std::string_view mailbox, bool allow_utf8) {
    if (allow_utf8 && !is_valid_utf8(mailbox)) {
        return false;
    }
    const std::size_t at = find_at(mailbox);
    if (at == std::string_view::npos || at == 0 || at + 1 >= mailbox.size()) {
        return false;
    }
    const std::string_view local = mailbox.substr(0, at);
    const std::string_view domain = mailbox.substr(at + 1);
    if (!is_valid_local_part(local, allow_utf8)) {
        return false;
    }
    if (domain.front() == '[') {
        return is_valid_address_literal(domain);
    }
    return is_valid_domain(domain, allow_utf8);
}

tl::expected<ParsedPath, PathError> parse_path(std::string_view text, const PathOptions& options) {
    if (text.empty() || text.front() != '<') {
        return tl::unexpected(PathError::kSyntax);
    }
    // Find the closing '>' outside a quoted local part.
    std::size_t close = std::string_view::npos;
    bool quoted = false;
    for (std::size_t i = 1; i < text.size(); ++i) {
        const char c = text[i];
        if (quoted) {
            if (c == '\\') {
                ++i;
            } else if (c == '"') {
                quoted = false;
            }
        } else if (c == '"') {
            quoted = true;
        } else if (c == '>') {
            close = i;
            break;
        }
    }
    if (close == std::string_view::npos) {
        return tl::unexpected(PathError::kSyntax);
    }
    if (close + 1 > kMaxPathLength) {
        return tl::unexpected(PathError::kTooLong);
    }
    std::string_view inner = text.substr(1, close - 1);
    std::string_view rest = text.substr(close + 1);
    if (!rest.empty() && rest.front() != ' ') {
        return tl::unexpected(PathError::kSyntax);
    }
    while (!rest.empty() && rest.front() == ' ') {
        rest.remove_prefix(1);
    }
    if (inner.empty()) {
        if (!options.allow_null) {
            return tl::unexpected(PathError::kSyntax);
        }
        return ParsedPath{"", false, rest};
    }
    // A-d-l ":" Mailbox: "@a.example,@b.example:user@c.example".
    if (inner.front() == '@') {
        const std::size_t colon = inner.find(':');
        if (colon == std::string_view::npos) {
            return tl::unexpected(PathError::kSyntax);
        }
        std::string_view route = inner.substr(0, colon);
        while (!route.empty()) {
            const std::size_t comma = route.find(',');
            const std::string_view hop = route.substr(0, comma);
            if (hop.size() < 2 || hop.front() != '@' || !is_valid_domain(hop.substr(1), false)) {
                return tl::unexpected(PathError::kSyntax);
            }
            route = comma == std::string_view::npos ? std::string_view() : route.substr(comma + 1);
        }
        inner = inner.substr(colon + 1);
    }
    const bool non_ascii = has_high(inner);
    if (non_ascii && !options.allow_utf8) {
        // Tell "UTF-8 without SMTPUTF8" apart from garbage so the reply can say so.
        return tl::unexpected(is_valid_mailbox(inner, true) ? PathError::kNonAscii
                                                            : PathError::kSyntax);
    }
    if (options.allow_postmaster && iequals(inner, "postmaster")) {
        return ParsedPath{std::string(inner), false, rest};
    }
    if (!is_valid_mailbox(inner, options.allow_utf8)) {
        return tl::unexpected(PathError::kSyntax);
    }
    return ParsedPath{std::string(inner), non_ascii, rest};
}

std::optional<std::vector<EsmtpParam>> parse_esmtp_params(std::string_view text, bool allow_utf8) {
    std::vector<EsmtpParam> out;
    while (!text.empty()) {
        const std::size_t sp = text.find(' ');
        const std::string_view item = text.substr(0, sp);
        text = sp == std::string_view::npos ? std::string_view() : text.substr(sp + 1);
        if (item.empty()) {
            continue; // tolerate runs of spaces
        }
        const std::size_t eq = item.find('=');
        const std::string_view key = item.substr(0, eq);
        if (key.empty() || !is_let_dig(key.front())) {
            return std::nullopt;
        }
        EsmtpParam p;
        for (const char c : key) {
            if (!is_let_dig(c) && c != '-') {
                return std::nullopt;
            }
            p.keyword += upper(c);
        }
        if (eq != std::string_view::npos) {
            const std::string_view value = item.substr(eq + 1);
            if (value.empty()) {
                return std::nullopt;
            }
            for (const char c : value) {
                const auto u = static_cast<unsigned char>(c);
                const bool ascii_ok = u >= 33 && u <= 126 && c != '=';
                if (!ascii_ok && !(allow_utf8 && u >= 0x80)) {
                    return std::nullopt;
                }
            }
            if (allow_utf8 && !is_valid_utf8(value)) {
                return std::nullopt;
            }
            p.value = std::string(value);
            p.has_value = true;
        }
        out.push_back(std::move(p));
    }
    return out;
}

std::optional<std::string> decode_xtext(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        const auto u = static_cast<unsigned char>(c);
        if (c == '+') {
            if (i + 2 >= text.size()) {
                return std::nullopt;
            }
            const int hi = hex_value(text[i + 1]);
            const int lo = hex_value(text[i + 2]);
            if (hi < 0 || lo < 0) {
                return std::nullopt;
            }
            out += static_cast<char>(hi * 16 + lo);
            i += 2;
        } else if (u < 33 || u > 126 || c == '=') {
            return std::nullopt;
        } else {
            out += c;
        }
    }
    return out;
}

std::string encode_xtext(std::string_view text) {
    constexpr std::string_view kHex = "0123456789ABCDEF";
    std::string out;
    out.reserve(text.size());
    for (const char c : text) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 33 || u > 126 || c == '+' || c == '=') {
            out += '+';
            out += kHex[u >> 4U];
            out += kHex[u & 15U];
        } else {
            out += c;
        }
    }
    return out;
}

std::optional<std::uint8_t> parse_notify(std::string_view value) {
    if (iequals(value, "NEVER")) {
        return kNotifyNever;
    }
    std::uint8_t bits = 0;
    while (true) {
        const std::size_t comma = value.find(',');
        const std::string_view word = value.substr(0, comma);
        std::uint8_t bit = 0;
        if (iequals(word, "SUCCESS")) {
            bit = kNotifySuccess;
        } else if (iequals(word, "FAILURE")) {
            bit = kNotifyFailure;
        } else if (iequals(word, "DELAY")) {
            bit = kNotifyDelay;
        } else {
            return std::nullopt; // includes NEVER mixed with others, and empty items
        }
        if ((bits & bit) != 0) {
            return std::nullopt;
        }
        bits = static_cast<std::uint8_t>(bits | bit);
        if (comma == std::string_view::npos) {
            return bits;
        }
        value.remove_prefix(comma + 1);
    }
}

std::string format_notify(std::uint8_t bits) {
    if ((bits & kNotifyNever) != 0) {
        return "NEVER";
    }
    std::string out;
    for (const auto& [bit, word] :
         {std::pair{kNotifySuccess, "SUCCESS"}, std::pair{kNotifyFailure, "FAILURE"},
          std::pair{kNotifyDelay, "DELAY"}}) {
        if ((bits & bit) != 0) {
            out += out.empty() ? "" : ",";
            out += word;
        }
    }
    return out;
}

std::string format_orcpt(std::string_view orcpt) {
    const std::size_t semi = orcpt.find(';');
    if (semi == std::string_view::npos) {
        return "rfc822;" + encode_xtext(orcpt);
    }
    return std::string(orcpt.substr(0, semi + 1)) + encode_xtext(orcpt.substr(semi + 1));
}

std::optional<std::string> parse_orcpt(std::string_view value, bool allow_utf8) {
    const std::size_t semi = value.find(';');
    if (semi == std::string_view::npos || semi == 0 || semi + 1 >= value.size()) {
        return std::nullopt;
    }
    const std::string_view type = value.substr(0, semi);
    for (const char c : type) {
        if (!is_atext(c)) {
            return std::nullopt;
        }
    }
    const bool utf8_type = iequals(type, "utf-8");
    std::optional<std::string> decoded;
    if (utf8_type && allow_utf8 && has_high(value.substr(semi + 1))) {
        // RFC 6533 utf-8-addr-xtext carries raw UTF-8; only '+' and '=' are encoded.
        const std::string_view raw = value.substr(semi + 1);
        if (!is_valid_utf8(raw)) {
            return std::nullopt;
        }
        std::string ascii_part;
        decoded = std::string();
        for (std::size_t i = 0; i < raw.size(); ++i) {
            if (is_high(raw[i])) {
                *decoded += raw[i];
                continue;
            }
            std::size_t j = i;
            while (j < raw.size() && !is_high(raw[j])) {
                ++j;
            }
            const auto piece = decode_xtext(raw.substr(i, j - i));
            if (!piece) {
                return std::nullopt;
            }
            *decoded += *piece;
            i = j - 1;
        }
    } else {
        decoded = decode_xtext(value.substr(semi + 1));
    }
    if (!decoded || decoded->empty()) {
        return std::nullopt;
    }
    for (const char c : *decoded) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 32 || u == 127) {
            return std::nullopt;
        }
    }
    if (has_high(*decoded) && !(utf8_type && allow_utf8 && is_valid_utf8(*decoded))) {
        return std::nullopt;
    }
    return std::string(type) + ";" + *decoded;
}

std::optional<std::string> parse_envid(std::string_view value) {
    auto decoded = decode_xtext(value);
    if (!decoded || decoded->empty() || decoded->size() > kMaxEnvidLength) {
        return std::nullopt;
    }
    for (const char c : *decoded) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 32 || u > 126) {
            return std::nullopt;
        }
    }
    return decoded;
}

} // namespace spoold::address
