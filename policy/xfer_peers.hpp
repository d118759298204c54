// Which clients may claim a message's class, arrival and expiry (spoolctl xfer between
// nodes): xfer.peers compiled once. The claim's syntax is common/xfer_claim's; what a
// trusted claim changes is the daemon's classification.
#pragma once

#include <string_view>
#include <vector>

#include "policy/cidr.hpp"
#include "policy/config.hpp"

namespace spoold::policy {

class XferPeers {
public:
    XferPeers() = default;
    // The networks are validated when the config loads.
    explicit XferPeers(const Config& config);

    // True when `client_address` (as SMTP records it) is in one of the networks.
    bool trusts(std::string_view client_address) const;

private:
    std::vector<Cidr> networks_;
};

} // namespace spoold::policy
