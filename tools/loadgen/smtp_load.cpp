// smtp_load: a lean SMTP load generator for benchmarks. N sessions send a fixed
// number of messages of a fixed size, optionally at a fixed total rate, and the tool
// reports messages/s and the end-of-data -> reply latency (p50/p99). Not a test
// client: it assumes a well-behaved server and counts anything but 250 as an error.
#include <boost/asio.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fmt/format.h>
#include <string>
#include <vector>

#include "common/escaped.hpp"

namespace asio = boost::asio;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
    std::string host = "127.0.0.1";
    std::uint16_t port = 25;
    int sessions = 20;
    long messages = 1000;
    std::size_t size = 10240;
    double rate = 0; // messages/s in total; 0 = as fast as possible
    std::string from = "load@remote.test";
    std::string to = "alice@example.com";
    long per_connection = 100; // messages per SMTP connection before QUIT
};

struct Shared {
    Options opt;
    std::atomic<long> next{0};
    std::atomic<long> ok{0};
    std::atomic<long> errors{0};
    std::vector<double> latencies_ms; // one per session slot, merged at the end
    Clock::time_point start;
};

asio::awaitable<std::string> read_reply(tcp::socket& sock, std::string& buf) {
    for (;;) {
        // A reply ends with a line whose fourth character is a space.
        std::size_t pos = 0;
        while (true) {
            const auto eol = buf.find("\r\n", pos);
            if (eol == std::string::npos) {
                break;
            }
            if (eol - pos >= 4 && buf[pos + 3] == ' ') {
                std::string reply = buf.substr(pos, eol - pos);
                buf.erase(0, eol + 2);
                co_return reply;
            }
            pos = eol + 2;
        }
        char tmp[4096];
        const std::size_t n = co_await sock.async_read_some(asio::buffer(tmp), asio::use_awaitable);
        buf.append(tmp, n);
    }
}

std::string make_body(std::size_t size, long n) {
    std::string body = fmt::format("From: <load@remote.test>\r\nTo: <alice@example.com>\r\n"
                                   "Subject: load {}\r\nMessage-ID: <load-{}@remote.test>\r\n\r\n",
                                   n, n);
    const std::string line(76, 'x');
    while (body.size() + line.size() + 2 < size) {
        body += line;
        body += "\r\n";
    }
    body += ".\r\n";
    return body;
}

asio::awaitable<void> session(Shared& sh, std::vector<double>* lat) {
    auto ex = co_await asio::this_coro::executor;
    const double per_session_interval =
        sh.opt.rate > 0 ? static_cast<double>(sh.opt.sessions) / sh.opt.rate : 0.0;
    auto next_send = Clock::now();
    asio::steady_timer timer(ex);
    while (sh.next.load() < sh.opt.messages) {
        tcp::socket sock(ex);
        std::string buf;
        try {
            co_await sock.async_connect(
                tcp::endpoint(asio::ip::make_address(sh.opt.host), sh.opt.port),
                asio::use_awaitable);
            co_await read_reply(sock, buf);
            co_await asio::async_write(sock, asio::buffer(std::string("EHLO load.test\r\n")),
                                       asio::use_awaitable);
            co_await read_reply(sock, buf);
            for (long k = 0; k < sh.opt.per_connection; ++k) {
                const long n = sh.next.fetch_add(1);
                if (n >= sh.opt.messages) {
                    break;
                }
                if (per_session_interval > 0) {
                    next_send += std::chrono::duration_cast<Clock::duration>(
                        std::chrono::duration<double>(per_session_interval));
                    timer.expires_at(next_send);
                    co_await timer.async_wait(asio::use_awaitable);
                }
                const std::string env = fmt::format("MAIL FROM:<{}>\r\nRCPT TO:<{}>\r\nDATA\r\n",
                                                    sh.opt.from, sh.opt.to);
                co_await asio::async_write(sock, asio::buffer(env), asio::use_awaitable);
                const std::string r1 = co_await read_reply(sock, buf);
                const std::string r2 = co_await read_reply(sock, buf);
                const std::string r3 = co_await read_reply(sock, buf);
                if (!r1.starts_with("250") || !r2.starts_with("250") || !r3.starts_with("354")) {
                    ++sh.errors;
                    co_await asio::async_write(sock, asio::buffer(std::string("RSET\r\n")),
                                               asio::use_awaitable);
                    co_await read_reply(sock, buf);
                    continue;
                }
                const std::string body = make_body(sh.opt.size, n);
                co_await asio::async_write(sock, asio::buffer(body), asio::use_awaitable);
                const auto eod = Clock::now();
                const std::string r4 = co_await read_reply(sock, buf);
                const double ms =
                    std::chrono::duration<double, std::milli>(Clock::now() - eod).count();
                if (r4.starts_with("250")) {
                    ++sh.ok;
                    lat->push_back(ms);
                } else {
                    ++sh.errors;
                }
            }
            co_await asio::async_write(sock, asio::buffer(std::string("QUIT\r\n")),
                                       asio::use_awaitable);
            co_await read_reply(sock, buf);
        } catch (const std::exception& e) {
            ++sh.errors;
            std::fprintf(stderr, "smtp_load: session error: %s\n", e.what());
            if (sh.errors.load() > 1000) {
                co_return;
            }
        }
    }
}

double percentile(std::vector<double>& v, double p) {
    if (v.empty()) {
        return 0;
    }
    std::sort(v.begin(), v.end());
    const auto idx = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1));
    return v[idx];
}

int usage() {
    std::fprintf(stderr, "usage: smtp_load --port P [--host H] [--sessions N] [--messages N] "
                         "[--size BYTES] [--rate MSGS_PER_S] [--to ADDR] [--per-connection N]\n");
    return 2;
}

} // namespace

int main(int argc, char** argv) {
    Shared sh;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (i + 1 >= argc) {
            return usage();
        }
        const std::string v = argv[++i];
        if (a == "--port") {
            sh.opt.port = static_cast<std::uint16_t>(std::stoi(v));
        } else if (a == "--host") {
            sh.opt.host = v;
        } else if (a == "--sessions") {
            sh.opt.sessions = std::stoi(v);
        } else if (a == "--messages") {
            sh.opt.messages = std::stol(v);
        } else if (a == "--size") {
            sh.opt.size = std::stoul(v);
        } else if (a == "--rate") {
            sh.opt.rate = std::stod(v);
        } else if (a == "--to") {
            sh.opt.to = v;
        } else if (a == "--per-connection") {
            sh.opt.per_connection = std::stol(v);
        } else {
            return usage();
        }
    }
    asio::io_context io(1);
    std::vector<std::vector<double>> lats(static_cast<std::size_t>(sh.opt.sessions));
    sh.start = Clock::now();
    for (auto& l : lats) {
        asio::co_spawn(io, session(sh, &l), [](const std::exception_ptr& e) {
            if (e) {
                std::fprintf(stderr, "smtp_load: %s\n", spoold::describe_escaped(e).c_str());
            }
        });
    }
    io.run();
    const double secs = std::chrono::duration<double>(Clock::now() - sh.start).count();
    std::vector<double> all;
    for (auto& l : lats) {
        all.insert(all.end(), l.begin(), l.end());
    }
    std::printf("{\"messages_ok\": %ld, \"errors\": %ld, \"seconds\": %.3f, \"rate\": %.1f, "
                "\"p50_ms\": %.3f, \"p99_ms\": %.3f}\n",
                sh.ok.load(), sh.errors.load(), secs, static_cast<double>(sh.ok.load()) / secs,
                percentile(all, 0.50), percentile(all, 0.99));
    return sh.errors.load() == 0 ? 0 : 1;
}
