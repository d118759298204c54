#include "milter/chain.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <variant>

#include "common/escaped.hpp"
#include "common/log.hpp"
#include "milter/client.hpp"
#include "milter/macros.hpp"

namespace spoold::milter {
namespace {

namespace asio = boost::asio;
using smtp::FilterAction;
using smtp::FilterVerdict;
using Kind = Response::Kind;

// Abort and quit are sent without waiting for an answer, within this.
constexpr std::chrono::milliseconds kGoodbyeTimeout{5000};

struct Member {
    enum class State { kNew, kOpen, kFailed, kOff };
    std::unique_ptr<Client> client;
    State state = State::kNew; // kOff: accepted the connection, or failed with on_failure accept
    bool done_message = false; // accepted the message in progress
    bool skip_body = false;    // asked for no more body chunks
    bool in_message = false;   // saw MAIL and not the end: an abort is owed
};

void log_escaped(const std::exception_ptr& e) {
    spoold::log_escaped("event=coroutine_failed where=milter", e);
}

std::string_view step_name(Step s) {
    switch (s) {
    case Step::kConnect: return "connect";
    case Step::kHelo: return "helo";
    case Step::kMail: return "mail";
    case Step::kRcpt: return "rcpt";
    case Step::kData: return "data";
    case Step::kHeader: return "header";
    case Step::kEndOfHeaders: return "eoh";
    case Step::kBody: return "body";
    case Step::kEndOfMessage: return "eom";
    }
    return "?";
}

// One packet as the list ask_all takes (a named vector: g++ 12 mishandles a braced list
// inside a co_await expression).
std::vector<std::string> one(std::string packet) {
    std::vector<std::string> v;
    v.push_back(std::move(packet));
    return v;
}

bool connection_step(Step s) { return s == Step::kConnect || s == Step::kHelo; }

// The action a request at the end of the message needs the filter to have negotiated.
std::uint32_t action_needed(Kind k) {
    switch (k) {
    case Kind::kAddHeader:
    case Kind::kInsertHeader: return kAddHeaders;
    case Kind::kChangeHeader: return kChangeHeaders;
    case Kind::kQuarantine: return kQuarantine;
    case Kind::kAddRecipient: return kAddRecipient | kAddRecipientWithParams;
    case Kind::kDeleteRecipient: return kDeleteRecipient;
    case Kind::kChangeFrom: return kChangeFrom;
    default: return 0;
    }
}

// One SMTP connection's filters. Lives as long as any coroutine of it; all its state is
// touched on `strand` only.
class Chain : public std::enable_shared_from_this<Chain> {
public:
    Chain(asio::any_io_executor strand_executor, std::shared_ptr<const ChainSettings> settings)
        : strand(std::move(strand_executor)), settings_(std::move(settings)) {
        for (const auto& config : settings_->milters) {
            members_.push_back(Member{std::make_unique<Client>(strand, config)});
        }
        macros_.set("j", settings_->hostname);
        macros_.set("{daemon_name}", settings_->daemon_name);
        macros_.set("v", settings_->version);
    }

    asio::awaitable<FilterVerdict> handle(smtp::FilterEvent event);
    bool awaits_reply(const smtp::FilterEvent& event) const;
    asio::awaitable<void> send_aborts();
    asio::awaitable<void> quit();

    asio::any_io_executor strand;
    bool abort_pending = false;
    bool busy = false;
    bool closing = false;
    bool closed = false;

private:
    asio::awaitable<FilterVerdict> connect(const smtp::FilterConnect& e);
    asio::awaitable<FilterVerdict> ask_all(Step step, std::optional<Command> macros_for,
                                           MacroStage stage, std::vector<std::string> packets);
    // Failure of `m` at `step`: logged and closed; a verdict for tempfail, none for accept.
    std::optional<FilterVerdict> failed(Member& m, Step step, const Error& error);
    FilterVerdict tempfail_of(const Member& m, std::string reason) const;
    // The members still in the conversation at `step`.
    bool listening(const Member& m, Step step) const;
    bool all_done(Step step) const;
    void end_message();
    // A final answer's effect; a verdict when it ends the asking.
    std::optional<FilterVerdict> conclude(Member& m, Step step, const Answer& answer,
                                          FilterVerdict& collected);

