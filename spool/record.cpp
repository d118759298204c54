#include "spool/record.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "common/address.hpp"
#include "common/assert.hpp"

namespace spoold::spool::record {
namespace {

constexpr std::uint8_t kMaxRcptState = static_cast<std::uint8_t>(RcptState::kExpired);
constexpr std::uint8_t kMaxMsgState = static_cast<std::uint8_t>(MsgState::kHeld);
// The smallest encoded recipient: three empty strings and the fixed fields.
constexpr std::size_t kMinRecipientSize = 4 + 4 + 1 + 1 + 8 + 4 + 4;

class Writer {
public:
    void u8(std::uint8_t v) { out_.push_back(static_cast<char>(v)); }
    void u32(std::uint32_t v) {
        for (int shift = 24; shift >= 0; shift -= 8) {
            out_.push_back(static_cast<char>((v >> static_cast<unsigned>(shift)) & 0xFFU));
        }
    }
    void u64(std::uint64_t v) {
        for (int shift = 56; shift >= 0; shift -= 8) {
            out_.push_back(static_cast<char>((v >> static_cast<unsigned>(shift)) & 0xFFU));
        }
    }
    void i64(std::int64_t v) { u64(static_cast<std::uint64_t>(v)); }
    void str(std::string_view s) {
        u32(static_cast<std::uint32_t>(s.size()));
        out_.append(s);
    }
    std::string take() { return std::move(out_); }

private:
    std::string out_;
};

// Every read checks the remaining length first; the first short read poisons the reader.
class Reader {
public:
    explicit Reader(std::string_view in) : in_(in) {}
    bool ok() const { return ok_; }
    std::size_t remaining() const { return in_.size() - pos_; }

