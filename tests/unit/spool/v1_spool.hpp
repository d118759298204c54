// A spool exactly as format 1 (spoold before the recipient, ready-by-domain and DSN indexes)
// wrote it, for the upgrade tests: the nine tables of that layout, its record encoder, body
// chunks, indexes, counters and meta. Deliberately a frozen copy, not the spool's own code: it
// must keep writing format 1 whatever the spool's code becomes.
#pragma once

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "spool/lmdb/lmdb.hpp"
#include "spool/spool.hpp"

namespace spoold::spool::test::v1 {

inline void put_u8(std::string& o, std::uint8_t v) { o.push_back(static_cast<char>(v)); }
inline void put_be(std::string& o, std::uint64_t v, int bytes) {
    for (int shift = (bytes - 1) * 8; shift >= 0; shift -= 8) {
        o.push_back(static_cast<char>((v >> static_cast<unsigned>(shift)) & 0xFFU));
    }
}
inline std::string be(std::uint64_t v, int bytes) {
    std::string o;
    put_be(o, v, bytes);
    return o;
}
inline void put_str(std::string& o, std::string_view s) {
    put_be(o, s.size(), 4);
    o.append(s);
}

// Format 1's envelope record: the fixed header, the strings, the recipients.
inline std::string encode(const Envelope& env, MsgState state, UnixMillis due, std::uint64_t ref) {
    std::string o;
    put_u8(o, 1);
    put_be(o, env.id.value, 8);
    put_be(o, static_cast<std::uint64_t>(env.arrival_ms), 8);
    put_u8(o, env.klass);
    put_u8(o, static_cast<std::uint8_t>(state));
    put_be(o, static_cast<std::uint64_t>(due), 8);
    put_be(o, static_cast<std::uint64_t>(env.expires_ms), 8);
    put_be(o, env.flags, 4);
    put_u8(o, env.held ? 1 : 0);
    put_be(o, env.size, 8);
    put_be(o, ref, 8);
    for (const auto* s : {&env.mail_from, &env.mail_params, &env.ret, &env.envid, &env.client_addr,
                          &env.helo, &env.tls}) {
        put_str(o, *s);
    }
    put_be(o, env.recipients.size(), 4);
    for (const Recipient& r : env.recipients) {
        put_str(o, r.address);
        put_str(o, r.orcpt);
        put_u8(o, r.notify);
        put_u8(o, static_cast<std::uint8_t>(r.state));
        put_be(o, static_cast<std::uint64_t>(r.next_attempt_ms), 8);
        put_be(o, r.attempts, 4);
        put_str(o, r.last_response);
    }
    return o;
}

// Writes a format 1 spool at `path` holding `messages` (bodies in 4080-byte chunks), in one
// transaction, as that format's writer left it.
inline void write_spool(const std::string& path, const std::vector<NewMessage>& messages) {
    lmdb::EnvOptions eo;
    eo.path = path;
    eo.map_size = 64ULL << 20U;
    auto env = lmdb::Env::open(eo);
    REQUIRE(env.has_value());
    struct {
        lmdb::Dbi msg, body, ready, deferred, expiry, counters, staging, meta, corrupt;
    } t{};
    const std::pair<lmdb::Dbi*, const char*> tables[] = {
        {&t.msg, "msg"},           {&t.body, "body"},     {&t.ready, "ready"},
        {&t.deferred, "deferred"}, {&t.expiry, "expiry"}, {&t.counters, "counters"},
        {&t.staging, "staging"},   {&t.meta, "meta"},     {&t.corrupt, "corrupt"},
    };
    for (const auto& [dbi, name] : tables) {
        auto opened = (*env)->table(name, true);
        REQUIRE(opened.has_value());
        *dbi = *opened;
    }
    auto txn = (*env)->begin_write();
    REQUIRE(txn.has_value());
    REQUIRE(txn->put(t.meta, "format_version", "1"));
    std::uint64_t ref = 0;
    std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> counters;
    for (const NewMessage& m : messages) {
        Envelope env_copy = m.envelope;
        env_copy.size = m.body.size();
        ++ref;
        const MsgState state = message_state(env_copy);
        const UnixMillis due = state == MsgState::kDeferred ? next_due(env_copy) : 0;
        const std::string id = be(env_copy.id.value, 8);
        REQUIRE(txn->put(t.msg, id, encode(env_copy, state, due, ref)));
        constexpr std::size_t kChunk = 4080;
        for (std::size_t off = 0, n = 0; off < m.body.size(); off += kChunk, ++n) {
            REQUIRE(txn->put(t.body, be(ref, 8) + be(n, 4), m.body.substr(off, kChunk)));
        }
        if (state == MsgState::kReady) {
            REQUIRE(txn->put(t.ready, std::string(1, static_cast<char>(env_copy.klass)) + id, {}));
        } else if (state == MsgState::kDeferred) {
            REQUIRE(txn->put(t.deferred, be(static_cast<std::uint64_t>(due), 8) + id, {}));
        }
        if (env_copy.expires_ms != 0 && (env_copy.flags & kFlagExpiredHold) == 0) {
            REQUIRE(txn->put(t.expiry, be(static_cast<std::uint64_t>(env_copy.expires_ms), 8) + id,
                             {}));
        }
        auto& c = counters[{static_cast<char>(env_copy.klass), static_cast<char>(state)}];
        c.first += 1;
        c.second += env_copy.size;
    }
    for (const auto& [key, c] : counters) {
        REQUIRE(txn->put(t.counters, key, be(c.first, 8) + be(c.second, 8)));
    }
    REQUIRE(txn->put(t.meta, "last_body_ref", be(ref, 8)));
    REQUIRE(txn->commit());
}

} // namespace spoold::spool::test::v1
