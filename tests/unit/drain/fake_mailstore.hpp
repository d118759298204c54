// A scripted drain::Mailstore for the engine's tests: answers come from a function of
// the request, probes from a flag; it records what it received (bodies read in pieces
// through the request's reader). Each delivery yields to the executor a few times so
// several can be in flight at once.
#pragma once

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <functional>
#include <string>
#include <vector>

#include "drain/mailstore.hpp"

namespace spoold::drain::test {

struct Received {
    QueueId id;
    std::vector<std::string> recipients;
    std::string body;
};

class FakeMailstore final : public Mailstore {
public:
    using Script = std::function<DeliveryResult(const DeliveryRequest&)>;

    explicit FakeMailstore(std::string name = "fake") : name_(std::move(name)) {}

    // Everything 250 unless a script says otherwise.
    Script script;
    bool up = true;     // probes succeed; deliveries work
    int yields = 3;     // executor round trips per delivery
    bool block = false; // deliveries wait (1 ms timer steps) while this is set
    std::size_t piece_bytes = 7;
    Handoff handoff = Handoff::kFinal; // what an unscripted delivery reports
    std::vector<Received> received;
    int probes = 0;
    int attempts = 0; // deliver() calls, including failed ones
    int in_flight = 0;
    int max_in_flight = 0;

    const std::string& name() const override { return name_; }

    boost::asio::awaitable<DeliveryResult> deliver(DeliveryRequest request) override {
        ++attempts;
        ++in_flight;
        max_in_flight = std::max(max_in_flight, in_flight);
        const auto ex = co_await boost::asio::this_coro::executor;
        for (int i = 0; i < yields; ++i) {
            co_await boost::asio::post(ex, boost::asio::use_awaitable);
        }
        try {
            boost::asio::steady_timer timer(ex);
            while (block) {
                timer.expires_after(std::chrono::milliseconds(1));
                co_await timer.async_wait(boost::asio::use_awaitable);
            }
        } catch (const std::exception&) {
            --in_flight; // cancelled by the drain's stop(): a connector would report trouble
            throw;
        }
        --in_flight;
        if (!up) {
            DeliveryResult r;
            r.session_reply = make_reply(421, "4.3.2", "mailstore down");
            r.mailstore_trouble = true;
            co_return r;
        }
        if (script) {
            DeliveryResult r = script(request);
            if (!r.mailstore_trouble && !r.session_reply) {
                record(request);
            }
            co_return r;
        }
        record(request);
        DeliveryResult r;
        r.handoff = handoff;
        for (std::size_t i = 0; i < request.recipients.size(); ++i) {
            r.per_recipient.push_back(make_reply(250, "2.0.0", "ok"));
        }
        co_return r;
    }

    boost::asio::awaitable<Status> probe() override {
        ++probes;
        if (!up) {
            co_return fail(ErrorKind::kUnavailable, "connection refused");
        }
        co_return Status{};
    }

private:
    void record(const DeliveryRequest& request) {
        Received r{request.id, request.recipients, {}};
        std::uint32_t chunk = 0;
        for (;;) {
            auto piece = request.read_body(chunk, piece_bytes);
            if (!piece) {
                break;
            }
            r.body += piece->data;
            chunk = piece->next_chunk;
            if (piece->done) {
                break;
            }
        }
        received.push_back(std::move(r));
    }

    std::string name_;
};

} // namespace spoold::drain::test
