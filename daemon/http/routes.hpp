// What the operations endpoint answers to one request, without I/O: the request parser's
// limits, the routes (/metrics, /status, the page) and the response headers. Reading and
// writing the socket, timeouts and connection limits are server.cpp's.
#pragma once

#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/message_generator.hpp>
#include <boost/beast/http/parser.hpp>

#include "daemon/http/server.hpp"

namespace spoold::http {

using Request = boost::beast::http::request<boost::beast::http::empty_body>;
using RequestParser = boost::beast::http::request_parser<boost::beast::http::empty_body>;

// Bytes read and not yet parsed: room for one header block plus a pipelined request behind
// it; a client that sends more before a request is complete loses its connection.
inline constexpr std::size_t kReadBufferLimit = 2 * kMaxRequestHeaderBytes;

// A request is a header block of at most kMaxRequestHeaderBytes and no body.
void limit_request(RequestParser& parser);

// The response to one parsed request: GET or HEAD of /metrics, /status or the page, 404
// for another target, 405 for another method. Calls `status` for /status only; an
// exception it throws becomes a 500 and a log line.
boost::beast::http::message_generator respond(const Request& request, const StatusSource& status);

} // namespace spoold::http
