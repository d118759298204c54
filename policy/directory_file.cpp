#include "policy/directory_file.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fmt/format.h>
#include <sys/stat.h>

#include "common/text.hpp"
#include "policy/text.hpp"

namespace spoold::policy {
namespace {

bool valid_local_part(std::string_view local) {
    constexpr std::size_t kMaxLocalPart = 64; // RFC 5321 4.5.3.1.1
    return !local.empty() && local.size() <= kMaxLocalPart &&
           std::none_of(local.begin(), local.end(), [](unsigned char c) {
               return c <= ' ' || c == 127 || c == '@' || c == ':' || c == '<' || c == '>';
           });
}

// "user@dom", "@dom" (catch_all_ok) or "user" (with a default domain) -> normalized.
std::optional<std::string> normalize(std::string_view text, const DirectoryConfig& config,
                                     bool catch_all_ok, std::string& why) {
    const auto at = text.rfind('@');
    std::string local;
    std::string domain;
    if (at == std::string_view::npos) {
        if (config.default_domain.empty()) {
            why = fmt::format("\"{}\" has no domain and directory.default_domain is not set", text);
            return std::nullopt;
        }
        local = std::string(text);
        domain = config.default_domain;
    } else {
        local = std::string(text.substr(0, at));
        domain = ascii_lower(text.substr(at + 1));
    }
    if (!valid_domain(domain)) {
        why = fmt::format("\"{}\" has a bad domain", text);
        return std::nullopt;
    }
    if (local.empty()) {
        if (!catch_all_ok) {
            why = fmt::format("\"{}\" is a catch-all where an address is needed", text);
            return std::nullopt;
        }
        return "@" + domain;
    }
    if (!valid_local_part(local)) {
        why = fmt::format("\"{}\" has a bad local part", text);
        return std::nullopt;
    }
    return ascii_lower(local) + "@" + domain;
}

// One line of a directory file: an entry, nothing (blank or comment), or kConfig.
Result<std::optional<DirectoryEntry>> parse_line(std::string_view line,
                                                 const DirectoryConfig& config,
                                                 std::string_view name, std::size_t line_no) {
    line = ascii::trim(line, ascii::kBlanksCr);
    if (line.empty() || line.front() == '#') {
        return std::optional<DirectoryEntry>{};
    }
    const auto bad = [&](const std::string& why) {
        return fail(ErrorKind::kConfig, fmt::format("{}:{}: {}", name, line_no, why));
    };
    std::string why;
    DirectoryEntry entry;
    if (config.format == DirectoryFormat::kPasswd) {
        const std::string_view user = line.substr(0, line.find(':'));
        auto key = normalize(user, config, false, why);
        if (!key) {
            return bad(why);
        }
        entry.key = std::move(*key);
        return std::optional<DirectoryEntry>{std::move(entry)};
    }
    const auto colon = line.find(':');
    const std::string_view left = ascii::trim(line.substr(0, colon), ascii::kBlanksCr);
    auto key = normalize(left, config, true, why);
    if (!key) {
        return bad(why);
    }
    entry.key = std::move(*key);
    if (colon != std::string_view::npos) {
        const std::string_view right = ascii::trim(line.substr(colon + 1), ascii::kBlanksCr);
        auto target = normalize(right, config, false, why);
        if (!target) {
            return bad(right.empty() ? std::string("alias without a target") : why);
        }
        if (*target == entry.key) {
            return bad(fmt::format("\"{}\" is an alias of itself", left));
        }
        entry.target = std::move(*target);
    }
    return std::optional<DirectoryEntry>{std::move(entry)};
}

// Editors on other systems save a UTF-8 byte order mark; it is not part of an address.
std::string_view without_bom(std::string_view text) {
    constexpr std::string_view kBom = "\xEF\xBB\xBF";
    return text.starts_with(kBom) ? text.substr(kBom.size()) : text;
}

// Sorted by key and unique: a key given twice keeps its first line.
void sort_unique(std::vector<DirectoryEntry>& entries) {
    std::stable_sort(
        entries.begin(), entries.end(),
        [](const DirectoryEntry& a, const DirectoryEntry& b) { return a.key < b.key; });
    entries.erase(std::unique(entries.begin(), entries.end(),
                              [](const DirectoryEntry& a, const DirectoryEntry& b) {
                                  return a.key == b.key;
                              }),
                  entries.end());
}

} // namespace

Result<std::vector<DirectoryEntry>>
parse_directory(std::string_view text, const DirectoryConfig& config, std::string_view name) {
    text = without_bom(text);
    std::vector<DirectoryEntry> entries;
    std::size_t line_no = 0;
    std::size_t pos = 0;
    while (pos < text.size()) {
        const std::size_t lf = text.find('\n', pos);
        const std::size_t end = lf == std::string_view::npos ? text.size() : lf;
        SPOOLD_TRY(entry, parse_line(text.substr(pos, end - pos), config, name, ++line_no));
        pos = end + 1;
        if (entry) {
            entries.push_back(std::move(*entry));
        }
    }
    sort_unique(entries);
    return entries;
}

Result<std::vector<DirectoryEntry>> load_directory(const DirectoryConfig& config) {
    struct stat st {};
    if (!config.file.empty() && ::stat(config.file.c_str(), &st) == 0 &&
        static_cast<std::uint64_t>(st.st_size) > kMaxDirectoryFileBytes) {
        return fail(ErrorKind::kConfig,
                    fmt::format("{}: larger than {} bytes", config.file, kMaxDirectoryFileBytes));
    }
    SPOOLD_TRY(reader, DirectoryReader::open(config));
    std::vector<DirectoryEntry> entries;
    for (;;) {
        SPOOLD_TRY(entry, reader->next());
        if (!entry) {
            break;
        }
        entries.push_back(std::move(*entry));
    }
    sort_unique(entries);
    return entries;
}

DirectoryReader::DirectoryReader(const DirectoryConfig& config)
    : config_(config), in_(config.file, std::ios::binary) {}

Result<std::unique_ptr<DirectoryReader>> DirectoryReader::open(const DirectoryConfig& config) {
    if (config.file.empty()) {
        return fail(ErrorKind::kInvalid, "no directory file is configured");
    }
    std::unique_ptr<DirectoryReader> r(new DirectoryReader(config));
    if (!r->in_) {
        return fail(ErrorKind::kIo, fmt::format("{}: {}", config.file, std::strerror(errno)));
    }
    return r;
}

Result<std::optional<DirectoryEntry>> DirectoryReader::next() {
    while (std::getline(in_, line_)) {
        ++line_no_;
        const std::string_view line = line_no_ == 1 ? without_bom(line_) : line_;
        SPOOLD_TRY(entry, parse_line(line, config_, config_.file, line_no_));
        if (entry) {
            return entry;
        }
    }
    if (in_.bad()) {
        return fail(ErrorKind::kIo, fmt::format("{}: read failed", config_.file));
    }
    return std::optional<DirectoryEntry>{};
}

std::string directory_signature(const DirectoryConfig& config) {
    struct stat st {};
    if (config.file.empty() || ::stat(config.file.c_str(), &st) != 0) {
        return {};
    }
    return fmt::format(
        "{} dev={} ino={} size={} mtime={}.{:09} format={} default_domain={}", config.file,
        st.st_dev, st.st_ino, st.st_size, st.st_mtim.tv_sec, st.st_mtim.tv_nsec,
        config.format == DirectoryFormat::kPasswd ? "passwd" : "list", config.default_domain);
}

std::string_view to_string(Verdict verdict) {
    switch (verdict) {
    case Verdict::kAccept: return "accept";
    case Verdict::kRelayDenied: return "relay-denied";
    case Verdict::kUnknownUser: return "unknown-user";
    case Verdict::kTempFail: return "tempfail";
    }
    return "unknown";
}

RecipientPolicy::RecipientPolicy(std::vector<std::string> local_domains, DirectoryLookup lookup,
                                 DirectoryConfig config)
    : lookup_(std::move(lookup)), config_(std::move(config)) {
    for (auto& d : local_domains) {
        d = ascii_lower(d);
    }
    local_domains_ = std::move(local_domains);
}

bool RecipientPolicy::is_local_domain(std::string_view domain) const {
    // A trailing dot is the DNS root; "example.com." is example.com.
    if (!domain.empty() && domain.back() == '.') {
        domain.remove_suffix(1);
    }
    const std::string d = ascii_lower(domain);
    return std::find(local_domains_.begin(), local_domains_.end(), d) != local_domains_.end();
}

Verdict RecipientPolicy::unavailable() const {
    return config_.when_unavailable == DirectoryMissing::kAccept ? Verdict::kAccept
                                                                 : Verdict::kTempFail;
}

Verdict RecipientPolicy::check(std::string_view address) const {
    const auto at = address.rfind('@');
    if (at == std::string_view::npos) {
        // RFC 5321 4.1.1.3: "RCPT TO:<Postmaster>" without a domain must be accepted.
        return ascii_lower(address) == "postmaster" ? Verdict::kAccept : Verdict::kUnknownUser;
    }
    std::string_view domain = address.substr(at + 1);
    if (!is_local_domain(domain)) {
        return Verdict::kRelayDenied;
    }
    if (!domain.empty() && domain.back() == '.') {
        domain.remove_suffix(1);
    }
    const std::string local = ascii_lower(address.substr(0, at));
    if (local.empty()) {
        return Verdict::kUnknownUser;
    }
    if (local == "postmaster") {
        return Verdict::kAccept; // RFC 5321 4.5.1: every domain we accept mail for has one
    }
    if (config_.file.empty() || !lookup_) {
        return Verdict::kAccept;
    }
    return resolve(local + "@" + ascii_lower(domain), 0);
}

Verdict RecipientPolicy::resolve(const std::string& address, int depth) const {
    if (depth > kMaxAliasDepth) {
        return Verdict::kTempFail; // an alias loop is our misconfiguration, not the sender's
    }
    const auto at = address.rfind('@');
    const std::string_view domain = std::string_view(address).substr(at + 1);
    if (!is_local_domain(domain)) {
        return Verdict::kAccept;
    }
    const auto follow = [&](const std::string& target) {
        return target.empty() ? Verdict::kAccept : resolve(target, depth + 1);
    };
    auto found = lookup_(address);
    if (!found) {
        return unavailable();
    }
    if (*found) {
        return follow(**found);
    }
    if (!config_.recipient_delimiter.empty()) {
        const std::string_view local = std::string_view(address).substr(0, at);
        const auto tag = local.find(config_.recipient_delimiter[0]);
        if (tag != std::string_view::npos && tag > 0) {
            auto base = lookup_(std::string(local.substr(0, tag)) + "@" + std::string(domain));
            if (!base) {
                return unavailable();
            }
            if (*base) {
                return follow(**base);
            }
        }
    }
    std::string catch_all_key = "@"; // one append: GCC 12 -O3 misreads "@" + string&& (-Wrestrict)
    catch_all_key += domain;
    auto catch_all = lookup_(catch_all_key);
    if (!catch_all) {
        return unavailable();
    }
    if (*catch_all) {
        return follow(**catch_all);
    }
    return Verdict::kUnknownUser;
}

} // namespace spoold::policy