    std::shared_ptr<const ChainSettings> settings_;
    std::vector<Member> members_;
    MacroValues macros_;
};

bool Chain::listening(const Member& m, Step step) const {
    if (m.state == Member::State::kOff) {
        return false;
    }
    if (connection_step(step)) {
        return true;
    }
    return !m.done_message && !(step == Step::kBody && m.skip_body);
}

bool Chain::all_done(Step step) const {
    return std::none_of(members_.begin(), members_.end(), [&](const Member& m) {
        return m.state != Member::State::kOff && (connection_step(step) || !m.done_message);
    });
}

FilterVerdict Chain::tempfail_of(const Member& m, std::string reason) const {
    FilterVerdict v;
    v.action = FilterAction::kTempFail;
    v.filter = m.client->config().name;
    v.reason = std::move(reason);
    return v;
}

std::optional<FilterVerdict> Chain::failed(Member& m, Step step, const Error& error) {
    const auto& config = m.client->config();
    const bool accept = config.on_failure == policy::MilterFailure::kAccept;
    log::warn("event=milter_failed milter={} step={} error={} action={}", config.name,
              step_name(step), log::quote(error.message), accept ? "accept" : "tempfail");
    m.client->close();
    m.in_message = false;
    if (accept) {
        m.state = Member::State::kOff; // mail flows as if the filter were not configured
        return std::nullopt;
    }
    m.state = Member::State::kFailed;
    return tempfail_of(m, error.message);
}

asio::awaitable<FilterVerdict> Chain::handle(smtp::FilterEvent event) {
    if (const auto* e = std::get_if<smtp::FilterConnect>(&event)) {
        co_return co_await connect(*e);
    }
    if (const auto* e = std::get_if<smtp::FilterHelo>(&event)) {
        macros_.set("{tls_version}", e->tls_version);
        macros_.set("{cipher}", e->tls_cipher);
        macros_.set("{cipher_bits}", e->tls_bits > 0 ? std::to_string(e->tls_bits) : "");
        co_return co_await ask_all(Step::kHelo, Command::kHelo, MacroStage::kHelo,
                                   one(encode_helo(e->name)));
    }
    if (const auto* e = std::get_if<smtp::FilterMail>(&event)) {
        end_message();
        macros_.set("i", "");
        macros_.set("{mail_addr}", e->address);
        for (Member& m : members_) {
            m.in_message = m.state == Member::State::kOpen;
        }
        co_return co_await ask_all(Step::kMail, Command::kMail, MacroStage::kMail,
                                   one(encode_mail(e->address, e->params)));
    }
    if (const auto* e = std::get_if<smtp::FilterRcpt>(&event)) {
        macros_.set("{rcpt_addr}", e->address);
        co_return co_await ask_all(Step::kRcpt, Command::kRcpt, MacroStage::kRcpt,
                                   one(encode_rcpt(e->address, e->params)));
    }
    if (const auto* e = std::get_if<smtp::FilterData>(&event)) {
        macros_.set("i", e->id.text());
        co_return co_await ask_all(Step::kData, Command::kData, MacroStage::kData,
                                   one(encode_command(Command::kData)));
    }
    if (const auto* e = std::get_if<smtp::FilterHeaders>(&event)) {
        std::vector<std::string> headers;
        headers.reserve(e->fields.size());
        for (const auto& f : e->fields) {
            headers.push_back(encode_header(f.name, f.value));
        }
        FilterVerdict v;
        if (!headers.empty()) {
            v = co_await ask_all(Step::kHeader, std::nullopt, MacroStage::kEndOfHeaders,
                                 std::move(headers));
        }
        if (v.action != FilterAction::kContinue) {
            co_return v;
        }
        co_return co_await ask_all(Step::kEndOfHeaders, Command::kEndOfHeaders,
                                   MacroStage::kEndOfHeaders,
                                   one(encode_command(Command::kEndOfHeaders)));
    }
    if (const auto* e = std::get_if<smtp::FilterBody>(&event)) {
        std::vector<std::string> chunks;
        for (std::size_t pos = 0; pos < e->chunk.size(); pos += kMaxBodyChunk) {
            chunks.push_back(encode_body(std::string_view(e->chunk).substr(pos, kMaxBodyChunk)));
        }
        co_return co_await ask_all(Step::kBody, std::nullopt, MacroStage::kEndOfMessage,
                                   std::move(chunks));
    }
    FilterVerdict v =
        co_await ask_all(Step::kEndOfMessage, Command::kEndOfBody, MacroStage::kEndOfMessage,
                         one(encode_command(Command::kEndOfBody)));
    end_message();
    co_return v;
}

bool Chain::awaits_reply(const smtp::FilterEvent& event) const {
    if (std::holds_alternative<smtp::FilterConnect>(event)) {
        return true; // the filters' connections are opened
    }
    // The steps handle() takes for the event, in the FilterEvent order (a header section
    // is its header packets and the end of headers).
    static constexpr std::array<std::array<Step, 2>, std::variant_size_v<smtp::FilterEvent>> kSteps{
        {{Step::kConnect, Step::kConnect},
         {Step::kHelo, Step::kHelo},
         {Step::kMail, Step::kMail},
         {Step::kRcpt, Step::kRcpt},
         {Step::kData, Step::kData},
         {Step::kHeader, Step::kEndOfHeaders},
         {Step::kBody, Step::kBody},
         {Step::kEndOfMessage, Step::kEndOfMessage}}};
    const auto& steps = kSteps.at(event.index());
    return std::any_of(members_.begin(), members_.end(), [&](const Member& m) {
        if (m.state == Member::State::kNew) {
            return true;
        }
        return m.state == Member::State::kOpen &&
               std::any_of(steps.begin(), steps.end(), [&](Step s) {
                   return listening(m, s) && m.client->wants(s) && m.client->answers(s);
               });
    });
}

asio::awaitable<FilterVerdict> Chain::connect(const smtp::FilterConnect& e) {
    macros_.set("{client_addr}", e.client_addr);
    macros_.set("{client_port}", std::to_string(e.client_port));
    macros_.set("{client_name}", "unknown"); // no DNS here: Postfix's word for "not looked up"
    macros_.set("{client_ptr}", "unknown");
    macros_.set("{daemon_addr}", e.local_addr);
    macros_.set("{daemon_port}", std::to_string(e.local_port));
    for (Member& m : members_) {
        if (m.state != Member::State::kNew) {
            continue;
        }
        if (const Status st = co_await m.client->open(); !st) {
            if (auto v = failed(m, Step::kConnect, st.error())) {
                co_return *v;
            }
            continue;
        }
        m.state = Member::State::kOpen;
    }
    // Sendmail's form for a client whose name we do not know: its address in brackets.
    co_return co_await ask_all(
        Step::kConnect, Command::kConnect, MacroStage::kConnect,
        one(encode_connect("[" + e.client_addr + "]", e.client_addr, e.client_port)));
}

asio::awaitable<FilterVerdict> Chain::ask_all(Step step, std::optional<Command> macros_for,
                                              MacroStage stage, std::vector<std::string> packets) {
    FilterVerdict collected; // continue, with the end-of-message requests gathered
    for (Member& m : members_) {
        if (!listening(m, step)) {
            continue;
        }
        if (m.state == Member::State::kFailed) {
            co_return tempfail_of(m, "failed earlier in this session");
        }
        if (m.state != Member::State::kOpen || !m.client->wants(step)) {
            continue;
        }
        std::string macros;
        if (macros_for) {
            macros = encode_macros(*macros_for,
                                   macros_.for_stage(stage, m.client->macros_wanted(stage)));
        }
        Answer answer;
        bool failure = false;
        for (std::size_t i = 0; i < packets.size(); ++i) {
            // A named value: g++ 12 destroys a conditional's temporary twice inside co_await.
            std::string bytes = i == 0 ? macros + packets[i] : packets[i];
            auto r = co_await m.client->step(step, std::move(bytes));
            if (!r) {
                if (auto v = failed(m, step, r.error())) {
                    co_return *v;
                }
                failure = true;
                break;
            }
            answer = std::move(*r);
            if (answer.final.kind != Kind::kContinue) {
                break; // the rest of the packets would be answered by a filter that is done
            }
        }
        if (failure) {
            continue;
        }
        if (auto v = conclude(m, step, answer, collected)) {
            co_return *v;
        }
    }
    if (collected.action == FilterAction::kContinue && all_done(step)) {
        collected.action = FilterAction::kAccept;
    }
    co_return collected;
}

std::optional<FilterVerdict> Chain::conclude(Member& m, Step step, const Answer& answer,
                                             FilterVerdict& collected) {
    const auto& name = m.client->config().name;
    for (const Response& req : answer.requests) {
        if ((m.client->negotiated().actions & action_needed(req.kind)) == 0) {
            return failed(m, step,
                          Error{ErrorKind::kProtocol,
                                fmt::format("milter {}: a request it did not negotiate", name)});
        }
    }
    FilterVerdict v;
    v.filter = name;
    switch (answer.final.kind) {
    case Kind::kContinue: break;
    case Kind::kAccept:
        if (connection_step(step)) {
            m.state = Member::State::kOff;
        } else {
            m.done_message = true;
            m.in_message = false;
        }
        break;
    case Kind::kSkip: m.skip_body = true; break;
    case Kind::kDiscard: v.action = FilterAction::kDiscard; return v;
    case Kind::kReject: v.action = FilterAction::kReject; return v;
    case Kind::kTempFail: v.action = FilterAction::kTempFail; return v;
    case Kind::kReplyCode:
        v.action = answer.final.reply.code >= 500 ? FilterAction::kReject : FilterAction::kTempFail;
        v.reply = answer.final.reply;
        return v;
    case Kind::kShutdown:
    case Kind::kConnectionFail:
        v.action = FilterAction::kTempFail;
        v.reply = make_reply(421, "4.7.0", "Service unavailable - closing connection");
        return v;
    default: break; // requests are not final
    }
    using HC = smtp::HeaderChange;
    using EC = smtp::EnvelopeChange;
    for (const Response& req : answer.requests) {
        switch (req.kind) {
        case Kind::kAddHeader:
            collected.headers.push_back(HC{HC::Kind::kAdd, 0, req.name, req.value});
            break;
        case Kind::kInsertHeader:
            collected.headers.push_back(HC{HC::Kind::kInsert, req.index, req.name, req.value});
            break;
        case Kind::kChangeHeader:
            collected.headers.push_back(HC{HC::Kind::kChange, req.index, req.name, req.value});
            break;
        case Kind::kQuarantine:
            collected.quarantine +=
                (collected.quarantine.empty() ? "" : "; ") + name + ": " + req.text;
            collected.filter = name;
            break;
        case Kind::kAddRecipient:
            collected.envelope.push_back(EC{EC::Kind::kAddRecipient, strip_brackets(req.text)});
            break;
        case Kind::kDeleteRecipient:
            collected.envelope.push_back(EC{EC::Kind::kRemoveRecipient, strip_brackets(req.text)});
            break;
        case Kind::kChangeFrom:
            collected.envelope.push_back(EC{EC::Kind::kSetSender, strip_brackets(req.text)});
            break;
        default: break;
        }
    }
    return std::nullopt;
}

void Chain::end_message() {
    for (Member& m : members_) {
        m.done_message = false;
        m.skip_body = false;
        m.in_message = false;
    }
}

asio::awaitable<void> Chain::send_aborts() {
    abort_pending = false;
    for (Member& m : members_) {
        if (m.in_message && m.state == Member::State::kOpen) {
            if (const Status st =
                    co_await m.client->send(encode_command(Command::kAbort), kGoodbyeTimeout);
                !st) {
                failed(m, Step::kEndOfMessage, st.error());
            }
        }
    }
    end_message();
}

asio::awaitable<void> Chain::quit() {
    if (closed) {
        co_return;
    }
    closed = true;
    for (Member& m : members_) {
        if (m.state == Member::State::kOpen || m.state == Member::State::kOff) {
            co_await m.client->send(encode_command(Command::kQuit), kGoodbyeTimeout);
        }
        m.client->close();
    }
}

asio::awaitable<void> run_ask(std::shared_ptr<Chain> chain, smtp::FilterEvent event,
                              std::function<void(FilterVerdict)> done) {
    chain->busy = true;
    if (chain->abort_pending) {
        co_await chain->send_aborts();
    }
    FilterVerdict verdict = co_await chain->handle(std::move(event));
    chain->busy = false;
    done(std::move(verdict));
    if (chain->closing) {
        co_await chain->quit();
    }
}

asio::awaitable<void> run_quit(std::shared_ptr<Chain> chain) { co_await chain->quit(); }

class ChainSession final : public smtp::FilterSession {
public:
    explicit ChainSession(std::shared_ptr<Chain> chain) : chain_(std::move(chain)) {}

