// The recipient directory as the daemon keeps it: the store beside the spool, loaded from
// directory.file on a thread of its own and swapped in whole when complete, so millions of
// mailboxes load and reload while SMTP goes on (answered meanwhile from the previous table).
// Reading the file is policy's job and storing it spool's; this file only runs the loads.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/result.hpp"
#include "policy/config.hpp"
#include "policy/directory_file.hpp"
#include "spool/directory_store.hpp"

namespace spoold::daemon {

class DirectoryLoader {
public:
    // Runs a completion on the daemon's I/O thread.
    using Post = std::function<void(std::function<void()>)>;
    // `done(status)`: the table in use is now the file's, or the load failed (the error
    // names the file) and the previous table stays.
    using Done = std::function<void(Status)>;

    DirectoryLoader(std::string store_path, Post post);
    // Abandons a load under way (within a line of the file) and waits for its thread.
    ~DirectoryLoader();
    DirectoryLoader(const DirectoryLoader&) = delete;
    DirectoryLoader& operator=(const DirectoryLoader&) = delete;

    // Loads config.file unless the live table was built from this very file with these
    // settings (policy::directory_signature), which makes a restart cost nothing. One load
    // at a time: asked during one, the latest request runs after it, and every `done`
    // waiting runs when it ends. The store's map size is config.map_size at the first load.
    void load(const policy::DirectoryConfig& config, Done done);
    // A load is running or waiting (a poll then waits for the next interval).
    bool busy();
    // For policy::RecipientPolicy: empty when `config` names no file; else kUnavailable until
    // a table built from the configured file is live (the store may hold one from before a
    // restart whose file has changed since).
    policy::DirectoryLookup lookup(const policy::DirectoryConfig& config);
    // Whether `a` and `b` read the same table (file, format, default domain); the rest only
    // changes how lookups are made, which a new RecipientPolicy does.
    static bool same_source(const policy::DirectoryConfig& a, const policy::DirectoryConfig& b);

private:
    struct Request {
        policy::DirectoryConfig config;
        std::vector<Done> done;
    };
    void run(Request request);
    // One load; ok when the file's table is live afterwards.
    Status load_now(const policy::DirectoryConfig& config);
    void finish(std::vector<Done> done, Status status);

    std::string store_path_;
    Post post_;
    std::mutex mutex_;
    bool busy_ = false;
    std::optional<Request> pending_;
    std::thread worker_;
    std::atomic<bool> stopping_{false};
    // Set once by the worker before loaded_ is first set; read by lookups after it.
    std::unique_ptr<spool::DirectoryStore> store_;
    std::atomic<bool> loaded_{false};
};

} // namespace spoold::daemon
