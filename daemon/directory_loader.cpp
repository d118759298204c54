#include "daemon/directory_loader.hpp"

#include <cerrno>
#include <cstring>
#include <fmt/format.h>
#include <utility>

#include "common/log.hpp"

namespace spoold::daemon {
namespace {

bool same_file(const struct stat& a, const struct stat& b) {
    return a.st_ino == b.st_ino && a.st_dev == b.st_dev && a.st_size == b.st_size &&
           a.st_mtim.tv_sec == b.st_mtim.tv_sec && a.st_mtim.tv_nsec == b.st_mtim.tv_nsec;
}

} // namespace

DirectoryLoader::DirectoryLoader(std::string store_path) : store_path_(std::move(store_path)) {}

Status DirectoryLoader::open_store() {
    if (store_) {
        return {};
    }
    spool::DirectoryStoreOptions options;
    options.path = store_path_;
    SPOOLD_TRY(opened, spool::DirectoryStore::open(options));
    store_ = std::move(opened);
    return {};
}

bool DirectoryLoader::same_source(const policy::DirectoryConfig& other) const {
    // What parse_directory reads: the rest (delimiter, when_unavailable, polling) only
    // changes how lookups are made, which the new RecipientPolicy does.
    return other.file == config_.file && other.format == config_.format &&
           other.default_domain == config_.default_domain;
}

Status DirectoryLoader::start(const policy::DirectoryConfig& config) {
    config_ = config;
    if (config_.file.empty()) {
        return {};
    }
    SPOOLD_CHECK(open_store());
    load(true);
    return {};
}

Result<DirectoryLoader::Prepared> DirectoryLoader::prepare(const policy::DirectoryConfig& config) {
    Prepared prepared;
    prepared.config = config;
    if (config.file.empty() || same_source(config)) {
        return prepared;
    }
    SPOOLD_CHECK(open_store());
    if (::stat(config.file.c_str(), &prepared.stat) != 0) {
        return fail(ErrorKind::kIo,
                    fmt::format("directory.file {}: {}", config.file, std::strerror(errno)));
    }
    SPOOLD_TRY(entries, policy::load_directory(config));
    prepared.entries = std::move(entries);
    return prepared;
}

void DirectoryLoader::apply(Prepared prepared) {
    config_ = std::move(prepared.config);
    if (config_.file.empty()) {
        if (loaded_) {
            log::warn("event=directory_off note={}",
                      log::quote("no recipient directory: every address in a local domain is "
                                 "accepted"));
        }
        loaded_ = false;
        return;
    }
    if (!prepared.entries) {
        load(true);
        return;
    }
    // A new source: until it is stored, the entries of the old one must not answer for it.
    loaded_ = false;
    store(std::move(*prepared.entries), prepared.stat);
}

void DirectoryLoader::poll() {
    if (!config_.file.empty()) {
        load(false);
    }
}

void DirectoryLoader::load(bool force) {
    struct stat st {};
    if (::stat(config_.file.c_str(), &st) != 0) {
        log::error("event=directory_unreadable file={} error={}", log::quote(config_.file),
                   log::quote(std::strerror(errno)));
        return;
    }
    if (!force && loaded_ && same_file(st, stat_)) {
        return;
    }
    auto entries = policy::load_directory(config_);
    if (!entries) {
        // Keep what the store already holds: a broken edit must not empty the directory.
        log::error("event=directory_load_failed file={} error={}", log::quote(config_.file),
                   log::quote(entries.error().message));
        return;
    }
    store(std::move(*entries), st);
}

void DirectoryLoader::store(std::vector<policy::DirectoryEntry> entries, const struct stat& st) {
    std::vector<std::pair<std::string, std::string>> pairs;
    pairs.reserve(entries.size());
    for (auto& e : entries) {
        pairs.emplace_back(std::move(e.key), std::move(e.target));
    }
    const std::size_t count = pairs.size();
    if (const Status stored = store_->replace(std::move(pairs)); !stored) {
        log::error("event=directory_store_failed file={} error={}", log::quote(config_.file),
                   log::quote(stored.error().describe()));
        return;
    }
    stat_ = st;
    loaded_ = true;
    log::info("event=directory_loaded file={} entries={}", log::quote(config_.file), count);
}

policy::DirectoryLookup DirectoryLoader::lookup(const policy::DirectoryConfig& config) {
    if (config.file.empty()) {
        return {};
    }
    return [this](std::string_view key) -> Result<std::optional<std::string>> {
        if (!store_ || !loaded_) {
            return fail(ErrorKind::kUnavailable, "recipient directory not loaded");
        }
        return store_->lookup(key);
    };
}

} // namespace spoold::daemon
