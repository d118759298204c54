// Which messages a spoolctl verb applies to: the --class/--state/--sender/--recipient/
// age/size options as one predicate over an envelope. Pure: the caller passes the
// message state and the current time; nothing here reads the spool.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "spool/spool.hpp"

namespace spoold::spoolctl {

// An address pattern as operators write it: "user@example.org" (whole address),
// "@example.org" or "example.org" (any address at that domain). Case-insensitive;
// "<>" matches the null sender only.
class AddressPattern {
public:
    static std::optional<AddressPattern> parse(std::string_view text);
    bool matches(std::string_view address) const;
    // The whole address it matches (lower case); none for a domain or the null sender.
    std::optional<std::string_view> address() const;
    // The same whole address, and its "+tag" forms: the local part, `delimiter`, anything.
    AddressPattern with_tags(char delimiter) const;
    char tag_delimiter() const { return tag_; } // 0: no tag forms

    friend bool operator==(const AddressPattern&, const AddressPattern&) = default;

private:
    std::string text_; // lower case; for a domain pattern, the domain without '@'
    bool domain_ = false;
    bool null_sender_ = false;
    char tag_ = 0;
};

struct Filter {
    std::optional<spool::ClassId> klass;
    std::optional<spool::MsgState> state;
    std::vector<AddressPattern> senders;    // any of them
    std::vector<AddressPattern> recipients; // any of them, against any recipient not yet final
    std::optional<std::int64_t> older_than_ms;
    std::optional<std::int64_t> newer_than_ms;
    std::optional<std::uint64_t> min_size;
    std::optional<std::uint64_t> max_size;

    // True when no condition is set (the filter matches every message).
    bool empty() const;
    bool matches(const spool::Envelope& env, spool::MsgState state, UnixMillis now_ms) const;
};

// The addresses whose mail is delivered to `address` (the directory's aliases of it).
using AliasesOf = std::function<std::vector<std::string>(std::string_view address)>;
// Aliases are followed back this many steps (the directory follows them forward as deep).
inline constexpr int kMaxAliasSteps = 8;

// A recipient pattern naming a whole address stands for the mailbox's mail: the address,
// the aliases that deliver to it (followed back through `aliases_of`, when given), and, with a
// `delimiter`, the "+tag" forms of each. Domain patterns and the rest are kept as they are.
Filter for_mailboxes(Filter filter, char delimiter, const AliasesOf& aliases_of);

} // namespace spoold::spoolctl
