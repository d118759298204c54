#include "drain/connectors/wire_mailstore.hpp"

#include <algorithm>
#include <fmt/format.h>

#include "common/log.hpp"

namespace spoold::drain::connectors {

namespace asio = boost::asio;

namespace {

WireOptions wire_options(const policy::MailstoreConfig& config, const ConnectorOptions& options,
                         Dialect dialect) {
    WireOptions w;
    w.dialect = dialect;
    w.host = config.host;
    w.port = config.port;
    w.unix_socket = dialect == Dialect::kLmtp ? config.unix_socket : std::string();
    w.helo_name = options.hostname;
    w.connect_timeout = config.connect_timeout;
    w.command_timeout = config.command_timeout;
    w.data_timeout = config.data_timeout;
    w.body_piece_bytes = options.body_piece_bytes;
    if (dialect == Dialect::kSmtp && config.starttls) {
        w.starttls = true;
        w.tls_verify = options.tls_verify;
        auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
        if (options.tls_verify) {
            ctx->set_default_verify_paths();
            ctx->set_verify_mode(asio::ssl::verify_peer);
        } else {
            ctx->set_verify_mode(asio::ssl::verify_none);
        }
        w.tls = std::move(ctx);
    }
    return w;
}

DeliveryResult failure_result(const DeliveryRequest& request, const WireFailure& failure) {
    DeliveryResult result;
    result.session_reply = failure.reply;
    result.mailstore_trouble = true;
    result.per_recipient.assign(request.recipients.size(), failure.reply);
    return result;
}

} // namespace

WireMailstore::WireMailstore(asio::any_io_executor executor, std::string name, WireOptions wire,
                             ConnectorOptions options)
    : executor_(std::move(executor)), name_(std::move(name)),
      wire_(std::make_shared<const WireOptions>(std::move(wire))), options_(std::move(options)) {}

WireMailstore::~WireMailstore() = default;

std::size_t WireMailstore::idle_connections() const {
    const std::lock_guard lock(mutex_);
    return idle_.size();
}

std::unique_ptr<Connection> WireMailstore::take_idle() {
    const std::lock_guard lock(mutex_);
    const auto oldest_allowed = std::chrono::steady_clock::now() - options_.idle_timeout;
    // Idle connections past the bound are closed here rather than by a timer: nothing
    // else needs to outlive the mailstore, and a server that dropped one earlier only
    // costs the single retry on a fresh connection.
    std::erase_if(idle_, [&](const std::unique_ptr<Connection>& c) {
        return !c->usable() || c->idle_since() < oldest_allowed;
    });
    if (idle_.empty()) {
        return nullptr;
    }
    auto conn = std::move(idle_.back());
    idle_.pop_back();
    return conn;
}

void WireMailstore::give_back(std::unique_ptr<Connection> conn) {
    conn->mark_idle();
    const std::lock_guard lock(mutex_);
    idle_.push_back(std::move(conn));
    if (idle_.size() > options_.max_idle_connections) {
        idle_.erase(idle_.begin()); // the least recently used goes
    }
}

asio::awaitable<tl::expected<std::unique_ptr<Connection>, WireFailure>> WireMailstore::open_fresh() {
    opened_.fetch_add(1);
    co_return co_await Connection::open(executor_, wire_);
}

asio::awaitable<DeliveryResult> WireMailstore::deliver(DeliveryRequest request) {
    auto conn = take_idle();
    const bool reused = conn != nullptr;
    if (!conn) {
        auto opened = co_await open_fresh();
        if (!opened) {
            log::warn("event=mailstore_connect_failed mailstore={} id={} reply={}", name_,
                      request.id.text(), log::quote(opened.error().reply.summary()));
            co_return failure_result(request, opened.error());
        }
        conn = std::move(*opened);
    }
    auto outcome = co_await conn->deliver(request);
    if (outcome.retry_on_fresh && reused) {
        log::info("event=mailstore_stale_connection mailstore={} id={}", name_, request.id.text());
        conn.reset();
        auto opened = co_await open_fresh();
        if (!opened) {
            co_return failure_result(request, opened.error());
        }
        conn = std::move(*opened);
        outcome = co_await conn->deliver(request);
    }
    if (conn->usable()) {
        give_back(std::move(conn));
    }
    co_return std::move(outcome.result);
}

asio::awaitable<Status> WireMailstore::probe() {
    auto opened = co_await open_fresh();
    if (!opened) {
        co_return fail(opened.error().timed_out ? ErrorKind::kTimeout : ErrorKind::kUnavailable,
                       opened.error().reply.summary());
    }
    co_await (*opened)->quit();
    co_return Status{};
}

LmtpMailstore::LmtpMailstore(asio::any_io_executor executor, const policy::MailstoreConfig& config,
                             ConnectorOptions options)
    : WireMailstore(std::move(executor), config.name, wire_options(config, options, Dialect::kLmtp),
                    options) {}

SmtpMailstore::SmtpMailstore(asio::any_io_executor executor, const policy::MailstoreConfig& config,
                             ConnectorOptions options)
    : WireMailstore(std::move(executor), config.name, wire_options(config, options, Dialect::kSmtp),
                    options) {}

} // namespace spoold::drain::connectors
