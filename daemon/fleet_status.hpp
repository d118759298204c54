// What this node publishes about itself to the fleet (backlog per class, oldest message,
// drain rate, each mailstore's breaker and budget), built from one status sample. It
// talks to no Redis: the fleet's Coordinator sends it.
#pragma once

#include "daemon/status_reporter.hpp"
#include "fleet/view.hpp"

namespace spoold::daemon {

fleet::NodeStatus fleet_node_status(const StatusInputs& in);

} // namespace spoold::daemon
