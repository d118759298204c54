#include "drain/routes.hpp"

#include <algorithm>

#include "common/log.hpp"
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
    if (domains_.empty()) {
        return default_store_;
    }
    const auto at = address.rfind('@');
    if (at == std::string_view::npos) {
        return default_store_;
    }
    std::string domain(address.substr(at + 1));
    std::transform(domain.begin(), domain.end(), domain.begin(), [](unsigned char c) {
        return static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    });
    const auto it = domains_.find(domain);
    return it == domains_.end() ? default_store_ : it->second;
}

} // namespace spoold::drain
