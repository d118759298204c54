// libFuzzer target: a client's bytes on one connection to the operations endpoint, read the
// way daemon/http/server.cpp reads them (Beast's request parser with our limits, the read
// buffer bound, pipelined requests) and answered by http::respond(). Every answer must be a
// complete, parseable HTTP response with the request's version and keep-alive, one of the
// statuses the routes give, a Content-Length that matches, and no body for HEAD; /status
// carries fuzzed names (JSON escaping) and sometimes throws (the 500 path).
// Input: 8 control bytes (seed of the read sizes and the status source), then the bytes.
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <algorithm>
#include <cstddef>
#include <cstring>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

#include "common/log.hpp"
#include "daemon/http/routes.hpp"
#include "daemon/http/status.hpp"
#include "tests/fuzz/fuzz_support.hpp"

using namespace spoold;
using fuzz::check;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;

namespace {

std::string serialize(bhttp::message_generator& message) {
    std::string wire;
    while (!message.is_done()) {
        beast::error_code ec;
        const auto buffers = message.prepare(ec);
        check(!ec, "serializing a response failed", ec.message());
        std::size_t n = 0;
        for (const auto& b : buffers) {
            wire.append(static_cast<const char*>(b.data()), b.size());
            n += b.size();
        }
        message.consume(n);
    }
    return wire;
}

void check_response(const http::Request& request, const std::string& wire,
                    std::string_view status_body) {
    bhttp::response_parser<bhttp::string_body> parser;
    parser.eager(true);
    parser.skip(request.method() == bhttp::verb::head);
    beast::error_code ec;
    const std::size_t used = parser.put(boost::asio::buffer(wire), ec);
    check(!ec && parser.is_done() && used == wire.size(), "a response that does not parse", wire);
    const auto& res = parser.get();
    const unsigned status = res.result_int();
    check(status == 200 || status == 404 || status == 405 || status == 500,
          "a status the routes never give", wire);
    check(res.version() == request.version(), "the response's version is not the request's");
    check(res.keep_alive() == request.keep_alive(), "keep-alive differs from the request's");
    const auto length = res[bhttp::field::content_length];
    check(!length.empty(), "a response without Content-Length", wire);
    if (request.method() == bhttp::verb::head) {
        check(res.body().empty(), "a body in a response to HEAD", wire);
    } else {
        check(std::to_string(res.body().size()) == std::string_view(length.data(), length.size()),
              "Content-Length is not the body's", wire);
    }
    std::string_view target(request.target().data(), request.target().size());
    target = target.substr(0, target.find('?'));
    if (status == 200 && target == "/status" && request.method() == bhttp::verb::get) {
        check(res.body() == status_body, "/status is not the status source's document");
        for (const char c : res.body()) {
            check(static_cast<unsigned char>(c) >= 0x20 && c != '<',
                  "a control byte or '<' in the /status JSON", res.body());
        }
    }
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    log::set_level(log::Level::kError);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    auto [choices, bytes] = fuzz::split_input(data, size);
    std::string status_body;
    std::string name; // the request's target: hostile text in the JSON
    const bool throws = choices.one_in(16);
    const http::StatusSource status = [&]() -> std::string {
        if (throws) {
            throw std::runtime_error("status source failed");
        }
        http::StatusSnapshot snapshot;
        snapshot.version = name;
        snapshot.classes.push_back({name, 1, 2, 3, 4});
        snapshot.mailstores.push_back({name, metrics::BreakerLevel::kOpen, 4, 1, 0.5});
        status_body = http::status_json(snapshot);
        return status_body;
    };

    beast::flat_buffer buffer(http::kReadBufferLimit);
    std::size_t pos = 0;
    for (;;) {
        http::RequestParser parser;
        http::limit_request(parser);
        parser.eager(true);
        // bhttp::async_read's loop: parse what is buffered, read more only when it needs more.
        bool complete = false;
        for (;;) {
            beast::error_code ec;
            if (buffer.size() > 0) {
                buffer.consume(parser.put(buffer.data(), ec));
                if (parser.is_done()) {
                    complete = true;
                    break;
                }
                if (ec && ec != bhttp::error::need_more) {
                    break; // a bad request: the server closes the connection
                }
            }
            if (pos == bytes.size() || buffer.size() == buffer.max_size()) {
                break; // the client closed, or filled the buffer without a whole request
            }
            const std::size_t room = buffer.max_size() - buffer.size();
            const std::size_t n = std::min(
                {bytes.size() - pos, room, 1 + choices.below(choices.one_in(4) ? 4096 : 64)});
            auto space = buffer.prepare(n);
            std::memcpy(space.data(), bytes.data() + pos, n);
            buffer.commit(n);
            pos += n;
        }
        if (!complete) {
            return 0;
        }
        const http::Request& request = parser.get();
        name = std::string(request.target().data(), request.target().size());
        status_body.clear();
        auto message = http::respond(request, status);
        const bool keep_alive = message.keep_alive();
        check_response(request, serialize(message), status_body);
        if (!keep_alive) {
            return 0;
        }
    }
}
