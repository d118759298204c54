#include "drain/connectors/wire_mailstore.hpp"

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>

#include "common/log.hpp"
#include "common/escaped.hpp"

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
      wire_(std::make_shared<const WireOptions>(std::move(wire))), options_(std::move(options)),
      pool_(std::make_shared<Pool>(executor_)) {}

WireMailstore::~WireMailstore() {
    {
        const std::lock_guard lock(pool_->mutex);
        pool_->stopped = true;
        pool_->idle.clear();
    }
    pool_->timer.cancel(); // the sweeper wakes, sees `stopped` and ends
}

std::size_t WireMailstore::idle_connections() const {
    const std::lock_guard lock(pool_->mutex);
    return pool_->idle.size();
}

namespace {

void drop_expired(std::vector<std::unique_ptr<Connection>>& idle,
                  std::chrono::milliseconds idle_timeout) {
    const auto oldest_allowed = std::chrono::steady_clock::now() - idle_timeout;
    std::erase_if(idle, [&](const std::unique_ptr<Connection>& c) {
        return !c->usable() || c->idle_since() < oldest_allowed;
    });
}

} // namespace

std::unique_ptr<Connection> WireMailstore::take_idle() {
    const std::lock_guard lock(pool_->mutex);
    drop_expired(pool_->idle, options_.idle_timeout);
    if (pool_->idle.empty()) {
        return nullptr;
    }
    auto conn = std::move(pool_->idle.back());
    pool_->idle.pop_back();
    return conn;
}

void WireMailstore::give_back(std::unique_ptr<Connection> conn) {
    conn->mark_idle();
    bool start_sweeper = false;
    {
        const std::lock_guard lock(pool_->mutex);
        pool_->idle.push_back(std::move(conn));
        if (pool_->idle.size() > options_.max_idle_connections) {
            pool_->idle.erase(pool_->idle.begin()); // the least recently used goes
        }
        start_sweeper = !std::exchange(pool_->sweeping, true);
    }
    if (start_sweeper) {
        // Outside the lock: co_spawn may start the sweeper inline, and it locks too.
        asio::co_spawn(executor_, sweep(pool_, options_.idle_timeout),
                       [name = name_](const std::exception_ptr& e) {
                           if (e) {
                               log::error("event=connection_sweeper_failed mailstore={} error={}",
                                          name, log::quote(describe_escaped(e)));
                           }
                       });
    }
}

asio::awaitable<void> WireMailstore::sweep(std::shared_ptr<Pool> pool,
                                           std::chrono::milliseconds idle_timeout) {
    while (true) {
        {
            const std::lock_guard lock(pool->mutex);
            if (pool->stopped) {
                co_return;
            }
            drop_expired(pool->idle, idle_timeout);
            if (pool->idle.empty()) {
                pool->sweeping = false;
                co_return;
            }
            // The least recently used is first: wake when it expires.
            pool->timer.expires_at(pool->idle.front()->idle_since() + idle_timeout +
                                   std::chrono::milliseconds(1));
        }
        (void)co_await pool->timer.async_wait(asio::as_tuple(asio::use_awaitable));
    }
}

asio::awaitable<tl::expected<std::unique_ptr<Connection>, WireFailure>>
WireMailstore::open_fresh() {
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
    if (outcome.broke_off) {
        // A store that stalls, hangs up mid-reply or talks garbage: its recipients stay
        // queued (trouble), and this line says what it did.
        log::warn("event=mailstore_conversation_failed mailstore={} id={} reply={}", name_,
                  request.id.text(), log::quote(outcome.broke_off->summary()));
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
                             const ConnectorOptions& options)
    : WireMailstore(std::move(executor), config.name, wire_options(config, options, Dialect::kLmtp),
                    options) {}

SmtpMailstore::SmtpMailstore(asio::any_io_executor executor, const policy::MailstoreConfig& config,
                             const ConnectorOptions& options)
    : WireMailstore(std::move(executor), config.name, wire_options(config, options, Dialect::kSmtp),
                    options) {}

} // namespace spoold::drain::connectors