    std::uint8_t u8() {
        if (!need(1)) {
            return 0;
        }
        return static_cast<std::uint8_t>(in_[pos_++]);
    }
    std::uint32_t u32() {
        if (!need(4)) {
            return 0;
        }
        const auto v = read_be32(in_.substr(pos_));
        pos_ += 4;
        return v;
    }
    std::uint64_t u64() {
        if (!need(8)) {
            return 0;
        }
        const auto v = read_be64(in_.substr(pos_));
        pos_ += 8;
        return v;
    }
    std::int64_t i64() { return static_cast<std::int64_t>(u64()); }
    std::string str() {
        const std::uint32_t n = u32();
        if (!need(n)) {
            return {};
        }
        std::string s(in_.substr(pos_, n));
        pos_ += n;
        return s;
    }

private:
    bool need(std::size_t n) {
        if (!ok_ || remaining() < n) {
            ok_ = false;
            return false;
        }
        return true;
    }
    std::string_view in_;
    std::size_t pos_ = 0;
    bool ok_ = true;
};

struct Header {
    std::uint8_t version = 0;
    IndexFacts facts;
    UnixMillis arrival = 0;
    std::uint32_t flags = 0;
    bool held = false;
};

Result<Header> read_header(Reader& r) {
    Header h;
    h.version = r.u8();
    if (!r.ok() || h.version == 0) {
        return fail(ErrorKind::kCorrupt, "envelope: empty or version 0");
    }
    if (h.version > kEnvelopeVersion) {
        return fail(ErrorKind::kCorrupt, fmt::format("envelope: version {} is newer than {}",
                                                     h.version, kEnvelopeVersion));
    }
    h.facts.id = QueueId{r.u64()};
    h.arrival = r.i64();
    h.facts.klass = r.u8();
    const std::uint8_t state = r.u8();
    h.facts.due = r.i64();
    h.facts.expires = r.i64();
    h.flags = r.u32();
    const std::uint8_t held = r.u8();
    h.facts.size = r.u64();
    h.facts.body_ref = r.u64();
    if (!r.ok()) {
        return fail(ErrorKind::kCorrupt, "envelope: truncated header");
    }
    if (h.facts.klass >= kMaxClasses || state > kMaxMsgState || held > 1) {
        return fail(ErrorKind::kCorrupt, "envelope: header field out of range");
    }
    h.facts.state = static_cast<MsgState>(state);
    h.held = held == 1;
    h.facts.in_expiry = h.facts.expires != 0 && (h.flags & kFlagExpiredHold) == 0;
    h.facts.dsn = (h.flags & kFlagDsn) != 0;
    return h;
}

} // namespace

IndexFacts facts_of(const Envelope& env, std::uint64_t body_ref) {
    IndexFacts f;
    f.id = env.id;
    f.klass = env.klass;
    f.state = message_state(env);
    f.due = f.state == MsgState::kDeferred ? next_due(env) : 0;
    f.expires = env.expires_ms;
    f.in_expiry = env.expires_ms != 0 && (env.flags & kFlagExpiredHold) == 0;
    f.size = env.size;
    f.body_ref = body_ref;
    f.dsn = (env.flags & kFlagDsn) != 0;
    return f;
}

RecipientFacts recipient_facts_of(const Envelope& env) {
    RecipientFacts r;
    const bool ready = message_state(env) == MsgState::kReady;
    const bool dsn = (env.flags & kFlagDsn) != 0;
    r.addresses.reserve(env.recipients.size());
    for (const Recipient& rc : env.recipients) {
        r.addresses.push_back(address::ascii_lower(rc.address));
        if (ready && rc.state == RcptState::kQueued) {
            r.ready_domains.emplace_back(dsn ? kDsnDomain : domain_of(r.addresses.back()));
        }
    }
    for (auto* v : {&r.addresses, &r.ready_domains}) {
        std::sort(v->begin(), v->end());
        v->erase(std::unique(v->begin(), v->end()), v->end());
    }
    return r;
}

std::string encode_envelope(const Envelope& env, std::uint64_t body_ref) {
    const IndexFacts f = facts_of(env, body_ref);
    Writer w;
    const bool v2 = !env.hold_reason.empty();
    w.u8(v2 ? 2 : 1);
    w.u64(env.id.value);
    w.i64(env.arrival_ms);
    w.u8(env.klass);
    w.u8(static_cast<std::uint8_t>(f.state));
    w.i64(f.due);
    w.i64(env.expires_ms);
    w.u32(env.flags);
    w.u8(env.held ? 1 : 0);
    w.u64(env.size);
    w.u64(body_ref);
    w.str(env.mail_from);
    w.str(env.mail_params);
    w.str(env.ret);
    w.str(env.envid);
    w.str(env.client_addr);
    w.str(env.helo);
    w.str(env.tls);
    w.u32(static_cast<std::uint32_t>(env.recipients.size()));
    for (const Recipient& r : env.recipients) {
        w.str(r.address);
        w.str(r.orcpt);
        w.u8(r.notify);
        w.u8(static_cast<std::uint8_t>(r.state));
        w.i64(r.next_attempt_ms);
        w.u32(r.attempts);
        w.str(r.last_response);
    }
    if (v2) {
        w.str(env.hold_reason);
    }
    return w.take();
}

Result<IndexFacts> decode_facts(std::string_view bytes) {
    Reader r(bytes);
    SPOOLD_TRY(h, read_header(r));
    return h.facts;
}

Result<Envelope> decode_envelope(std::string_view bytes) {
    Reader r(bytes);
    SPOOLD_TRY(h, read_header(r));
    Envelope env;
    env.id = h.facts.id;
    env.arrival_ms = h.arrival;
    env.klass = h.facts.klass;
    env.expires_ms = h.facts.expires;
    env.flags = h.flags;
    env.held = h.held;
    env.size = h.facts.size;
    env.mail_from = r.str();
    env.mail_params = r.str();
    env.ret = r.str();
    env.envid = r.str();
    env.client_addr = r.str();
    env.helo = r.str();
    env.tls = r.str();
    const std::uint32_t n = r.u32();
    if (!r.ok()) {
        return fail(ErrorKind::kCorrupt, "envelope: truncated");
    }
    // Checked before reserving so a damaged count cannot ask for gigabytes.
    if (static_cast<std::uint64_t>(n) * kMinRecipientSize > r.remaining()) {
        return fail(ErrorKind::kCorrupt, "envelope: recipient count exceeds the record");
    }
    env.recipients.reserve(n);
    for (std::uint32_t i = 0; i < n; ++i) {
        Recipient rc;
        rc.address = r.str();
        rc.orcpt = r.str();
        rc.notify = r.u8();
        const std::uint8_t state = r.u8();
        rc.next_attempt_ms = r.i64();
        rc.attempts = r.u32();
        rc.last_response = r.str();
        if (!r.ok()) {
            return fail(ErrorKind::kCorrupt, "envelope: truncated recipient");
        }
        if (state > kMaxRcptState) {
            return fail(ErrorKind::kCorrupt, "envelope: recipient state out of range");
        }
        rc.state = static_cast<RcptState>(state);
        env.recipients.push_back(std::move(rc));
    }
    if (h.version >= 2) {
        env.hold_reason = r.str();
        if (!r.ok()) {
            return fail(ErrorKind::kCorrupt, "envelope: truncated hold reason");
        }
        // Version 2 is written only for a reason (a reason-less envelope is written as 1), so
        // an empty one is damage; reading it would re-encode to other bytes.
        if (env.hold_reason.empty()) {
            return fail(ErrorKind::kCorrupt, "envelope: version 2 without a hold reason");
        }
    }
    if (r.remaining() != 0) {
        return fail(ErrorKind::kCorrupt, "envelope: trailing bytes");
    }
    if (facts_of(env, h.facts.body_ref) != h.facts) {
        return fail(ErrorKind::kCorrupt, "envelope: header disagrees with recipients");
    }
    return env;
}

std::string be64(std::uint64_t v) {
    std::string out(8, '\0');
    for (std::size_t i = 0; i < 8; ++i) {
        out[7 - i] = static_cast<char>(v & 0xFFU);
        v >>= 8U;
    }
    return out;
}

std::string be32(std::uint32_t v) {
    std::string out(4, '\0');
    for (std::size_t i = 0; i < 4; ++i) {
        out[3 - i] = static_cast<char>(v & 0xFFU);
        v >>= 8U;
    }
    return out;
}

std::uint64_t read_be64(std::string_view s) {
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < 8; ++i) {
        v = (v << 8U) | static_cast<std::uint8_t>(s[i]);
    }
    return v;
}

