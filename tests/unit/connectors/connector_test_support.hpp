// Helpers for connector tests: a temp dir per test, a body reader over a string, and
// running one coroutine to completion on an io_context within a bounded time.
#pragma once

#include <doctest/doctest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>

#include "drain/mailstore.hpp"
#include "tests/unit/connectors/fake_lmtp_server.hpp"

namespace spoold::test {

class TempDir {
public:
    TempDir() {
        std::string tmpl = (std::filesystem::temp_directory_path() / "spoold-conn-XXXXXX").string();
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        path_ = tmpl;
    }
    ~TempDir() {
        std::error_code ignored;
        std::filesystem::remove_all(path_, ignored);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::filesystem::path& path() const { return path_; }

private:
    std::filesystem::path path_;
};

// Serves `body` in pieces of at most max_bytes; next_chunk is a byte offset here.
inline drain::BodyReader string_body(std::string body) {
    auto data = std::make_shared<const std::string>(std::move(body));
    return [data](std::uint32_t from, std::size_t max_bytes) -> Result<spool::BodyPiece> {
        spool::BodyPiece piece;
        piece.data = data->substr(from, max_bytes);
        piece.next_chunk = from + static_cast<std::uint32_t>(piece.data.size());
        piece.done = piece.next_chunk >= data->size();
        return piece;
    };
}

inline drain::DeliveryRequest make_request(std::vector<std::string> rcpts, std::string body) {
    drain::DeliveryRequest req;
    req.mail_from = "sender@example.org";
    req.recipients = std::move(rcpts);
    req.size = body.size();
    req.read_body = string_body(std::move(body));
    return req;
}

inline constexpr auto kTestBound = std::chrono::seconds(20);

// Runs `work` on `ctx` until it finishes (or kTestBound passes: then the test fails).
template <typename T> T run(boost::asio::io_context& ctx, boost::asio::awaitable<T> work) {
    std::optional<T> out;
    boost::asio::co_spawn(ctx, std::move(work), [&out, &ctx](std::exception_ptr e, T value) {
        log_escaped(e, "test_client");
        if (!e) {
            out = std::move(value);
        }
        ctx.stop();
    });
    ctx.restart();
    ctx.run_for(kTestBound);
    ctx.restart();
    REQUIRE_MESSAGE(out.has_value(), "the coroutine did not finish within the bound");
    return std::move(*out);
}

inline std::string read_file(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

} // namespace spoold::test
