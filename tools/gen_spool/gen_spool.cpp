// gen_spool: fills a spool with synthetic messages through the spool API (the real
// group-commit writer, many enqueues in flight), for spoolctl's tests and benchmarks.
// Not a load test of the daemon: nothing here speaks SMTP.
#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fmt/format.h>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "common/log.hpp"
#include "spool/spool.hpp"

using namespace spoold;

namespace {

constexpr std::size_t kMaxInFlight = 16384;
constexpr std::int64_t kHourMs = 3'600'000;

struct Options {
    std::string spool;
    std::uint64_t count = 0;
    std::string domain = "example.org";
    std::uint32_t users = 10'000;     // recipients are user0..user<users-1>@domain
    std::uint32_t max_recipients = 3; // 1..max per message
    std::size_t body_size = 1500;     // body bytes after the headers (approximate)
    std::uint32_t classes = 3;
    double deferred = 0.2;                     // fraction of messages with a deferred recipient
    double held = 0.02;                        // fraction held
    std::int64_t spread_ms = 7 * 24 * kHourMs; // arrivals spread over this much of the past
    std::uint64_t seed = 1;
    std::uint64_t map_size = 64ULL << 30U;
    // When deferred recipients come due, from now (negative: already due); none = random in
    // the next two hours.
    std::optional<std::int64_t> due_in_ms;
    // Expiry from now (negative: already expired); none = arrival + 30 days.
    std::optional<std::int64_t> expires_in_ms;
    std::uint32_t first_user = 0; // recipients are user<first_user + K>
};

const char* const kUsage =
    "usage: gen_spool --spool DIR --count N [--recipients-domain D] [--users N]\n"
    "                 [--max-recipients N] [--body-size BYTES] [--classes N]\n"
    "                 [--deferred FRACTION] [--held FRACTION] [--spread-hours H] [--seed N]\n"
    "                 [--map-size-gb N] [--due-in-ms MS] [--expires-in-ms MS]\n"
    "                 [--first-user N]\n"
    "Recipients are userK@D with K uniform in [0, users); senders are senderJ@listJ.example.\n"
    "Arrival times are spread over the past --spread-hours (default 168). Deferred\n"
    "recipients come due --due-in-ms from now (negative: due already; default: at random\n"
    "in the next two hours); messages expire --expires-in-ms from now (default: 30 days\n"
    "after arrival). Writes meta\n"
    "\"classes\" = urgent,normal,bulk when the spool has none.\n";

template <typename T> bool parse_number(const std::string& text, T& out) {
    const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    return ec == std::errc{} && ptr == text.data() + text.size() && !text.empty();
}

bool parse_fraction(const std::string& text, double& out) {
    try {
        std::size_t used = 0;
        out = std::stod(text, &used);
        return used == text.size() && out >= 0 && out <= 1;
    } catch (const std::exception&) {
        return false;
    }
}

bool parse_args(int argc, char** argv, Options& o) {
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--help") {
            std::fputs(kUsage, stdout);
            std::exit(0);
        }
        if (i + 1 >= argc) {
            std::fprintf(stderr, "gen_spool: %s needs a value\n", a.c_str());
            return false;
        }
        const std::string v = argv[++i];
        std::uint64_t hours = 0;
        std::uint64_t gb = 0;
        bool ok = true;
        if (a == "--spool") {
            o.spool = v;
        } else if (a == "--count") {
            ok = parse_number(v, o.count);
        } else if (a == "--recipients-domain") {
            o.domain = v;
        } else if (a == "--users") {
            ok = parse_number(v, o.users) && o.users > 0;
        } else if (a == "--max-recipients") {
            ok = parse_number(v, o.max_recipients) && o.max_recipients > 0;
        } else if (a == "--body-size") {
            ok = parse_number(v, o.body_size);
        } else if (a == "--classes") {
            ok = parse_number(v, o.classes) && o.classes > 0 && o.classes <= spool::kMaxClasses;
        } else if (a == "--deferred") {
            ok = parse_fraction(v, o.deferred);
        } else if (a == "--held") {
            ok = parse_fraction(v, o.held);
        } else if (a == "--spread-hours") {
            ok = parse_number(v, hours);
            o.spread_ms = static_cast<std::int64_t>(hours) * kHourMs;
        } else if (a == "--seed") {
            ok = parse_number(v, o.seed);
        } else if (a == "--due-in-ms" || a == "--expires-in-ms") {
            std::int64_t ms = 0;
            ok = parse_number(v, ms);
            (a == "--due-in-ms" ? o.due_in_ms : o.expires_in_ms) = ms;
        } else if (a == "--first-user") {
            ok = parse_number(v, o.first_user);
        } else if (a == "--map-size-gb") {
            ok = parse_number(v, gb) && gb > 0;
            o.map_size = gb << 30U;
        } else {
            std::fprintf(stderr, "gen_spool: unknown option %s\n%s", a.c_str(), kUsage);
            return false;
        }
        if (!ok) {
            std::fprintf(stderr, "gen_spool: %s %s: bad value\n", a.c_str(), v.c_str());
            return false;
        }
    }
    if (o.spool.empty() || o.count == 0) {
        std::fputs(kUsage, stderr);
        return false;
    }
    return true;
}

