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

std::unique_ptr<Mailstore> make_smarthost(boost::asio::any_io_executor executor, std::string host,
                                          std::uint16_t port,
                                          const policy::MailstoreConfig& timeouts_from,
                                          ConnectorOptions options) {
    policy::MailstoreConfig config = timeouts_from;
    config.name = "smarthost";
    config.kind = policy::MailstoreKind::kSmtp;
    config.host = std::move(host);
    config.port = port;
    config.unix_socket.clear();
    return std::make_unique<SmtpMailstore>(std::move(executor), config, std::move(options));
}

} // namespace spoold::drain::connectors
