#include "fleet/redis_client.hpp"

#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <deque>
#include <exception>
#include <fmt/format.h>
#include <openssl/evp.h>
#include <optional>

#include "common/log.hpp"
#include "common/escaped.hpp"

namespace spoold::fleet {

namespace asio = boost::asio;
using SteadyClock = std::chrono::steady_clock;

namespace {

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
// After a failed connect, calls fail at once for this long instead of each trying again:
// a Redis that is down must cost the drain nothing.
constexpr std::chrono::milliseconds kConnectBackoff{250};
constexpr std::size_t kReadBuffer = 16 * 1024;

std::string hex_sha1(const std::string& text) {
    std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
    unsigned int n = 0;
    if (EVP_Digest(text.data(), text.size(), digest.data(), &n, EVP_sha1(), nullptr) != 1) {
        throw std::runtime_error("SHA-1 of a Redis script failed");
    }
    std::string out;
    for (unsigned int i = 0; i < n; ++i) {
        out += fmt::format("{:02x}", digest[i]);
    }
    return out;
}

} // namespace

std::string RedisEndpoint::describe() const {
    if (!socket.empty()) {
        return socket;
    }
    return host.find(':') != std::string::npos ? fmt::format("[{}]:{}", host, port)
                                               : fmt::format("{}:{}", host, port);
}

RedisScript::RedisScript(std::string text) : source(std::move(text)), sha1(hex_sha1(source)) {}

struct RedisClient::Impl : std::enable_shared_from_this<Impl> {
    struct Waiter {
        explicit Waiter(const asio::any_io_executor& ex) : timer(ex) {}
        asio::steady_timer timer;
        std::optional<Result<RedisReply>> result;
    };
    enum class State { kDown, kConnecting, kUp };

    Impl(asio::any_io_executor ex, RedisEndpoint ep, std::chrono::milliseconds t)
        : executor(std::move(ex)), endpoint(std::move(ep)), timeout(t), socket(executor) {}

    asio::any_io_executor executor;
    RedisEndpoint endpoint;
    std::chrono::milliseconds timeout;
    State state = State::kDown;
    asio::generic::stream_protocol::socket socket;
    std::unique_ptr<ReplyDecoder> decoder;
    std::deque<std::shared_ptr<Waiter>> pending; // in the order their replies will come
    std::string outbox;                          // encoded, not written yet
    bool writing = false;
    std::uint64_t generation = 0; // one per connection: stale coroutines see a new value
    SteadyClock::time_point next_connect{};
    std::string last_error;
    std::uint64_t sent = 0;

    void fail_all(ErrorKind kind, const std::string& message) {
        auto waiters = std::move(pending);
        pending.clear();
        outbox.clear();
        for (auto& w : waiters) {
            if (!w->result) {
                w->result = fail(kind, message);
                w->timer.cancel();
            }
        }
    }

    void drop_connection(ErrorKind kind, const std::string& message) {
        ++generation;
        state = State::kDown;
        boost::system::error_code ignored;
        socket.close(ignored);
        writing = false;
        last_error = message;
        fail_all(kind, message);
    }

    void start_connect() {
        state = State::kConnecting;
        const std::uint64_t gen = ++generation;
        asio::co_spawn(executor, connect(shared_from_this(), gen), [](const std::exception_ptr& e) {
            log_escaped("event=redis_coroutine_failed step=connect", e);
        });
    }

    static asio::awaitable<void> connect(std::shared_ptr<Impl> self, std::uint64_t gen) {
        using namespace asio::experimental::awaitable_operators;
        asio::steady_timer deadline(self->executor);
        deadline.expires_after(self->timeout);
        asio::generic::stream_protocol::endpoint ep;
        boost::system::error_code ec;
        if (!self->endpoint.socket.empty()) {
            ep = asio::local::stream_protocol::endpoint(self->endpoint.socket);
        } else {
            auto address = asio::ip::make_address(self->endpoint.host, ec);
            if (ec) {
                asio::ip::tcp::resolver resolver(self->executor);
                auto r =
                    co_await (resolver.async_resolve(self->endpoint.host,
                                                     std::to_string(self->endpoint.port), kTuple) ||
                              deadline.async_wait(kTuple));
                if (r.index() == 1) {
                    ec = asio::error::timed_out;
                } else {
                    auto [rec, results] = std::get<0>(r);
                    ec = rec;
                    if (!ec && results.empty()) {
                        ec = asio::error::host_not_found;
                    }
                    if (!ec) {
                        address = results.begin()->endpoint().address();
                    }
                }
            }
            if (!ec) {
                ep = asio::ip::tcp::endpoint(address, self->endpoint.port);
            }
        }
        if (!ec && gen == self->generation) {
            asio::generic::stream_protocol::socket fresh(self->executor);
            auto r = co_await (fresh.async_connect(ep, kTuple) || deadline.async_wait(kTuple));
            ec = r.index() == 1 ? asio::error::timed_out : std::get<0>(std::get<0>(r));
            if (!ec && gen == self->generation) {
                self->socket = std::move(fresh);
            }
        }
        if (gen != self->generation) {
            co_return; // closed meanwhile
        }
        if (ec) {
            self->next_connect = SteadyClock::now() + kConnectBackoff;
            self->drop_connection(ErrorKind::kUnavailable,
                                  fmt::format("cannot connect to redis at {}: {}",
                                              self->endpoint.describe(), ec.message()));
            co_return;
        }
        self->state = State::kUp;
        self->decoder = std::make_unique<ReplyDecoder>();
        self->flush();
        asio::co_spawn(self->executor, read_loop(self, gen), [](const std::exception_ptr& e) {
            log_escaped("event=redis_coroutine_failed step=read", e);
        });
    }

