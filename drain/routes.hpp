// Where each recipient is delivered: the mailstore listing its domain, else the default
// (the first without `domains`); our DSNs go to the smarthost once one is set. A table
// rebuilt on reload; health and room are not its business.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "policy/config.hpp"

namespace spoold::drain {

class Routes {
public:
    // `running` names the mailstores the drain has connectors for, by store index. A
    // configured mailstore that is not running gets no route (a new one needs a restart).
    void rebuild(const policy::Config& config, const std::vector<std::string>& running);
    // Our DSNs (spool::kFlagDsn) go to store `relay` from now on.
    void set_dsn_relay(std::size_t relay) { relay_ = relay; }
    std::optional<std::size_t> dsn_relay() const { return relay_; }

    // The store a recipient of a message with envelope `flags` goes to.
    std::size_t route(std::string_view address, std::uint32_t flags) const;
    // The store mail of one domain of the spool's ready-by-domain index goes to (its key for
    // our DSNs goes to the smarthost, when one is set).
    std::size_t route_domain(std::string_view domain) const;

private:
    std::unordered_map<std::string, std::size_t> domains_; // lower-cased domain -> store
    std::size_t default_store_ = 0;
    std::optional<std::size_t> relay_;
};

} // namespace spoold::drain
