// One connection to one milter: connect (TCP or Unix socket), option negotiation, then
// each protocol step sent with its macros and, unless the filter said it will not
// answer that step, its reply awaited within the stage's timeout. Steps the filter does
// not answer wait in an output buffer for the next one it answers: one write per round
// trip. Asio coroutines on the caller's executor; the bytes are milter/codec's, the
// decisions milter/chain's.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "milter/codec.hpp"
#include "policy/config.hpp"

namespace spoold::milter {

// The protocol steps, each with its skip (SMFIP_NO*) and no-reply (SMFIP_NR_*) flags.
enum class Step {
    kConnect,
    kHelo,
    kMail,
    kRcpt,
    kData,
    kHeader,
    kEndOfHeaders,
    kBody,
    kEndOfMessage,
};

// What a step got back: the final reply and the requests (header, recipient, sender
// changes, quarantine) that came before it. `final` is a kContinue when the filter does
// not answer this step.
struct Answer {
    Response final;
    std::vector<Response> requests;
};

class Client {
public:
    Client(const boost::asio::any_io_executor& executor, policy::MilterConfig config);
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;

    // Connects and negotiates, within connect_timeout. kUnavailable / kTimeout when the
    // filter cannot be reached, kProtocol when it speaks something else.
    boost::asio::awaitable<Status> open();
    // Whether the filter wants this step at all.
    bool wants(Step step) const;
    // Whether it answers this step (else step() only queues the packets).
    bool answers(Step step) const;
    // Sends `packets` (one step's, the macros first) and, when the filter answers this
    // step, waits for the final reply within the stage's timeout (a progress reply
    // starts it again). When it does not answer, the packets are only queued (written
    // once kFlushAt bytes wait, else with the next answered step or send()). Errors:
    // kTimeout, kIo, kProtocol; the connection is then closed.
    boost::asio::awaitable<Result<Answer>> step(Step step, std::string packets);
    // Sends what is queued and `packets` without waiting for anything (abort, quit);
    // errors close the connection.
    boost::asio::awaitable<Status> send(std::string packets, std::chrono::milliseconds timeout);
    void close();

    const Negotiated& negotiated() const { return negotiated_; }
    const policy::MilterConfig& config() const { return config_; }
    // The macro names the filter asked for at `stage`; empty when it did not ask.
    const std::string& macros_wanted(MacroStage stage) const;

private:
    boost::asio::awaitable<Status> connect();
    // Writes out_ (and clears it) before the timer's current expiry.
    boost::asio::awaitable<Status> flush();
    // The next packet, before the timer's current expiry.
    boost::asio::awaitable<Result<Packet>> read_packet();
    std::chrono::milliseconds timeout_for(Step step) const;

    policy::MilterConfig config_;
    boost::asio::generic::stream_protocol::socket socket_;
    boost::asio::steady_timer timer_;
    PacketReader reader_;
    Negotiated negotiated_;
    std::vector<char> buffer_;
    std::string out_; // packets not written yet
};

} // namespace spoold::milter
