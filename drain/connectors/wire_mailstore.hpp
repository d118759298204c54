// The LMTP and SMTP mailstores: a small pool of reused Connections per mailstore, a
// dead pooled connection retried once on a fresh one, and probe(). The protocol is in
// ClientSession, the socket work in Connection; this file only manages connections.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "drain/connectors/connection.hpp"
#include "drain/connectors/options.hpp"
#include "drain/mailstore.hpp"
#include "policy/config.hpp"

namespace spoold::drain::connectors {

// While connections sit idle a sweeper timer is pending on the executor, so an
// io_context.run() returns only idle_timeout after the last delivery (or once the
// mailstore is destroyed); a daemon never notices, a one-shot tool should stop().
// Results from these connectors always carry one reply per recipient in
// per_recipient; session_reply is set as well when the session failed before any
// recipient had a final answer. A recipient answered 2xx after the final dot never
// takes a later failure (it was delivered; retrying it would duplicate the message).
class WireMailstore : public Mailstore {
public:
    WireMailstore(boost::asio::any_io_executor executor, std::string name, WireOptions wire,
                  ConnectorOptions options);
    ~WireMailstore() override;

    const std::string& name() const override { return name_; }
    // Safe to call concurrently from several coroutines (each takes its own connection).
    boost::asio::awaitable<DeliveryResult> deliver(DeliveryRequest request) override;
    // A fresh connection (never a pooled one): connect, greeting, LHLO/EHLO, QUIT.
    boost::asio::awaitable<Status> probe() override;

    // For tests and status: connections opened so far, idle connections now.
    std::uint64_t connections_opened() const { return opened_.load(); }
    std::size_t idle_connections() const;

private:
    std::unique_ptr<Connection> take_idle();
    void give_back(std::unique_ptr<Connection> conn);
    boost::asio::awaitable<tl::expected<std::unique_ptr<Connection>, WireFailure>> open_fresh();

    // Shared with the sweeper coroutine, which runs only while connections are idle
    // and closes each one idle_timeout after its last use.
    struct Pool {
        explicit Pool(const boost::asio::any_io_executor& executor) : timer(executor) {}
        std::mutex mutex;
        std::vector<std::unique_ptr<Connection>> idle; // most recently used last
        boost::asio::steady_timer timer;
        bool sweeping = false;
        bool stopped = false;
    };
    static boost::asio::awaitable<void> sweep(std::shared_ptr<Pool> pool,
                                              std::chrono::milliseconds idle_timeout);

    boost::asio::any_io_executor executor_;
    std::string name_;
    std::shared_ptr<const WireOptions> wire_;
    ConnectorOptions options_;
    std::shared_ptr<Pool> pool_;
    std::atomic<std::uint64_t> opened_{0};
};

// LMTP (RFC 2033) to Dovecot or any LMTP server, over TCP (host, port) or a Unix
// socket (unix_socket when set). One reply per accepted recipient after the dot.
class LmtpMailstore final : public WireMailstore {
public:
    LmtpMailstore(boost::asio::any_io_executor executor, const policy::MailstoreConfig& config,
                  const ConnectorOptions& options);
};

// SMTP (RFC 5321) to a mailstore fronted by SMTP, or the DSN smarthost: EHLO,
// STARTTLS when offered and config.starttls (see ConnectorOptions::tls_verify), one
// reply after the dot that every accepted recipient takes.
class SmtpMailstore final : public WireMailstore {
public:
    SmtpMailstore(boost::asio::any_io_executor executor, const policy::MailstoreConfig& config,
                  const ConnectorOptions& options);
};

} // namespace spoold::drain::connectors
