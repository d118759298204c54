#include "milter/macros.hpp"

#include <array>
#include <initializer_list>

namespace spoold::milter {
namespace {

// Per stage, what Postfix sends by default plus what rspamd reads ({daemon_name}, v).
const std::array<std::initializer_list<std::string_view>, kMacroStages> kDefaults{{
    {"j", "{daemon_name}", "{daemon_addr}", "{daemon_port}", "v", "{client_addr}", "{client_port}",
     "{client_name}", "{client_ptr}"},                                  // connect
    {"{tls_version}", "{cipher}", "{cipher_bits}"},                     // HELO
    {"i", "{mail_addr}", "{tls_version}", "{cipher}", "{cipher_bits}"}, // MAIL
    {"{rcpt_addr}"},                                                    // RCPT
    {"i"},                                                              // DATA
    {"i"},                                                              // end of message
    {"i"},                                                              // end of headers
}};

} // namespace

std::string macro_name(std::string_view name) {
    if (name.size() <= 1 || name.front() == '{') {
        return std::string(name);
    }
    std::string braced = "{"; // appended: GCC 12 -O3 misreads "{" + string&& (-Wrestrict)
    braced += name;
    braced += '}';
    return braced;
}

void MacroValues::set(std::string name, std::string value) {
    if (value.empty()) {
        values_.erase(name);
    } else {
        values_[std::move(name)] = std::move(value);
    }
}

const std::string* MacroValues::get(std::string_view name) const {
    const auto it = values_.find(name);
    return it == values_.end() ? nullptr : &it->second;
}

Macros MacroValues::for_stage(MacroStage stage, std::string_view wanted) const {
    Macros out;
    auto add = [&](std::string_view name) {
        const std::string n = macro_name(name);
        if (const std::string* v = get(n)) {
            out.emplace_back(n, *v);
        }
    };
    if (wanted.empty()) {
        for (const std::string_view name : kDefaults.at(static_cast<std::size_t>(stage))) {
            add(name);
        }
        return out;
    }
    while (!wanted.empty()) {
        const std::size_t sp = wanted.find_first_of(" ,");
        if (sp != 0) {
            add(wanted.substr(0, sp));
        }
        if (sp == std::string_view::npos) {
            break;
        }
        wanted.remove_prefix(sp + 1);
    }
    return out;
}

} // namespace spoold::milter
