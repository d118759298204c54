// The one entry point the daemon and the drain need: build the Mailstore a
// MailstoreConfig describes (Maildir, LMTP, SMTP). Construction does no I/O; a
// mailstore that cannot be reached shows up in probe() and deliver() results.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <memory>

#include "drain/connectors/options.hpp"
#include "drain/mailstore.hpp"
#include "policy/config.hpp"

namespace spoold::drain::connectors {

std::unique_ptr<Mailstore> make_mailstore(boost::asio::any_io_executor executor,
                                          const policy::MailstoreConfig& config,
                                          ConnectorOptions options = {});

// The SMTP relay that DSNs go out through, with its own address, timeouts and STARTTLS
// setting (policy::BounceConfig::smarthost*).
std::unique_ptr<Mailstore> make_smarthost(boost::asio::any_io_executor executor,
                                          const policy::BounceConfig& bounces,
                                          const ConnectorOptions& options = {});

} // namespace spoold::drain::connectors
