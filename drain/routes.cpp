#include "drain/routes.hpp"

#include <algorithm>

#include "common/address.hpp"
#include "common/log.hpp"
#include "spool/record.hpp"
#include "spool/spool.hpp"

namespace spoold::drain {

void Routes::rebuild(const policy::Config& config, const std::vector<std::string>& running) {
    domains_.clear();
    default_store_ = 0;
    bool have_default = false;
    for (const auto& mc : config.mailstores) {
        // By name: the connectors are built once, a reload may only move domains.
        const auto it = std::find(running.begin(), running.end(), mc.name);
        if (it == running.end()) {
            log::warn("event=drain_route_skipped mailstore={} note=\"not running; a new mailstore "
                      "needs a restart\"",
                      log::quote(mc.name));
            continue;
        }
        const auto index = static_cast<std::size_t>(it - running.begin());
        if (mc.domains.empty() && !have_default) {
            default_store_ = index;
            have_default = true;
        }
        for (const auto& d : mc.domains) {
            domains_.emplace(d, index);
        }
    }
}

std::size_t Routes::route(std::string_view address, std::uint32_t flags) const {
    if (relay_ && (flags & spool::kFlagDsn) != 0) {
        return *relay_;
    }
    return route_domain(spool::record::domain_of(address));
}

std::size_t Routes::route_domain(std::string_view domain) const {
    if (domain == spool::record::kDsnDomain) {
        return relay_.value_or(default_store_);
    }
    if (domains_.empty() || domain.empty()) {
        return default_store_;
    }
    const auto it = domains_.find(address::ascii_lower(domain));
    return it == domains_.end() ? default_store_ : it->second;
}

} // namespace spoold::drain
