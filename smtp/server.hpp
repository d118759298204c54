// The SMTP listener: Asio acceptors and one coroutine per connection around the sans-IO
// smtp::Session (timeouts, session limits, STARTTLS, posting intake callbacks back).
// Protocol decisions live in session.hpp; storage lives behind smtp::Intake.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <vector>

#include "common/result.hpp"
#include "policy/config.hpp"
#include "smtp/filter.hpp"
#include "smtp/intake.hpp"

namespace spoold::smtp {

// Threading: each connection runs on its own strand of the io_context, so the
// io_context may be run by one thread or several. Intake callbacks may come from any
// thread; they are posted back to the connection's strand. Server's own methods are
// called from the thread(s) running the io_context or before it runs.
class Server {
public:
    // `config` is copied (hostname, limits, listeners); `intake` and `filters` (null: no
    // filters) must outlive every connection coroutine, i.e. the io_context's handlers.
    Server(boost::asio::io_context& io, const policy::Config& config, Intake& intake,
           Filters* filters = nullptr);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    // Binds and listens on every configured listener (port 0 picks a free port) and
    // starts accepting. Returns the bound endpoints in listener order; kConfig when a
    // certificate or key cannot be loaded, kIo when an address cannot be bound.
    Result<std::vector<boost::asio::ip::tcp::endpoint>> start();
    // The endpoints start() bound (empty before).
    const std::vector<boost::asio::ip::tcp::endpoint>& endpoints() const;

    // New hostname and limits apply to connections accepted from now on. Listener
    // addresses and certificates need a restart.
    void reconfigure(const policy::Config& config);

    // Stops accepting; idle sessions get 421 4.3.2 and are closed; a session waiting for
    // a commit gets its reply first. `done` runs (on the io_context) once every session
    // has ended, or when `grace` has passed, whichever comes first.
    void stop(std::chrono::milliseconds grace, std::function<void()> done);

    // Connections open right now.
    std::size_t session_count() const;

    struct Shared; // state shared with the connection coroutines (which may outlive us)

private:
    boost::asio::io_context& io_;
    std::shared_ptr<Shared> shared_;
};

} // namespace spoold::smtp
