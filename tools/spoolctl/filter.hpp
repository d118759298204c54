// Which messages a spoolctl verb applies to: the --class/--state/--sender/--recipient/
// age/size options as one predicate over an envelope. Pure: the caller passes the
// message state and the current time; nothing here reads the spool.
#pragma once

#include <cstdint>
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

private:
    std::string text_; // lower case; for a domain pattern, the domain without '@'
    bool domain_ = false;
    bool null_sender_ = false;
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

} // namespace spoold::spoolctl
