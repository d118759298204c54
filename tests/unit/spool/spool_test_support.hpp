// Helpers shared by the spool tests: a temp dir per test, spools and bare environments in
// it, message builders, and the full-scan check that counters and every index agree with the
// stored envelopes. Test-only; nothing here is used by the spool itself.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <future>
#include <limits>
#include <map>
#include <set>
#include <thread>
#include <string>
#include <vector>

#include "spool/lmdb/lmdb.hpp"
#include "spool/record.hpp"
#include "spool/spool.hpp"
#include "spool/tables.hpp"

namespace spoold::spool::test {

class TempDir {
public:
    TempDir() {
        const char* base = std::getenv("TMPDIR");
        std::string templ = std::string(base != nullptr ? base : "/tmp") + "/spool_test_XXXXXX";
        char* made = mkdtemp(templ.data());
        REQUIRE(made != nullptr);
        path_ = made;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::string& path() const { return path_; }
    std::string sub(const std::string& name) const { return path_ + "/" + name; }

private:
    std::string path_;
};

// A writable spool of 256 MiB in `dir` on `clock`.
inline SpoolOptions options_for(const TempDir& dir, const Clock& clock) {
    SpoolOptions o;
    o.path = dir.sub("spool");
    o.max_size_bytes = 256ULL << 20U;
    o.clock = &clock;
    return o;
}

// The spool's environment and tables without the spool: for testing its parts one by one,
// and for damaging a spool behind its back.
struct RawEnv {
    std::unique_ptr<lmdb::Env> env;
    Tables tables;
};

inline RawEnv open_raw(const std::string& path, std::uint64_t map_size = 64ULL << 20U) {
    lmdb::EnvOptions eo;
    eo.path = path;
    eo.map_size = map_size;
    auto env = lmdb::Env::open(eo);
    REQUIRE(env.has_value());
    auto tables = open_tables(**env, true);
    REQUIRE(tables.has_value());
    return RawEnv{std::move(*env), *tables};
}

// Commits `fn`'s writes in one transaction of `env`.
inline void write_txn(lmdb::Env& env, const std::function<void(lmdb::WriteTxn&)>& fn) {
    auto txn = env.begin_write();
    REQUIRE(txn.has_value());
    fn(*txn);
    REQUIRE(txn->commit());
}

// Cuts a stored record down to its fixed header and a few bytes behind the spool's back:
// the header stays intact (the record can be taken out of its indexes), decoding fails.
inline void truncate_record(lmdb::WriteTxn& txn, const Tables& tables, QueueId id) {
    auto raw = txn.get(tables.msg, record::msg_key(id));
    REQUIRE(raw.has_value());
    REQUIRE(raw->has_value());
    const std::string damaged((*raw)->substr(0, record::kHeaderSize + 3));
    REQUIRE(txn.put(tables.msg, record::msg_key(id), damaged));
}

inline std::unique_ptr<Spool> open_spool(const SpoolOptions& options) {
    auto s = Spool::open(options);
    if (!s) {
        FAIL("open: " << s.error().describe());
    }
    return std::move(*s);
}

inline NewMessage make_message(Spool& spool, ClassId klass, std::size_t rcpts, std::string body,
                               UnixMillis arrival = 1'700'000'000'000, UnixMillis expires = 0) {
    NewMessage m;
    m.envelope.id = spool.new_id();
    m.envelope.arrival_ms = arrival;
    m.envelope.klass = klass;
    m.envelope.mail_from = "sender@example.org";
    m.envelope.mail_params = "SIZE=1000 BODY=8BITMIME";
    m.envelope.client_addr = "203.0.113.5";
    m.envelope.helo = "mx.example.org";
    m.envelope.expires_ms = expires;
    for (std::size_t i = 0; i < rcpts; ++i) {
        Recipient r;
        r.address = "user" + std::to_string(i) + "@example.net";
        m.envelope.recipients.push_back(r);
    }
    m.body = std::move(body);
    return m;
}

// A delivery result for recipient `index`.
inline RecipientUpdate update(std::uint32_t index, RcptState state, UnixMillis next = 0) {
    RecipientUpdate u;
    u.index = index;
    u.state = state;
    u.next_attempt_ms = next;
    u.response = "250 2.0.0 ok";
    return u;
}

inline Status enqueue_sync(Spool& spool, NewMessage m) {
    return spool.wait([&](Done d) { spool.enqueue(std::move(m), std::move(d)); });
}

// A batch write's outcome: the batch's status and, when it committed, each item's.
struct BatchResult {
    Status batch;
    std::vector<Status> items;
};

// Submits one batch operation and waits for its commit.
inline BatchResult batch_sync(const std::function<void(BatchDone)>& submit) {
    std::promise<BatchResult> p;
    submit([&p](Status st, std::vector<Status> each) { p.set_value({st, std::move(each)}); });
    return p.get_future().get();
}

inline BatchResult expire_sync(Spool& spool, std::vector<Expiry> items, UnixMillis now) {
    return batch_sync(
        [&](BatchDone done) { spool.expire(std::move(items), now, std::move(done)); });
}

inline BatchResult warn_sync(Spool& spool, std::vector<DelayWarning> items) {
    return batch_sync(
        [&](BatchDone done) { spool.record_delay_warnings(std::move(items), std::move(done)); });
}

inline std::string read_whole_body(Spool& spool, QueueId id, std::size_t piece = 64 * 1024) {
    std::string out;
    std::uint32_t chunk = 0;
    for (;;) {
        auto p = spool.read_body(id, chunk, piece);
        REQUIRE(p.has_value());
        out += p->data;
        if (p->done) {
            return out;
        }
        REQUIRE(p->next_chunk > chunk);
        chunk = p->next_chunk;
    }
}

inline std::vector<Envelope> all_envelopes(Spool& spool) {
    std::vector<Envelope> out;
    QueueId after{0};
    for (;;) {
        auto page = spool.envelopes_after(after, 500);
        REQUIRE(page.has_value());
        if (page->empty()) {
            return out;
        }
        after = page->back().id;
        for (auto& e : *page) {
            out.push_back(std::move(e));
        }
    }
}

// Every page of the recipient index for one address form, concatenated.
inline std::vector<QueueId> all_by_recipient(Spool& spool, const std::string& address,
                                             AddressForm form = AddressForm::kExact,
                                             char delimiter = '+', std::size_t page = 3) {
    std::vector<QueueId> out;
    std::string resume;
    for (;;) {
        auto got = spool.recipient_page(address, form, delimiter, resume, page);
        REQUIRE(got.has_value());
        out.insert(out.end(), got->ids.begin(), got->ids.end());
        if (got->resume.empty()) {
            return out;
        }
        resume = got->resume;
    }
}

// The recipient, ready-by-domain and DSN indexes answer what a scan of `envs` derives. Records
// quarantined with unreadable recipients keep their recipient-derived entries until a repair
// (ARCHITECTURE.md, "Spool layout"): their ids are left out of the answers compared.
inline void check_format2_indexes(Spool& spool, const std::vector<Envelope>& envs) {
    constexpr std::size_t kAll = std::numeric_limits<std::size_t>::max();
    auto quarantined = spool.quarantined(kAll);
    REQUIRE(quarantined.has_value());
    const std::set<QueueId> gone(quarantined->begin(), quarantined->end());
    const auto live = [&](std::vector<QueueId> ids) {
        std::erase_if(ids, [&](QueueId id) { return gone.contains(id); });
        return ids;
    };
    std::map<std::string, std::vector<QueueId>> by_address;
    std::map<std::pair<ClassId, std::string>, std::vector<QueueId>> by_domain;
    std::vector<QueueId> dsns;
    for (const Envelope& e : envs) {
        const record::RecipientFacts r = record::recipient_facts_of(e);
        for (const auto& a : r.addresses) {
            by_address[a].push_back(e.id);
        }
        for (const auto& d : r.ready_domains) {
            by_domain[{e.klass, d}].push_back(e.id);
        }
        if ((e.flags & kFlagDsn) != 0) {
            dsns.push_back(e.id);
        }
    }
    for (const auto& [address, ids] : by_address) {
        CHECK(live(all_by_recipient(spool, address)) == ids);
    }
    for (ClassId k = 0; k < kMaxClasses; ++k) {
        auto domains = spool.ready_domains(k, kAll);
        REQUIRE(domains.has_value());
        for (const auto& d : *domains) {
            auto ids = spool.ready_in_domain(k, d, QueueId{0}, kAll);
            REQUIRE(ids.has_value());
            const auto want = by_domain.find({k, d});
            CHECK(live(*ids) == (want == by_domain.end() ? std::vector<QueueId>{} : want->second));
        }
        for (auto it = by_domain.lower_bound({k, ""});
             it != by_domain.end() && it->first.first == k; ++it) {
            CHECK(std::find(domains->begin(), domains->end(), it->first.second) != domains->end());
        }
    }
    auto dsn_ids = spool.dsns_after(QueueId{0}, kAll);
    REQUIRE(dsn_ids.has_value());
    CHECK(*dsn_ids == dsns);
}

// Counters and every index equal what a full scan derives.
inline void check_consistent(Spool& spool, bool check_bodies = true) {
    const std::vector<Envelope> envs = all_envelopes(spool);
    Counters expect;
    std::map<ClassId, std::vector<QueueId>> ready;
    std::vector<std::pair<UnixMillis, QueueId>> deferred;
    std::vector<std::pair<UnixMillis, QueueId>> expiring;
    for (const Envelope& e : envs) {
        const MsgState s = message_state(e);
        const auto si = static_cast<std::size_t>(s);
        expect.messages[e.klass][si] += 1;
        expect.bytes[e.klass][si] += e.size;
        if (s == MsgState::kReady) {
            ready[e.klass].push_back(e.id);
        } else if (s == MsgState::kDeferred) {
            deferred.emplace_back(next_due(e), e.id);
        }
        if (e.expires_ms != 0 && (e.flags & kFlagExpiredHold) == 0) {
            expiring.emplace_back(e.expires_ms, e.id);
        }
        if (check_bodies) {
            CHECK(read_whole_body(spool, e.id).size() == e.size);
        }
    }
    auto got = spool.counters();
    REQUIRE(got.has_value());
    CHECK(got->messages == expect.messages);
    CHECK(got->bytes == expect.bytes);
    CHECK(got->total_messages() == envs.size());
    constexpr std::size_t kAll = std::numeric_limits<std::size_t>::max();
    for (ClassId k = 0; k < kMaxClasses; ++k) {
        auto ids = spool.ready_after(k, QueueId{0}, kAll);
        REQUIRE(ids.has_value());
        CHECK(*ids == ready[k]);
    }
    std::sort(deferred.begin(), deferred.end());
    std::sort(expiring.begin(), expiring.end());
    auto due = spool.due(std::numeric_limits<UnixMillis>::max(), kAll);
    auto exp = spool.expired(std::numeric_limits<UnixMillis>::max(), kAll);
    REQUIRE(due.has_value());
    REQUIRE(exp.has_value());
    std::vector<QueueId> want_due;
    std::vector<QueueId> want_exp;
    for (const auto& p : deferred) {
        want_due.push_back(p.second);
    }
    for (const auto& p : expiring) {
        want_exp.push_back(p.second);
    }
    CHECK(*due == want_due);
    CHECK(*exp == want_exp);
    check_format2_indexes(spool, envs);
}

// Polls `pred` until it holds or the deadline passes (no fixed sleeps in tests).
inline bool eventually(const std::function<bool()>& pred,
                       std::chrono::milliseconds deadline = std::chrono::seconds(10)) {
    const auto end = std::chrono::steady_clock::now() + deadline;
    while (std::chrono::steady_clock::now() < end) {
        if (pred()) {
            return true;
        }
        std::this_thread::yield();
    }
    return pred();
}

} // namespace spoold::spool::test
