// The Sendmail macros milters read ({client_addr}, i, j, ...): what spoold knows of a
// session, gathered as it goes, and the set sent before each protocol step (ours, or the
// list the filter asked for in its option negotiation). No I/O.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "milter/codec.hpp"

namespace spoold::milter {

class MacroValues {
public:
    // Sets (or, with an empty value, forgets) a macro; names as milters write them:
    // "i", "j", "{client_addr}".
    void set(std::string name, std::string value);
    const std::string* get(std::string_view name) const;

    // The macros to send before the step of `stage`: the names in `wanted` (space
    // separated, as the filter's option negotiation gave them) that have a value, or our
    // own list for the stage when `wanted` is empty.
    Macros for_stage(MacroStage stage, std::string_view wanted) const;

private:
    std::map<std::string, std::string, std::less<>> values_;
};

// "client_addr" and "{client_addr}" name the same macro; one-letter names stay bare.
std::string macro_name(std::string_view name);

} // namespace spoold::milter
