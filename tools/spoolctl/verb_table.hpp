// The one table of spoolctl's verbs, as OpenSMTPD's smtpctl has one: each verb's name,
// whether it writes, the options it takes, its --help entry and the function that runs it.
// Parsing, --help and dispatch all read it; no other place lists the verbs.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

namespace spoold::spoolctl {

struct Context;

// The options a verb may take, one bit each. The global options (--spool, --config,
// --help) have no bit: every verb takes them.
using OptionSet = std::uint32_t;
namespace opt {
inline constexpr OptionSet kClass = 1U << 0U;
inline constexpr OptionSet kState = 1U << 1U;
inline constexpr OptionSet kHeld = 1U << 2U;
inline constexpr OptionSet kSender = 1U << 3U;
inline constexpr OptionSet kRecipient = 1U << 4U;
inline constexpr OptionSet kOlderThan = 1U << 5U;
inline constexpr OptionSet kNewerThan = 1U << 6U;
inline constexpr OptionSet kMinSize = 1U << 7U;
inline constexpr OptionSet kMaxSize = 1U << 8U;
inline constexpr OptionSet kAll = 1U << 9U;
inline constexpr OptionSet kLimit = 1U << 10U;
inline constexpr OptionSet kJson = 1U << 11U;
inline constexpr OptionSet kNoHeader = 1U << 12U;
inline constexpr OptionSet kYes = 1U << 13U;
inline constexpr OptionSet kBody = 1U << 14U;
inline constexpr OptionSet kBodies = 1U << 15U;
inline constexpr OptionSet kRepair = 1U << 16U;
inline constexpr OptionSet kMailstore = 1U << 17U;
inline constexpr OptionSet kDir = 1U << 18U;
inline constexpr OptionSet kMbox = 1U << 19U;
inline constexpr OptionSet kAppend = 1U << 20U;
inline constexpr OptionSet kWithEnvelope = 1U << 21U;
inline constexpr OptionSet kFrom = 1U << 22U;
inline constexpr OptionSet kTo = 1U << 23U;
// The filter: which messages a verb acts on (tools/spoolctl/filter.hpp).
inline constexpr OptionSet kFilter =
    kClass | kState | kHeld | kSender | kRecipient | kOlderThan | kNewerThan | kMinSize | kMaxSize;
} // namespace opt

struct Verb {
    std::string_view name;
    bool writes = false;       // false: the spool is opened read-only
    OptionSet writes_with = 0; // options that make a reading verb write (check --repair)
    OptionSet options = 0;     // what it takes besides the global options
    std::string_view synopsis; // its --help line, as shown
    std::string_view help;     // what it does: lines continued under the first
    int (*run)(Context&) = nullptr;
};

// Every verb, in the order --help lists them.
std::span<const Verb> verbs();
// nullptr when there is no such verb.
const Verb* find_verb(std::string_view name);

} // namespace spoold::spoolctl