    static asio::awaitable<void> read_loop(std::shared_ptr<Impl> self, std::uint64_t gen) {
        std::vector<char> buffer(kReadBuffer);
        while (gen == self->generation) {
            auto [ec, n] = co_await self->socket.async_read_some(asio::buffer(buffer), kTuple);
            if (gen != self->generation) {
                co_return;
            }
            if (ec) {
                self->drop_connection(ErrorKind::kUnavailable,
                                      fmt::format("connection to redis at {} lost: {}",
                                                  self->endpoint.describe(), ec.message()));
                co_return;
            }
            if (const Status fed = self->decoder->feed(std::string_view(buffer.data(), n)); !fed) {
                self->drop_connection(ErrorKind::kProtocol, fed.error().message);
                co_return;
            }
            for (;;) {
                auto reply = self->decoder->next();
                if (!reply) {
                    self->drop_connection(ErrorKind::kProtocol, reply.error().message);
                    co_return;
                }
                if (!*reply) {
                    break;
                }
                if (self->pending.empty()) {
                    self->drop_connection(ErrorKind::kProtocol,
                                          "redis sent a reply nobody asked for");
                    co_return;
                }
                auto w = std::move(self->pending.front());
                self->pending.pop_front();
                w->result = std::move(**reply);
                w->timer.cancel();
            }
        }
    }

    void flush() {
        if (writing || outbox.empty() || state != State::kUp) {
            return;
        }
        writing = true;
        asio::co_spawn(executor, write_out(shared_from_this(), generation, std::move(outbox)),
                       [](const std::exception_ptr& e) {
                           log_escaped("event=redis_coroutine_failed step=write", e);
                       });
        outbox.clear();
    }

    static asio::awaitable<void> write_out(std::shared_ptr<Impl> self, std::uint64_t gen,
                                           std::string data) {
        auto [ec, n] = co_await asio::async_write(self->socket, asio::buffer(data), kTuple);
        (void)n;
        if (gen != self->generation) {
            co_return;
        }
        self->writing = false;
        if (ec) {
            self->drop_connection(ErrorKind::kUnavailable,
                                  fmt::format("writing to redis at {} failed: {}",
                                              self->endpoint.describe(), ec.message()));
            co_return;
        }
        self->flush();
    }
};

RedisClient::RedisClient(asio::any_io_executor executor, RedisEndpoint endpoint,
                         std::chrono::milliseconds timeout)
    : impl_(std::make_shared<Impl>(std::move(executor), std::move(endpoint), timeout)) {}

RedisClient::~RedisClient() { close(); }

void RedisClient::close() {
    if (impl_->state != Impl::State::kDown || !impl_->pending.empty()) {
        impl_->drop_connection(ErrorKind::kUnavailable, "redis client closed");
    }
}

bool RedisClient::connected() const { return impl_->state == Impl::State::kUp; }

std::uint64_t RedisClient::requests_sent() const { return impl_->sent; }

asio::awaitable<Result<RedisReply>> RedisClient::command(std::vector<std::string> args) {
    const std::shared_ptr<Impl> self = impl_;
    if (self->state == Impl::State::kDown) {
        if (SteadyClock::now() < self->next_connect) {
            co_return fail(ErrorKind::kUnavailable, self->last_error);
        }
        self->start_connect();
    }
    auto waiter = std::make_shared<Impl::Waiter>(self->executor);
    waiter->timer.expires_after(self->timeout);
    self->pending.push_back(waiter);
    self->outbox += encode_command(args);
    ++self->sent;
    self->flush();
    co_await waiter->timer.async_wait(kTuple);
    if (!waiter->result) {
        // The deadline passed: later replies could not be matched any more.
        self->drop_connection(ErrorKind::kTimeout,
                              fmt::format("no reply from redis at {} within {} ms",
                                          self->endpoint.describe(), self->timeout.count()));
    }
    co_return std::move(*waiter->result);
}

asio::awaitable<Result<RedisReply>> RedisClient::eval(std::shared_ptr<const RedisScript> script,
                                                      std::vector<std::string> keys,
                                                      std::vector<std::string> args) {
    std::vector<std::string> call;
    call.reserve(3 + keys.size() + args.size());
    call.emplace_back("EVALSHA");
    call.push_back(script->sha1);
    call.push_back(std::to_string(keys.size()));
    call.insert(call.end(), keys.begin(), keys.end());
    call.insert(call.end(), args.begin(), args.end());
    auto reply = co_await command(call);
    if (reply && reply->is_error() && reply->str.rfind("NOSCRIPT", 0) == 0) {
        call[0] = "EVAL";
        call[1] = script->source;
        reply = co_await command(std::move(call));
    }
    co_return reply;
}

} // namespace spoold::fleet
