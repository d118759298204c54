// Turns a message's failed or expired recipients, its delivered ones that asked for
// NOTIFY=SUCCESS, or (a delay warning) its waiting ones into a spooled DSN (policy::build_dsn)
// for the DsnBuilder hook: null sender to the original sender, kFlagDsn (to the smarthost).
#pragma once

#include <memory>
#include <string_view>

#include "drain/drain.hpp"
#include "policy/config.hpp"
#include "spool/spool.hpp"

namespace spoold::daemon {

// Counts the DSNs the builder makes for recipients the mailstore said do not exist.
inline constexpr std::string_view kUnknownRecipientMetric = "spoold_dsns_unknown_recipient_total";

// `config` is read at each call (the daemon swaps it on reload through the holder).
drain::DsnBuilder
make_dsn_builder(spool::Spool& spool,
                 const std::shared_ptr<const std::shared_ptr<const policy::Config>>& config,
                 const Clock& clock);

} // namespace spoold::daemon
