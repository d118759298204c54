#include "daemon/directory_loader.hpp"

#include <chrono>
#include <fmt/format.h>

#include "common/log.hpp"

namespace spoold::daemon {

DirectoryLoader::DirectoryLoader(std::string store_path, Post post)
    : store_path_(std::move(store_path)), post_(std::move(post)) {}

DirectoryLoader::~DirectoryLoader() {
    stopping_ = true;
    std::thread worker;
    {
        const std::lock_guard lock(mutex_);
        pending_.reset();
        worker = std::move(worker_);
    }
    if (worker.joinable()) {
        worker.join();
    }
}

void DirectoryLoader::load(const policy::DirectoryConfig& config, Done done) {
    const std::lock_guard lock(mutex_);
    if (busy_) {
        if (!pending_) {
            pending_ = Request{config, {}};
        }
        pending_->config = config;
        if (done) {
            pending_->done.push_back(std::move(done));
        }
        return;
    }
    if (worker_.joinable()) {
        worker_.join(); // finished: it cleared busy_ as its last step
    }
    busy_ = true;
    Request request{config, {}};
    if (done) {
        request.done.push_back(std::move(done));
    }
    worker_ =
        std::thread([this, request = std::move(request)]() mutable { run(std::move(request)); });
}

void DirectoryLoader::run(Request request) {
    for (;;) {
        Status status = load_now(request.config);
        finish(std::move(request.done), std::move(status));
        const std::lock_guard lock(mutex_);
        if (!pending_ || stopping_) {
            busy_ = false;
            return;
        }
        request = std::move(*pending_);
        pending_.reset();
    }
}

void DirectoryLoader::finish(std::vector<Done> done, Status status) {
    if (done.empty() || stopping_) {
        return;
    }
    post_([done = std::move(done), status = std::move(status)] {
        for (const auto& d : done) {
            d(status);
        }
    });
}

bool DirectoryLoader::busy() {
    const std::lock_guard lock(mutex_);
    return busy_;
}

bool DirectoryLoader::same_source(const policy::DirectoryConfig& a,
                                  const policy::DirectoryConfig& b) {
    return a.file == b.file && a.format == b.format && a.default_domain == b.default_domain;
}

Status DirectoryLoader::load_now(const policy::DirectoryConfig& config) {
    if (!store_) {
        spool::DirectoryStoreOptions o;
        o.path = store_path_;
        o.max_size_bytes = config.map_size;
        auto opened = spool::DirectoryStore::open(o);
        if (!opened) {
            log::error("event=directory_store_failed error={}",
                       log::quote(opened.error().describe()));
            return tl::unexpected(opened.error());
        }
        store_ = std::move(*opened);
    }
    const std::string signature = policy::directory_signature(config);
    if (signature.empty()) {
        log::error("event=directory_unreadable file={}", log::quote(config.file));
        return fail(ErrorKind::kIo, fmt::format("directory.file {}: cannot be read", config.file));
    }
    auto built_from = store_->source();
    if (built_from && *built_from == signature) {
        if (!loaded_.exchange(true)) {
            log::info("event=directory_loaded file={} entries={} unchanged=1",
                      log::quote(config.file), store_->size().value_or(0));
        }
        return {};
    }
    auto reader = policy::DirectoryReader::open(config);
    if (!reader) {
        log::error("event=directory_load_failed file={} error={}", log::quote(config.file),
                   log::quote(reader.error().message));
        return tl::unexpected(reader.error());
    }
    const auto started = std::chrono::steady_clock::now();
    std::uint64_t count = 0;
    const Status built = store_->rebuild(
        [&](std::string& key, std::string& target) -> Result<bool> {
            if (stopping_) {
                return fail(ErrorKind::kShutdown, "spoold is stopping");
            }
            SPOOLD_TRY(entry, (*reader)->next());
            if (!entry) {
                return false;
            }
            key = std::move(entry->key);
            target = std::move(entry->target);
            ++count;
            return true;
        },
        signature);
    if (!built) {
        // The previous table stays: a broken edit must not empty the directory.
        log::error("event=directory_load_failed file={} error={}", log::quote(config.file),
                   log::quote(built.error().describe()));
        return tl::unexpected(built.error());
    }
    loaded_ = true;
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - started)
                        .count();
    log::info("event=directory_loaded file={} entries={} lines={} ms={}", log::quote(config.file),
              store_->size().value_or(0), count, ms);
    return {};
}

policy::DirectoryLookup DirectoryLoader::lookup(const policy::DirectoryConfig& config) {
    if (config.file.empty()) {
        return {};
    }
    return [this](std::string_view key) -> Result<std::optional<std::string>> {
        if (!loaded_.load()) {
            return fail(ErrorKind::kUnavailable, "recipient directory not loaded");
        }
        return store_->lookup(key);
    };
}

} // namespace spoold::daemon
