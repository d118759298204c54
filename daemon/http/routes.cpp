#include "daemon/http/routes.hpp"

#include <boost/beast/http/string_body.hpp>
#include <exception>
#include <string>
#include <string_view>

#include "common/log.hpp"
#include "common/metrics.hpp"
#include "daemon/http/page.hpp"

namespace spoold::http {

namespace bhttp = boost::beast::http;

namespace {

constexpr std::string_view kServerName = "spoold";
constexpr std::string_view kContentTypeMetrics = "text/plain; version=0.0.4; charset=utf-8";
constexpr std::string_view kContentTypeJson = "application/json";
constexpr std::string_view kContentTypeHtml = "text/html; charset=utf-8";
constexpr std::string_view kContentTypeText = "text/plain; charset=utf-8";
// The page needs nothing but itself and /status; the browser enforces that it stays so.
constexpr std::string_view kPagePolicy =
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'";

template <typename Body>
void set_common_headers(bhttp::response<Body>& res, std::string_view content_type,
                        bool keep_alive) {
    res.set(bhttp::field::server, kServerName);
    res.set(bhttp::field::content_type, content_type);
    // Live numbers: a cached copy would show an outage that is over, or hide one.
    res.set(bhttp::field::cache_control, "no-store");
    res.set("X-Content-Type-Options", "nosniff");
    res.keep_alive(keep_alive);
}

struct Reply {
    bhttp::status status = bhttp::status::ok;
    std::string_view content_type = kContentTypeText;
    std::string body;
    bool page = false;
};

bhttp::message_generator make_message(const Request& req, Reply reply) {
    if (req.method() == bhttp::verb::head) {
        bhttp::response<bhttp::empty_body> res{reply.status, req.version()};
        set_common_headers(res, reply.content_type, req.keep_alive());
        if (reply.page) {
            res.set("Content-Security-Policy", kPagePolicy);
        }
        res.content_length(reply.body.size());
        return bhttp::message_generator(std::move(res));
    }
    bhttp::response<bhttp::string_body> res{reply.status, req.version()};
    set_common_headers(res, reply.content_type, req.keep_alive());
    if (reply.page) {
        res.set("Content-Security-Policy", kPagePolicy);
    }
    if (reply.status == bhttp::status::method_not_allowed) {
        res.set(bhttp::field::allow, "GET, HEAD");
    }
    res.body() = std::move(reply.body);
    res.prepare_payload();
    return bhttp::message_generator(std::move(res));
}

Reply route(const Request& req, const StatusSource& status) {
    if (req.method() != bhttp::verb::get && req.method() != bhttp::verb::head) {
        return {bhttp::status::method_not_allowed, kContentTypeText, "only GET and HEAD\n", false};
    }
    std::string_view target(req.target().data(), req.target().size());
    target = target.substr(0, target.find('?'));
    if (target == "/metrics") {
        return {bhttp::status::ok, kContentTypeMetrics, metrics::global().render_prometheus(),
                false};
    }
    if (target == "/status") {
        try {
            return {bhttp::status::ok, kContentTypeJson, status(), false};
        } catch (const std::exception& ex) {
            log::error("event=http_status_failed error={}", log::quote(ex.what()));
            return {bhttp::status::internal_server_error, kContentTypeText, "status unavailable\n",
                    false};
        }
    }
    if (target == "/" || target == "/index.html") {
        return {bhttp::status::ok, kContentTypeHtml, std::string(status_page_html()), true};
    }
    return {bhttp::status::not_found, kContentTypeText, "not found\n", false};
}

} // namespace

void limit_request(RequestParser& parser) {
    parser.header_limit(static_cast<std::uint32_t>(kMaxRequestHeaderBytes));
}

bhttp::message_generator respond(const Request& request, const StatusSource& status) {
    return make_message(request, route(request, status));
}

} // namespace spoold::http
