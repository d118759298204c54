// The recipient directory: parsing the operator's file (list or Dovecot passwd-file) into
// normalized entries for the spool's directory table, and RecipientPolicy, which decides
// whether a RCPT TO address is ours and valid. Storage is not here (spool/directory_store).
#pragma once

#include <cstddef>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "policy/config.hpp"

namespace spoold::policy {

// One entry as stored. Keys and targets are lower-cased as a whole: local parts too, as
// Dovecot does by default (auth_username_format %Lu), so lookups are case-insensitive.
struct DirectoryEntry {
    std::string key;    // "local@domain" (a mailbox or alias), or "@domain" (catch-all)
    std::string target; // "" = the key itself is valid; else the address it stands for

    friend bool operator==(const DirectoryEntry&, const DirectoryEntry&) = default;
};

// Parses the text of a directory file. `name` is used in errors ("name:LINE: message",
// kConfig, the first bad line). Result sorted by key and unique (a key given twice keeps
// its first line), ready for a bulk load. Entries in domains that are not local are kept:
// a stale line must not block a reload; they are never consulted.
//   list:   "user@dom", "user" (+ default_domain), "alias@dom: target", "@dom",
//           "@dom: target"; blank lines and lines starting with '#' are skipped.
//   passwd: "user[@dom]:password:uid:gid:..." (only the user field is read); '#' comments.
Result<std::vector<DirectoryEntry>>
parse_directory(std::string_view text, const DirectoryConfig& config, std::string_view name);

// Reads config.file and parses it. kIo when the file cannot be read (the caller applies
// when_unavailable), kConfig for a bad line. Files above kMaxDirectoryFileBytes: kConfig.
inline constexpr std::size_t kMaxDirectoryFileBytes = 1ULL << 30U;
Result<std::vector<DirectoryEntry>> load_directory(const DirectoryConfig& config);

// Reads config.file one line at a time, for a directory too big to hold in memory (an ISP's
// millions of mailboxes): entries in file order, duplicates as they come (the first one is
// the one that counts, as with parse_directory). The same lines, the same errors.
class DirectoryReader {
public:
    // kIo when the file cannot be opened; kInvalid when none is configured.
    static Result<std::unique_ptr<DirectoryReader>> open(const DirectoryConfig& config);
    // The next entry, nullopt at the end; kConfig for a bad line ("FILE:LINE: message"),
    // kIo for a read error.
    Result<std::optional<DirectoryEntry>> next();

private:
    explicit DirectoryReader(const DirectoryConfig& config);
    DirectoryConfig config_;
    std::ifstream in_;
    std::string line_;
    std::size_t line_no_ = 0;
};

// What a table built from config.file depends on: the file's identity, size and change time,
// and the settings that change how it is read. Equal signatures: the same table. Empty when
// the file cannot be read.
std::string directory_signature(const DirectoryConfig& config);

enum class Verdict {
    kAccept,      // 250
    kRelayDenied, // not a local domain: 550 5.7.1 (no open relay)
    kUnknownUser, // local domain, no such user: 550 5.1.1
    kTempFail,    // the directory could not answer: 451 4.3.0 (never a 5xx for our trouble)
};
std::string_view to_string(Verdict verdict);

// Looks up one DirectoryEntry::key: the entry's target ("" for a plain mailbox), nullopt
// when there is none, an Error when the store could not answer.
using DirectoryLookup = std::function<Result<std::optional<std::string>>(std::string_view key)>;

// Aliases pointing at aliases are followed this deep; deeper (or a loop) is a tempfail.
inline constexpr int kMaxAliasDepth = 8;

// Immutable after construction; check() is safe from many threads if lookup is.
class RecipientPolicy {
public:
    // With config.file empty or no lookup, every address in a local domain is accepted.
    RecipientPolicy(std::vector<std::string> local_domains, DirectoryLookup lookup,
                    DirectoryConfig config);

    // Decision order: domain not local -> kRelayDenied; postmaster (bare or at a local
    // domain, RFC 5321 4.5.1) -> kAccept; no directory -> kAccept; exact key, then the key
    // without the "+tag", then the "@domain" catch-all; an alias is valid when its target
    // is (a target in a non-local domain is accepted: forwarding is the mailstore's
    // business). A lookup error gives when_unavailable (kAccept or kTempFail).
    Verdict check(std::string_view address) const;

    bool is_local_domain(std::string_view domain) const; // case-insensitive, exact

private:
    Verdict resolve(const std::string& address, int depth) const;
    Verdict unavailable() const;

    std::vector<std::string> local_domains_; // lower case
    DirectoryLookup lookup_;
    DirectoryConfig config_;
};

} // namespace spoold::policy
