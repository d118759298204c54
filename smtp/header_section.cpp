#include "smtp/header_section.hpp"

#include <algorithm>

#include "common/address.hpp"

namespace spoold::smtp {
namespace {

using address::iequals;

constexpr std::string_view kAuthenticationResults = "Authentication-Results";

bool is_blank(char c) { return c == ' ' || c == '\t'; }

// The value of a stored field: what follows the colon, without the field's final CRLF.
std::string_view raw_value(std::string_view raw) {
    std::string_view v = raw.substr(raw.find(':') + 1);
    while (!v.empty() && (v.back() == '\n' || v.back() == '\r')) {
        v.remove_suffix(1);
    }
    return v;
}

} // namespace

bool HeaderSection::valid_name(std::string_view name) {
    return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
        const auto u = static_cast<unsigned char>(c);
        return u > 32 && u < 127 && c != ':';
    });
}

void HeaderSection::add_own(std::string name, std::string raw) {
    fields_.push_back(Field{std::move(name), std::move(raw), true});
}

bool HeaderSection::feed(std::string_view in, std::string& body) {
    std::size_t pos = 0;
    while (!ended_ && pos < in.size()) {
        const std::size_t nl = in.find('\n', pos);
        if (nl == std::string_view::npos) {
            partial_.append(in.substr(pos));
            pos = in.size();
            if (bytes_ + partial_.size() > kMaxHeaderSection) {
                end(body);
            }
            break;
        }
        const std::string_view piece = in.substr(pos, nl + 1 - pos);
        pos = nl + 1;
        if (partial_.empty()) {
            take_line(piece, body);
        } else {
            std::string line = std::move(partial_);
            partial_.clear();
            line.append(piece);
            take_line(line, body);
        }
    }
    if (ended_) {
        body.append(in.substr(pos));
    }
    return ended_;
}

void HeaderSection::take_line(std::string_view line, std::string& body) {
    const bool empty = line == "\r\n" || line == "\n";
    if (empty || bytes_ + line.size() > kMaxHeaderSection) {
        ended_ = true;
        body.append(line);
        return;
    }
    if (is_blank(line.front())) {
        if (fields_.empty() || fields_.back().own) {
            // A continuation with nothing to continue: not a header section after all.
            ended_ = true;
            body.append(line);
            return;
        }
        fields_.back().raw.append(line);
        bytes_ += line.size();
        return;
    }
    const std::size_t colon = line.find(':');
    std::string_view name = line.substr(0, colon);
    while (!name.empty() && is_blank(name.back())) {
        name.remove_suffix(1); // "Subject : x" is obsolete syntax, still a field
    }
    if (colon == std::string_view::npos || !valid_name(name)) {
        // RFC 5322 ends the header section only at the empty line; a line that is no
        // field is taken as the first body line (as Postfix does), not thrown away.
        ended_ = true;
        body.append(line);
        return;
    }
    fields_.push_back(Field{std::string(name), std::string(line), false});
    bytes_ += line.size();
}

void HeaderSection::end(std::string& body) {
    ended_ = true;
    body.append(partial_);
    partial_.clear();
}

void HeaderSection::finish(std::string& body) {
    if (!ended_) {
        end(body);
    }
}

std::size_t HeaderSection::remove_authentication_results(std::string_view authserv_id) {
    const auto before = fields_.size();
    std::erase_if(fields_, [&](const Field& f) {
        return !f.own && iequals(f.name, kAuthenticationResults) &&
               iequals(authserv_id_of(raw_value(f.raw)), authserv_id);
    });
    return before - fields_.size();
}

std::vector<HeaderFieldView> HeaderSection::fields_for_filters() const {
    std::vector<HeaderFieldView> out;
    for (const Field& f : fields_) {
        if (f.own) {
            continue;
        }
        std::string_view v = raw_value(f.raw);
        if (!v.empty() && v.front() == ' ') {
            v.remove_prefix(1);
        }
        std::string value;
        value.reserve(v.size());
        for (std::size_t i = 0; i < v.size(); ++i) {
            if (v[i] == '\r' && i + 1 < v.size() && v[i + 1] == '\n') {
                continue; // CRLF inside a folded value travels as LF
            }
            value += v[i];
        }
        out.push_back(HeaderFieldView{f.name, std::move(value)});
    }
    return out;
}

std::string HeaderSection::make_raw(std::string_view name, std::string_view value) {
    while (!value.empty() && (value.back() == '\n' || value.back() == '\r')) {
        value.remove_suffix(1);
    }
    std::string raw(name);
    raw += ": ";
    for (std::size_t i = 0; i < value.size(); ++i) {
        const char c = value[i];
        if (c == '\r' && i + 1 < value.size() && value[i + 1] == '\n') {
            continue;
        }
        if (c == '\n') {
            raw += "\r\n";
            if (i + 1 >= value.size() || !is_blank(value[i + 1])) {
                raw += '\t'; // a break must continue the field, never start another
            }
        } else {
            raw += c == '\r' ? ' ' : c;
        }
    }
    raw += "\r\n";
    return raw;
}

bool HeaderSection::add(std::string_view name, std::string_view value) {
    if (!valid_name(name)) {
        return false;
    }
    fields_.push_back(Field{std::string(name), make_raw(name, value), false});
    return true;
}

bool HeaderSection::insert(std::uint32_t index, std::string_view name, std::string_view value) {
    if (!valid_name(name)) {
        return false;
    }
    const auto at =
        fields_.begin() + static_cast<std::ptrdiff_t>(std::min<std::size_t>(index, fields_.size()));
    fields_.insert(at, Field{std::string(name), make_raw(name, value), false});
    return true;
}

bool HeaderSection::change(std::uint32_t index, std::string_view name, std::string_view value) {
    if (!valid_name(name)) {
        return false;
    }
    std::uint32_t seen = 0;
    for (auto it = fields_.begin(); it != fields_.end(); ++it) {
        if (it->own || !iequals(it->name, name) || ++seen != index) {
            continue;
        }
        if (value.empty()) {
            fields_.erase(it);
        } else {
            it->raw = make_raw(name, value);
        }
        return true;
    }
    return value.empty() || add(name, value);
}

std::string HeaderSection::render() const {
    std::string out;
    out.reserve(size());
    for (const Field& f : fields_) {
        out += f.raw;
    }
    return out;
}

std::size_t HeaderSection::size() const {
    std::size_t n = 0;
    for (const Field& f : fields_) {
        n += f.raw.size();
    }
    return n;
}

std::string authserv_id_of(std::string_view value) {
    std::size_t i = 0;
    // CFWS: blanks, line breaks and (possibly nested) comments.
    while (i < value.size()) {
        const char c = value[i];
        if (is_blank(c) || c == '\r' || c == '\n') {
            ++i;
        } else if (c == '(') {
            int depth = 0;
            for (; i < value.size(); ++i) {
                if (value[i] == '\\') {
                    ++i;
                } else if (value[i] == '(') {
                    ++depth;
                } else if (value[i] == ')' && --depth == 0) {
                    ++i;
                    break;
                }
            }
        } else {
            break;
        }
    }
    std::string id;
    if (i < value.size() && value[i] == '"') {
        for (++i; i < value.size() && value[i] != '"'; ++i) {
            if (value[i] == '\\' && i + 1 < value.size()) {
                ++i;
            }
            id += value[i];
        }
        return id;
    }
    for (; i < value.size(); ++i) {
        const char c = value[i];
        if (is_blank(c) || c == ';' || c == '(' || c == '\r' || c == '\n') {
            break;
        }
        id += c;
    }
    return id;
}

} // namespace spoold::smtp
