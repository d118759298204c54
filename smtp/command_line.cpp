#include "smtp/command_line.hpp"

#include <array>

#include "common/address.hpp"
#include "common/text.hpp"
#include "smtp/esmtp_params.hpp"

namespace spoold::smtp {
namespace {

struct VerbEntry {
    std::string_view name;
    Verb verb;
    bool in_help; // HELP lists it (EXPN is refused, PROXY is not a command of ours)
};

constexpr std::array<VerbEntry, 14> kVerbs{{
    {"EHLO", Verb::kEhlo, true},
    {"HELO", Verb::kHelo, true},
    {"MAIL", Verb::kMail, true},
    {"RCPT", Verb::kRcpt, true},
    {"DATA", Verb::kData, true},
    {"BDAT", Verb::kBdat, true},
    {"RSET", Verb::kRset, true},
    {"NOOP", Verb::kNoop, true},
    {"QUIT", Verb::kQuit, true},
    {"VRFY", Verb::kVrfy, true},
    {"EXPN", Verb::kExpn, false},
    {"HELP", Verb::kHelp, true},
    {"STARTTLS", Verb::kStartTls, true},
    {"PROXY", Verb::kProxy, false},
}};

} // namespace

bool has_control(std::string_view line) {
    for (const char c : line) {
        const auto u = static_cast<unsigned char>(c);
        if ((u < 0x20 && c != '\t') || u == 0x7f) {
            return true;
        }
    }
    return false;
}

CommandLine parse_command_line(std::string_view line) {
    const std::size_t sp = line.find(' ');
    CommandLine out;
    out.verb_text = line.substr(0, sp);
    out.arg =
        sp == std::string_view::npos ? std::string_view() : ascii::trim_right(line.substr(sp + 1));
    for (const VerbEntry& e : kVerbs) {
        if (address::iequals(out.verb_text, e.name)) {
            out.verb = e.verb;
            break;
        }
    }
    return out;
}

const std::string& help_text() {
    static const std::string text = [] {
        std::string t = "Commands:";
        for (const VerbEntry& e : kVerbs) {
            if (e.in_help) {
                t += ' ';
                t += e.name;
            }
        }
        return t;
    }();
    return text;
}

std::optional<std::string_view> after_prefix(std::string_view arg, std::string_view prefix) {
    if (arg.size() < prefix.size() || !address::iequals(arg.substr(0, prefix.size()), prefix)) {
        return std::nullopt;
    }
    std::string_view text = arg.substr(prefix.size());
    while (!text.empty() && text.front() == ' ') {
        text.remove_prefix(1);
    }
    return text;
}

std::optional<BdatArgs> parse_bdat_args(std::string_view arg) {
    const std::size_t sp = arg.find(' ');
    const auto size = parse_decimal(arg.substr(0, sp));
    const std::string_view rest =
        sp == std::string_view::npos ? std::string_view() : arg.substr(sp + 1);
    if (!size || (!rest.empty() && !address::iequals(rest, "LAST"))) {
        return std::nullopt;
    }
    return BdatArgs{*size, !rest.empty()};
}

std::vector<std::string> split_params(std::string_view text) {
    std::vector<std::string> out;
    while (!text.empty()) {
        const std::size_t sp = text.find(' ');
        if (sp != 0) {
            out.emplace_back(text.substr(0, sp));
        }
        if (sp == std::string_view::npos) {
            break;
        }
        text.remove_prefix(sp + 1);
    }
    return out;
}

} // namespace spoold::smtp
