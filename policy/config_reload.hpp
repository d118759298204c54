// What a SIGHUP does with each configuration key: applied at once, or used only from the
// next start. One entry per key of config_schema_keys() (a unit test fails when one has
// none); applying the keys is the daemon's job, this only classifies and compares.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "policy/config.hpp"

namespace spoold::policy {

enum class OnReload : std::uint8_t {
    kApplied, // a reload applies it (to sessions and deliveries that start afterwards)
    kRestart, // read once at start: a changed value waits for the next restart
    kByKeys,  // a mapping (`limits`): each of its keys has its own rule
};

struct ReloadRule {
    std::string_view key; // as config_schema_keys() spells it: "listeners[].port"
    OnReload on_reload = OnReload::kApplied;
    // kRestart only: the value the running process uses, as comparable text. List items
    // that are matched by name (mailstores) are compared by name, not by position. A list
    // (`listeners`) compares its items as a whole; when that differs, the keys of its items
    // are not named as well.
    std::string (*value)(const Config&) = nullptr;
    std::string_view note; // what changes at once when the key is only partly reloaded
};

// Every key of the schema, in schema order.
std::span<const ReloadRule> reload_rules();

// The kRestart keys whose value in `fresh` differs from the one the process started with
// (`running`), in schema order: what a reload to `fresh` leaves as it was.
std::vector<std::string> restart_needed(const Config& running, const Config& fresh);

} // namespace spoold::policy
