// The status page served at "/": one HTML document with its CSS and JavaScript inline (no
// outside resources), generated at build time from page.html. It only polls /status.
#pragma once

#include <string_view>

namespace spoold::http {

std::string_view status_page_html();

} // namespace spoold::http
