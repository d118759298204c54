#include "daemon/fleet_status.hpp"

#include <algorithm>
#include <string>

namespace spoold::daemon {

fleet::NodeStatus fleet_node_status(const StatusInputs& in) {
    fleet::NodeStatus s;
    const auto state = [&](std::size_t klass, spool::MsgState st) {
        return in.counters->messages[klass][static_cast<std::size_t>(st)];
    };
    for (std::size_t i = 0; i < in.config->classes.size(); ++i) {
        s.classes.push_back(fleet::NodeClassCounts{
            in.config->classes[i].name, state(i, spool::MsgState::kReady),
            state(i, spool::MsgState::kDeferred), state(i, spool::MsgState::kHeld)});
    }
    s.oldest_age_s =
        in.oldest ? std::max(0.0, static_cast<double>(in.now_ms - in.oldest->millis()) / 1000.0)
                  : 0.0;
    s.drain_rate = in.drain->rate_per_s;
    for (const auto& m : in.drain->mailstores) {
        s.mailstores.push_back(
            fleet::NodeStoreStatus{m.name, std::string(drain::to_string(m.breaker)), m.in_flight,
                                   drain::to_string(m.budget.mode), m.budget.concurrency});
    }
    return s;
}

} // namespace spoold::daemon
