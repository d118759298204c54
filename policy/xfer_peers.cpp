#include "policy/xfer_peers.hpp"

#include <algorithm>

namespace spoold::policy {

XferPeers::XferPeers(const Config& config) {
    for (const auto& net : config.xfer.peers) {
        if (auto cidr = parse_cidr(net)) {
            networks_.push_back(*cidr);
        }
    }
}

bool XferPeers::trusts(std::string_view client_address) const {
    if (networks_.empty()) {
        return false;
    }
    const auto ip = parse_ip(client_address);
    return ip && std::any_of(networks_.begin(), networks_.end(),
                             [&](const Cidr& c) { return c.contains(*ip); });
}

} // namespace spoold::policy
