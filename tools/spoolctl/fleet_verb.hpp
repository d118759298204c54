// `spoolctl fleet status [--json]`: every live node of the fleet (as Redis holds their
// published status), the totals, and each mailstore's slot holders. Reads Redis only:
// it needs --config with fleet.redis, and it changes nothing.
#pragma once

#include "tools/spoolctl/verbs.hpp"

namespace spoold::spoolctl {

int verb_fleet(Context& ctx);

} // namespace spoold::spoolctl