std::uint32_t read_be32(std::string_view s) {
    std::uint32_t v = 0;
    for (std::size_t i = 0; i < 4; ++i) {
        v = (v << 8U) | static_cast<std::uint8_t>(s[i]);
    }
    return v;
}

std::string msg_key(QueueId id) { return be64(id.value); }

std::string body_key(std::uint64_t body_ref, std::uint32_t chunk) {
    return be64(body_ref) + be32(chunk);
}

std::string ready_key(ClassId klass, QueueId id) {
    return std::string(1, static_cast<char>(klass)) + be64(id.value);
}

std::string time_key(UnixMillis at, QueueId id) {
    // Persisted times are never negative; clamp so a bad value cannot sort before 1970.
    return be64(static_cast<std::uint64_t>(at < 0 ? 0 : at)) + be64(id.value);
}

std::string counter_key(ClassId klass, MsgState state) {
    return {static_cast<char>(klass), static_cast<char>(state)};
}

QueueId id_at(std::string_view key, std::size_t offset) {
    return QueueId{read_be64(key.substr(offset))};
}

QueueId id_at_end(std::string_view key) { return id_at(key, key.size() - 8); }

std::string_view domain_of(std::string_view address) {
    const auto at = address.rfind('@');
    return at == std::string_view::npos ? std::string_view() : address.substr(at + 1);
}

std::string rcpt_prefix(std::string_view address) {
    const auto at = address.rfind('@');
    const std::string_view local = at == std::string_view::npos ? address : address.substr(0, at);
    std::string key;
    key.reserve(address.size() + 2);
    key.append(domain_of(address));
    key.push_back('\0');
    key.append(local);
    key.push_back('\0');
    return key;
}

std::string rcpt_key(std::string_view address, QueueId id) {
    return rcpt_prefix(address) + msg_key(id);
}

std::string rcpt_tag_prefix(std::string_view address, char delimiter) {
    std::string key = rcpt_prefix(address);
    key.back() = delimiter;
    return key;
}

void append_key_list(std::string& list, std::string_view key) {
    constexpr std::size_t kMaxKey = 0xFFFF;
    SPOOLD_ASSERT(key.size() <= kMaxKey, "an index key too long for a key list");
    list.push_back(static_cast<char>(key.size() >> 8U));
    list.push_back(static_cast<char>(key.size() & 0xFFU));
    list.append(key);
}

bool read_key_list(std::string_view list, std::vector<std::string>& out) {
    constexpr std::size_t kLengthSize = 2;
    while (!list.empty()) {
        if (list.size() < kLengthSize) {
            return false;
        }
        const std::size_t n = static_cast<std::size_t>(static_cast<std::uint8_t>(list[0])) << 8U |
                              static_cast<std::uint8_t>(list[1]);
        if (list.size() - kLengthSize < n) {
            return false;
        }
        out.emplace_back(list.substr(kLengthSize, n));
        list.remove_prefix(kLengthSize + n);
    }
    return true;
}

std::string ready_domain_key(ClassId klass, std::string_view domain, QueueId id) {
    std::string key(1, static_cast<char>(klass));
    key.append(domain);
    key.push_back('\0');
    return key + msg_key(id);
}

} // namespace spoold::spool::record
