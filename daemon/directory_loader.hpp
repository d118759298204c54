// The recipient directory as the daemon runs it: directory.file loaded into the directory
// store at start, when the file changes, and on SIGHUP, also when a reload turns it on, off
// or to another file. Parsing and verdicts are policy's, storage is spool's DirectoryStore.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <sys/stat.h>
#include <vector>

#include "common/result.hpp"
#include "policy/config.hpp"
#include "policy/directory_file.hpp"
#include "spool/directory_store.hpp"

namespace spoold::daemon {

// One thread (the daemon's io thread) calls everything, lookups included.
class DirectoryLoader {
public:
    // `store_path`: where the store lives (<spool>/directory), opened when first needed.
    explicit DirectoryLoader(std::string store_path);

    // At start. A file that cannot be loaded leaves the directory unloaded: lookups then
    // fail and directory.when_unavailable decides (tempfail by default), never "accept
    // everyone". Errors only when the store cannot be opened.
    Status start(const policy::DirectoryConfig& config);

    // A reload to `config`, prepared before anything changes. A new source (the directory
    // turned on, another file, format or default domain) must load now, else the reload is
    // refused with this error and the running directory stays. The same source is read
    // again by apply(), where a failure keeps the entries already loaded (as a poll does).
    struct Prepared {
        policy::DirectoryConfig config;
        std::optional<std::vector<policy::DirectoryEntry>> entries; // a new source, parsed
        struct stat stat {};
    };
    Result<Prepared> prepare(const policy::DirectoryConfig& config);
    void apply(Prepared prepared);

    // Loads the file again when it changed since it was loaded (the daemon's poll).
    void poll();

    // For policy::RecipientPolicy: empty when no file is configured in `config`, else a
    // lookup that fails (kUnavailable) while nothing is loaded. Valid as long as this object.
    policy::DirectoryLookup lookup(const policy::DirectoryConfig& config);

private:
    Status open_store();
    bool same_source(const policy::DirectoryConfig& other) const;
    // Reads config_.file unless `force` is false and it is unchanged; keeps the loaded
    // entries when it cannot be read or parsed.
    void load(bool force);
    void store(std::vector<policy::DirectoryEntry> entries, const struct stat& st);

    std::string store_path_;
    policy::DirectoryConfig config_; // the source loaded, or to be loaded
    std::unique_ptr<spool::DirectoryStore> store_;
    bool loaded_ = false;
    struct stat stat_ {};
};

} // namespace spoold::daemon
