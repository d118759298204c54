#include "drain/connectors/connectors.hpp"

#include "drain/connectors/maildir_mailstore.hpp"
#include "drain/connectors/wire_mailstore.hpp"

namespace spoold::drain::connectors {

std::unique_ptr<Mailstore> make_mailstore(boost::asio::any_io_executor executor,
                                          const policy::MailstoreConfig& config,
                                          ConnectorOptions options) {
    switch (config.kind) {
    case policy::MailstoreKind::kLmtp:
        return std::make_unique<LmtpMailstore>(std::move(executor), config, std::move(options));
    case policy::MailstoreKind::kSmtp:
        return std::make_unique<SmtpMailstore>(std::move(executor), config, std::move(options));
    case policy::MailstoreKind::kMaildir: break;
    }
    return std::make_unique<MaildirMailstore>(std::move(executor), config, std::move(options));
}

std::unique_ptr<Mailstore> make_smarthost(boost::asio::any_io_executor executor,
                                          const policy::BounceConfig& bounces,
                                          const ConnectorOptions& options) {
    policy::MailstoreConfig config;
    config.name = "smarthost";
    config.kind = policy::MailstoreKind::kSmtp;
    config.host = bounces.smarthost;
    config.port = bounces.smarthost_port;
    config.starttls = bounces.smarthost_starttls;
    config.connect_timeout = bounces.smarthost_connect_timeout;
    config.command_timeout = bounces.smarthost_command_timeout;
    config.data_timeout = bounces.smarthost_data_timeout;
    return std::make_unique<SmtpMailstore>(std::move(executor), config, options);
}

} // namespace spoold::drain::connectors
