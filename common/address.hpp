// Mail addresses and SMTP/LMTP command arguments: RFC 5321 paths (quoted local parts,
// domain literals, RFC 6531 UTF-8), ESMTP parameters, RFC 3461 xtext and DSN values.
// Pure parsing: no policy (which domains are ours) and no reply codes live here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <tl/expected.hpp>

namespace spoold::address {

// RFC 5321 4.5.3.1.3: a path is at most 256 octets including the angle brackets.
inline constexpr std::size_t kMaxPathLength = 256;
inline constexpr std::size_t kMaxDomainLength = 255;
// RFC 3461 4.4: ENVID at most 100 characters.
inline constexpr std::size_t kMaxEnvidLength = 100;

enum class PathError {
    kSyntax,   // not an RFC 5321 (or RFC 6531) path
    kNonAscii, // UTF-8 in the address but SMTPUTF8 was not allowed: 553 5.6.7
    kTooLong,  // over kMaxPathLength
};

struct PathOptions {
    bool allow_null = false;       // "<>" (MAIL FROM only)
    bool allow_utf8 = false;       // RFC 6531 SMTPUTF8 in effect
    bool allow_postmaster = false; // bare "<Postmaster>" (RCPT TO only, RFC 5321 4.1.1.3)
};

struct ParsedPath {
    std::string address;    // local@domain without brackets and source route; "" for <>
    bool non_ascii = false; // address holds UTF-8 (the spool then needs SMTPUTF8 downstream)
    std::string_view rest;  // text after '>', leading spaces skipped (the ESMTP parameters)
};

// Parses "<...>" at the start of `text`. The source route of RFC 5321 (A-d-l) is
// accepted and dropped, as 4.1.1.3 tells servers to.
tl::expected<ParsedPath, PathError> parse_path(std::string_view text, const PathOptions& options);

// Mailbox = Local-part "@" ( Domain / address-literal ), without brackets.
bool is_valid_mailbox(std::string_view mailbox, bool allow_utf8);
// Dotted sub-domains of letters, digits and hyphens (or U-labels when allow_utf8).
bool is_valid_domain(std::string_view domain, bool allow_utf8);
// "[192.0.2.1]", "[IPv6:2001:db8::1]" or a General-address-literal "[tag:content]".
bool is_valid_address_literal(std::string_view literal);
// Well-formed UTF-8 (RFC 3629: no overlongs, no surrogates, at most U+10FFFF).
bool is_valid_utf8(std::string_view text);

struct EsmtpParam {
    std::string keyword; // upper-cased
    std::string value;   // as given
    bool has_value = false;
};

// "KEY=value KEY2 ..." after a path. Keywords are checked against RFC 5321
// esmtp-keyword; values against esmtp-value (UTF-8 allowed when allow_utf8).
// Returns nullopt on a syntax error.
std::optional<std::vector<EsmtpParam>> parse_esmtp_params(std::string_view text, bool allow_utf8);

// RFC 3461 4: xtext. Decoding rejects '+' not followed by two upper-case hex digits
// and characters outside 33..126 or '='.
std::optional<std::string> decode_xtext(std::string_view text);
std::string encode_xtext(std::string_view text);

// RFC 3461 NOTIFY bits; the numbers equal spool::NotifyBits (smtp/ may not include
// the spool, and 0 means "no NOTIFY given" in both).
inline constexpr std::uint8_t kNotifyNever = 1;
inline constexpr std::uint8_t kNotifySuccess = 2;
inline constexpr std::uint8_t kNotifyFailure = 4;
inline constexpr std::uint8_t kNotifyDelay = 8;

// "NEVER" or a comma list of SUCCESS, FAILURE, DELAY (case-insensitive, no repeats).
std::optional<std::uint8_t> parse_notify(std::string_view value);
// The NOTIFY value for `bits` (not 0), as parse_notify reads it back.
std::string format_notify(std::uint8_t bits);

// ORCPT=addr-type;xtext -> "addr-type;decoded" (the form a DSN's Original-Recipient
// field takes). addr-type "rfc822" needs printable ASCII after decoding; "utf-8"
// (RFC 6533) allows UTF-8 when allow_utf8.
std::optional<std::string> parse_orcpt(std::string_view value, bool allow_utf8);
// "addr-type;decoded" -> the ORCPT value for a next hop, "addr-type;xtext".
std::string format_orcpt(std::string_view orcpt);

// ENVID=xtext, decoded; printable ASCII, at most kMaxEnvidLength characters.
std::optional<std::string> parse_envid(std::string_view value);

// ASCII case-insensitive comparison, for verbs and keywords.
bool iequals(std::string_view a, std::string_view b);
// ASCII lower case (bytes >= 0x80 kept): how addresses, domains and keywords are compared;
// local parts too, as Dovecot does by default (auth_username_format %Lu).
std::string ascii_lower(std::string_view s);

} // namespace spoold::address
