#include "smtp/server_state.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>

#include "smtp/admission.hpp"

namespace spoold::smtp {

namespace asio = boost::asio;

Server::Shared::Shared(asio::io_context& io_context, Intake& in, Filters* f)
    : io(io_context), intake(in), filters(f), control(asio::make_strand(io_context)),
      stop_timer(control) {}

void Server::Shared::configure(const policy::Config& config) {
    const std::lock_guard lock(mutex);
    hostname = config.hostname;
    authserv_id = config.our_authserv_id();
    limits = config.limits;
}

SessionDefaults Server::Shared::session_defaults() const {
    const std::lock_guard lock(mutex);
    return {hostname, authserv_id, limits};
}

void Server::Shared::fire_done() {
    if (stop_done) {
        auto done = std::move(stop_done);
        stop_done = nullptr;
        stop_timer.cancel();
        done();
    }
}

SlotGuard::SlotGuard(std::shared_ptr<Server::Shared> shared, std::shared_ptr<Conn> conn,
                     std::string client)
    : shared_(std::move(shared)), conn_(std::move(conn)), client_(std::move(client)) {}

SlotGuard::~SlotGuard() {
    bool notify = false;
    {
        const std::lock_guard lock(shared_->mutex);
        --shared_->total;
        if (auto it = shared_->per_client.find(client_);
            !client_.empty() && it != shared_->per_client.end() && --it->second == 0) {
            shared_->per_client.erase(it);
        }
        shared_->conns.erase(conn_);
        notify = shared_->stopping && shared_->total == 0;
    }
    if (notify) {
        asio::post(shared_->control, [s = shared_] { s->fire_done(); });
    }
}

bool SlotGuard::count_client(const std::string& client) {
    const std::lock_guard lock(shared_->mutex);
    auto& n = shared_->per_client[client];
    if (client_at_limit(n, shared_->limits)) {
        if (n == 0) {
            shared_->per_client.erase(client);
        }
        return false;
    }
    ++n;
    client_ = client;
    return true;
}

} // namespace spoold::smtp
