#include "drain/recipient_groups.hpp"

#include <algorithm>

namespace spoold::drain {

std::vector<Group> group_by_store(const spool::Envelope& env, const Routes& routes,
                                  const std::vector<std::size_t>& taken) {
    std::vector<Group> groups;
    for (std::uint32_t i = 0; i < env.recipients.size(); ++i) {
        if (env.recipients[i].state != spool::RcptState::kQueued) {
            continue;
        }
        const std::size_t st = routes.route(env.recipients[i].address, env.flags);
        if (std::find(taken.begin(), taken.end(), st) == taken.end()) {
            continue;
        }
        auto g = std::find_if(groups.begin(), groups.end(),
                              [&](const Group& x) { return x.store == st; });
        if (g == groups.end()) {
            groups.push_back(Group{st, {}});
            g = groups.end() - 1;
        }
        g->indexes.push_back(i);
    }
    return groups;
}

} // namespace spoold::drain