std::string make_body(const spool::Envelope& env, std::size_t body_size, std::mt19937_64& rng) {
    std::string b;
    b.reserve(body_size + 512);
    b += fmt::format(
        "Received: from gen.example (gen.example [192.0.2.1])\r\n\tby mx.{} with ESMTP id {}\r\n",
        "example.net", env.id.text());
    b += fmt::format("From: <{}>\r\nTo: <{}>\r\nSubject: synthetic message {}\r\n", env.mail_from,
                     env.recipients.front().address, env.id.text());
    b += fmt::format("Message-ID: <{}@gen.example>\r\nMIME-Version: 1.0\r\n", env.id.text());
    b += "Content-Type: text/plain; charset=us-ascii\r\n\r\n";
    // One line in eight starts with "From " so that mbox export has quoting to do.
    static constexpr std::string_view kWords[] = {"spool",  "drain", "mailstore", "retry",
                                                  "outage", "From ", "queue",     "deliver"};
    std::string line;
    while (b.size() < body_size) {
        line.clear();
        while (line.size() < 70) {
            line += kWords[rng() % std::size(kWords)];
            line += ' ';
        }
        b += line;
        b += "\r\n";
    }
    return b;
}

} // namespace

int main(int argc, char** argv) {
    Options o;
    if (!parse_args(argc, argv, o)) {
        return 2;
    }
    log::set_level(log::Level::kWarn);
    spool::SpoolOptions so;
    so.path = o.spool;
    so.create = true;
    so.max_size_bytes = o.map_size;
    auto opened = spool::Spool::open(so);
    if (!opened) {
        std::fprintf(stderr, "gen_spool: %s: %s\n", o.spool.c_str(),
                     opened.error().describe().c_str());
        return 1;
    }
    auto& s = **opened;
    if (auto m = s.get_meta("classes"); m && !*m) {
        (void)s.wait(
            [&](spool::Done d) { s.put_meta("classes", "urgent,normal,bulk", std::move(d)); });
    }

    std::mt19937_64 rng(o.seed);
    std::mutex mutex;
    std::condition_variable cv;
    std::size_t in_flight = 0;
    std::uint64_t failed = 0;
    std::string first_error;
    const UnixMillis now = SystemClock::instance().now_ms();
    const auto start = std::chrono::steady_clock::now();
    std::uint64_t bytes = 0;

    for (std::uint64_t i = 0; i < o.count; ++i) {
        spool::NewMessage m;
        auto& env = m.envelope;
        env.id = s.new_id();
        env.arrival_ms =
            now - static_cast<std::int64_t>(
                      rng() % static_cast<std::uint64_t>(std::max<std::int64_t>(o.spread_ms, 1)));
        env.klass = static_cast<spool::ClassId>(rng() % o.classes);
        const std::uint64_t sender = rng() % 1000;
        env.mail_from = fmt::format("sender{}@list{}.example", sender, sender % 50);
        env.client_addr = "192.0.2.1";
        env.helo = "gen.example";
        env.expires_ms =
            o.expires_in_ms ? now + *o.expires_in_ms : env.arrival_ms + 30 * 24 * kHourMs;
        const std::uint32_t n = 1 + static_cast<std::uint32_t>(rng() % o.max_recipients);
        const bool deferred = static_cast<double>(rng() % 1'000'000) < o.deferred * 1'000'000;
        for (std::uint32_t r = 0; r < n; ++r) {
            spool::Recipient rc;
            rc.address = fmt::format("user{}@{}", o.first_user + rng() % o.users, o.domain);
            if (deferred) { // every recipient, or the message would still be ready
                rc.state = spool::RcptState::kDeferred;
                rc.attempts = 1;
                rc.next_attempt_ms = o.due_in_ms
                                         ? now + *o.due_in_ms
                                         : now + static_cast<std::int64_t>(rng() % (2 * kHourMs));
                rc.last_response = "451 4.3.0 mailstore unavailable";
            }
            env.recipients.push_back(std::move(rc));
        }
        env.held = static_cast<double>(rng() % 1'000'000) < o.held * 1'000'000;
        m.body = make_body(env, o.body_size, rng);
        env.size = m.body.size();
        bytes += env.size;
        {
            std::unique_lock lock(mutex);
            cv.wait(lock, [&] { return in_flight < kMaxInFlight; });
            ++in_flight;
        }
        s.enqueue(std::move(m), [&](Status st) {
            const std::lock_guard lock(mutex);
            if (!st) {
                if (failed++ == 0) {
                    first_error = st.error().describe();
                }
            }
            --in_flight;
            cv.notify_all();
        });
    }
    {
        std::unique_lock lock(mutex);
        cv.wait(lock, [&] { return in_flight == 0; });
    }
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("gen_spool: %llu messages (%.1f MB) in %.2f s: %.0f msg/s, %llu failed\n",
                static_cast<unsigned long long>(o.count - failed), static_cast<double>(bytes) / 1e6,
                secs, static_cast<double>(o.count) / secs, static_cast<unsigned long long>(failed));
    if (failed > 0) {
        std::fprintf(stderr, "gen_spool: first error: %s\n", first_error.c_str());
        return 1;
    }
    return 0;
}
