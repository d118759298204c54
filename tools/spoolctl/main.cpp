// spoolctl's entry point: parses the command line, finds and opens the spool (read-only
// for verbs that only read), learns the class names, and hands over to the verb.
#include <cstdio>
#include <filesystem>
#include <fmt/format.h>
#include <string>
#include <vector>

#include "common/log.hpp"
#include "policy/config.hpp"
#include "spool/directory_store.hpp"
#include "spool/spool.hpp"
#include "tools/spoolctl/cli.hpp"
#include "tools/spoolctl/verbs.hpp"

using namespace spoold;
using namespace spoold::spoolctl;

namespace {

int die(int code, const std::string& message) {
    std::fprintf(stderr, "spoolctl: %s\n", message.c_str());
    return code;
}

} // namespace

int main(int argc, char** argv) {
    const std::vector<std::string> args(argv + 1, argv + argc);
    auto parsed = parse_command_line(args);
    if (!parsed) {
        return die(kExitUsage, parsed.error().message);
    }
    if (parsed->help) {
        std::fputs(usage().c_str(), stdout);
        return kExitOk;
    }
    // The spool's own log lines (open, recovery) are for the daemon's journal, not for an
    // operator at a prompt: only warnings and errors show.
    log::set_level(log::Level::kWarn);

    Context ctx;
    ctx.cl = std::move(*parsed);
    std::string config_path = ctx.cl.config_path;
    if (config_path.empty() && ctx.cl.spool_path.empty()) {
        std::error_code ec;
        if (!std::filesystem::exists(kDefaultConfig, ec)) {
            return die(
                kExitUsage,
                fmt::format("no spool given: use --spool DIR or --config FILE ({} does not exist)",
                            kDefaultConfig));
        }
        config_path = kDefaultConfig;
    }
    if (!config_path.empty()) {
        auto config = policy::load_config(config_path);
        if (!config) {
            return die(kExitUsage, config.error().message);
        }
        ctx.config = *config;
    }
    std::string path = ctx.cl.spool_path.empty() ? ctx.config->spool.path : ctx.cl.spool_path;
    std::error_code ec;
    if (!std::filesystem::is_directory(path, ec)) {
        return die(kExitUsage, fmt::format("{}: not a spool (no such directory)", path));
    }
    if (!std::filesystem::exists(std::filesystem::path(path) / "data.mdb", ec)) {
        return die(kExitUsage, fmt::format("{}: not a spool (no data.mdb in it)", path));
    }

    spool::SpoolOptions options;
    options.path = path;
    options.create = false;
    options.read_only = is_read_only(ctx.cl);
    if (ctx.config) {
        options.max_size_bytes = ctx.config->spool.max_size;
    }
    auto opened = spool::Spool::open(options);
    if (!opened) {
        return die(kExitUsage,
                   fmt::format("{}: cannot open the spool: {}", path, opened.error().describe()));
    }
    std::unique_ptr<spool::Spool> spool = std::move(*opened);
    ctx.spool = spool.get();

    // A --recipient address stands for the mailbox: its +tag forms and, through the directory
    // spoold loaded, its aliases.
    std::unique_ptr<spool::DirectoryStore> directory;
    if (ctx.config && !ctx.config->directory.recipient_delimiter.empty()) {
        ctx.recipient_delimiter = ctx.config->directory.recipient_delimiter[0];
    }
    if (ctx.config && !ctx.config->directory.file.empty() && !ctx.cl.filter.recipients.empty()) {
        spool::DirectoryStoreOptions d;
        d.path = path + "/directory";
        d.read_only = true;
        d.max_size_bytes = ctx.config->directory.map_size;
        if (auto store = spool::DirectoryStore::open(d); store) {
            directory = std::move(*store);
            spool::DirectoryStore* dir = directory.get();
            ctx.aliases_of = [dir](std::string_view address) {
                constexpr std::size_t kMaxAliases = 1000;
                return dir->aliases_of(address, kMaxAliases).value_or(std::vector<std::string>{});
            };
        } else {
            std::fprintf(stderr,
                         "spoolctl: %s: no recipient directory (%s): aliases not followed\n",
                         d.path.c_str(), store.error().describe().c_str());
        }
    }
    if (ctx.config) {
        std::vector<std::string> names;
        for (const auto& c : ctx.config->classes) {
            names.push_back(c.name);
        }
        ctx.classes = ClassNames(std::move(names));
    } else if (auto meta = spool->get_meta("classes"); meta && *meta) {
        ctx.classes = ClassNames::from_csv(**meta);
    }
    return run_verb(ctx);
}