    void ask(smtp::FilterEvent event, std::function<void(FilterVerdict)> done) override {
        asio::co_spawn(chain_->strand, run_ask(chain_, std::move(event), std::move(done)),
                       log_escaped);
    }
    // Read on the session's side: between a verdict and the next ask the chain's
    // members and their negotiation do not change (the verdict's post orders the reads
    // after the chain's last writes; abort() only sets abort_pending).
    bool awaits_reply(const smtp::FilterEvent& event) const override {
        return chain_->awaits_reply(event);
    }
    void abort() override {
        asio::post(chain_->strand, [c = chain_] { c->abort_pending = true; });
    }
    void close() override {
        asio::post(chain_->strand, [c = chain_] {
            c->closing = true;
            if (!c->busy) {
                asio::co_spawn(c->strand, run_quit(c), log_escaped);
            }
        });
    }

private:
    std::shared_ptr<Chain> chain_;
};

} // namespace

MilterFilters::MilterFilters(asio::io_context& io, ChainSettings settings)
    : io_(io), settings_(std::make_shared<const ChainSettings>(std::move(settings))) {}

void MilterFilters::reconfigure(ChainSettings settings) {
    auto fresh = std::make_shared<const ChainSettings>(std::move(settings));
    const std::lock_guard lock(mutex_);
    settings_ = std::move(fresh);
}

std::unique_ptr<smtp::FilterSession> MilterFilters::open() {
    std::shared_ptr<const ChainSettings> settings;
    {
        const std::lock_guard lock(mutex_);
        settings = settings_;
    }
    if (settings->milters.empty()) {
        return nullptr;
    }
    return std::make_unique<ChainSession>(
        std::make_shared<Chain>(asio::make_strand(io_), std::move(settings)));
}

} // namespace spoold::milter
