#include "tools/spoolctl/export_import.hpp"

#include <algorithm>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include "policy/retention.hpp"
#include "tools/spoolctl/mbox.hpp"
#include "tools/spoolctl/units.hpp"
#include "tools/spoolctl/verb_support.hpp"
#include "tools/spoolctl/writes.hpp"

namespace spoold::spoolctl {
namespace {

Status write_file_atomically(const std::string& dir, const std::string& name, std::string_view a,
                             std::string_view b) {
    const std::string tmp = dir + "/." + name + ".tmp";
    const std::string final_path = dir + "/" + name;
    std::FILE* f = std::fopen(tmp.c_str(), "wb");
    if (f == nullptr) {
        return fail(ErrorKind::kIo, fmt::format("{}: {}", tmp, std::strerror(errno)));
    }
    const bool ok = std::fwrite(a.data(), 1, a.size(), f) == a.size() &&
                    std::fwrite(b.data(), 1, b.size(), f) == b.size();
    const bool closed = std::fclose(f) == 0;
    // Written under a temporary name and renamed: a reader never sees half a message.
    if (!ok || !closed || std::rename(tmp.c_str(), final_path.c_str()) != 0) {
        const int e = errno;
        std::remove(tmp.c_str());
        return fail(e == ENOSPC ? ErrorKind::kDiskFull : ErrorKind::kIo,
                    fmt::format("{}: {}", final_path, std::strerror(e)));
    }
    return {};
}

} // namespace

int verb_export(Context& ctx) {
    if (ctx.cl.dir.empty() == ctx.cl.mbox.empty()) {
        return usage_error(ctx, "give exactly one of --dir DIR or --mbox FILE");
    }
    auto sel = select_targets(ctx, ctx.cl.operands, false);
    if (!sel) {
        return usage_error(ctx, sel.error().message);
    }
    std::FILE* mbox = nullptr;
    if (!ctx.cl.dir.empty()) {
        std::error_code ec;
        std::filesystem::create_directories(ctx.cl.dir, ec);
        if (ec) {
            say(ctx.err, "spoolctl: export: {}: {}\n", ctx.cl.dir, ec.message());
            return kExitFailed;
        }
    } else {
        // An existing mbox is never overwritten; --append adds to it.
        const int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (ctx.cl.append ? O_APPEND : O_EXCL);
        constexpr mode_t kMode = 0600; // mail is private
        const int fd = ::open(ctx.cl.mbox.c_str(), flags, kMode);
        if (fd < 0) {
            say(ctx.err, "spoolctl: export: {}: {}{}\n", ctx.cl.mbox, std::strerror(errno),
                errno == EEXIST ? " (use --append to add to it)" : "");
            return kExitFailed;
        }
        mbox = ::fdopen(fd, "a");
    }
    const std::size_t limit = ctx.cl.limit.value_or(std::numeric_limits<std::size_t>::max());
    std::uint64_t exported = 0;
    std::uint64_t bytes = 0;
    int exit_code = kExitOk;
    Status write_error;
    std::string buffer;
    std::string message;
    std::string block;
    const Status st = for_each_target(
        ctx, *sel,
        [&](const spool::Envelope& env, spool::MsgState) {
            if (auto r = read_message_into(ctx, env.id, message); !r) {
                say(ctx.err, "spoolctl: export: {}: {}\n", env.id.text(), r.error().describe());
                exit_code = kExitFailed;
                return true;
            }
            block.clear();
            if (ctx.cl.with_envelope) {
                FileEnvelope fe;
                fe.mail_from = env.mail_from;
                for (const auto& r : env.recipients) {
                    if (pending(r)) {
                        fe.recipients.push_back(r.address);
                    }
                }
                fe.klass = ctx.classes.name(env.klass);
                block = envelope_block(fe);
            }
            if (mbox != nullptr) {
                buffer.clear();
                block += message;
                append_mboxrd(buffer, mbox_from_line(env.mail_from, env.arrival_ms), block);
                if (std::fwrite(buffer.data(), 1, buffer.size(), mbox) != buffer.size()) {
                    write_error = fail(ErrorKind::kIo,
                                       fmt::format("{}: {}", ctx.cl.mbox, std::strerror(errno)));
                    return false;
                }
            } else if (auto w = write_file_atomically(ctx.cl.dir, env.id.text() + ".eml", block,
                                                      message);
                       !w) {
                write_error = w;
                return false;
            }
            ++exported;
            bytes += message.size();
            return exported < limit;
        },
        exit_code);
    if (mbox != nullptr) {
        // The export is only complete once it is on disk: flush and fsync before saying so.
        if ((std::fflush(mbox) != 0 || ::fsync(fileno(mbox)) != 0) && write_error) {
            write_error =
                fail(ErrorKind::kIo, fmt::format("{}: {}", ctx.cl.mbox, std::strerror(errno)));
        }
        std::fclose(mbox);
    }
    if (!st) {
        return fail_with(ctx, st.error());
    }
    if (!write_error) {
        return fail_with(ctx, write_error.error());
    }
    say(ctx.out, "exported {} message{} ({}) to {}\n", exported, exported == 1 ? "" : "s",
        format_size(bytes), ctx.cl.dir.empty() ? ctx.cl.mbox : ctx.cl.dir);
    return exit_code;
}

namespace {

class Importer {
public:
    explicit Importer(Context& ctx) : ctx_(ctx), pipeline_(ctx.err, "import") {}

    // Resolves what applies to every message; false (after saying why) when it cannot.
    bool prepare() {
        for (const auto& a : ctx_.cl.to) {
            if (!plausible_address(a)) {
                say(ctx_.err, "spoolctl: import: --to {}: not an address\n", a);
                return false;
            }
        }
        if (ctx_.cl.from && !ctx_.cl.from->empty() && !plausible_address(*ctx_.cl.from)) {
            say(ctx_.err,
                "spoolctl: import: --from {}: not an address (use --from '<>' for the null "
                "sender)\n",
                *ctx_.cl.from);
            return false;
        }
        if (ctx_.cl.import_class) {
            class_ = ctx_.classes.find(*ctx_.cl.import_class);
            if (!class_) {
                say(ctx_.err, "spoolctl: import: unknown class '{}'\n", *ctx_.cl.import_class);
                return false;
            }
        } else if (ctx_.config) {
            default_class_ = ctx_.config->class_id(ctx_.config->default_class);
        }
        return true;
    }

    // One message read from `source`; refused (and counted) when its envelope is incomplete.
    void add(std::string_view source, std::string message, std::optional<std::string> mbox_sender) {
        FileEnvelope fe = take_envelope_block(message);
        spool::NewMessage m;
        auto& env = m.envelope;
        if (ctx_.cl.from) {
            env.mail_from = *ctx_.cl.from;
        } else if (fe.mail_from) {
            env.mail_from = *fe.mail_from;
        } else if (mbox_sender) {
            env.mail_from = *mbox_sender == "MAILER-DAEMON" ? std::string() : *mbox_sender;
        } else {
            refuse(source, "no envelope sender (give --from ADDRESS, or --from '<>')");
            return;
        }
        const std::vector<std::string>& rcpts = ctx_.cl.to.empty() ? fe.recipients : ctx_.cl.to;
        if (rcpts.empty()) {
            refuse(source, "no recipients (give --to ADDRESS, or export with --with-envelope)");
            return;
        }
        for (const auto& a : rcpts) {
            if (!plausible_address(a)) {
                refuse(source, fmt::format("recipient '{}' is not an address", a));
                return;
            }
            spool::Recipient r;
            r.address = a;
            env.recipients.push_back(std::move(r));
        }
        std::optional<spool::ClassId> klass = class_;
        if (!klass && !fe.klass.empty()) {
            klass = ctx_.classes.find(fe.klass);
            if (!klass) {
                refuse(source, fmt::format("unknown class '{}' (give --class)", fe.klass));
                return;
            }
        }
        if (!klass) {
            klass = default_class_;
        }
        if (!klass) {
            refuse(source, "no class (give --class NAME, or --config for the default class)");
            return;
        }
        m.body = to_crlf(message);
        if (const auto why = content_problem(m.body); !why.empty()) {
            refuse(source, why);
            return;
        }
        env.klass = *klass;
        env.id = ctx_.spool->new_id();
        env.arrival_ms = ctx_.clock->now_ms();
        env.helo = "spoolctl-import";
        if (ctx_.config) {
            env.expires_ms = policy::expiry_ms(*ctx_.config, env.klass, env.arrival_ms);
        }
        env.size = m.body.size();
        bytes_ += env.size;
        const QueueId id = env.id;
        spool::Spool* s = ctx_.spool;
        auto shared = std::make_shared<spool::NewMessage>(std::move(m));
        pipeline_.submit(
            id, [s, shared](spool::Done d) { s->enqueue(std::move(*shared), std::move(d)); });
    }

    void refuse(std::string_view source, std::string_view why) {
        // The first few say why; a whole mbox without envelopes must not flood the terminal.
        constexpr std::uint64_t kShownRefusals = 10;
        ++refused_;
        if (refused_ <= kShownRefusals) {
            say(ctx_.err, "spoolctl: import: {}: not imported: {}\n", source, why);
        } else if (refused_ == kShownRefusals + 1) {
            say(ctx_.err, "spoolctl: import: further refusals not shown\n");
        }
    }

    int finish() {
        pipeline_.finish();
        if (pipeline_.ok() > 0) {
            if (const Status kicked = kick_scheduler(*ctx_.spool); !kicked) {
                say(ctx_.err,
                    "spoolctl: import: a running spoold may not see the imported "
                    "messages until it restarts: {}\n",
                    kicked.error().describe());
            }
        }
        say(ctx_.out, "imported {} message{} ({})", pipeline_.ok(), pipeline_.ok() == 1 ? "" : "s",
            format_size(bytes_));
        if (refused_ + pipeline_.failed() > 0) {
            say(ctx_.out, ", {} not imported", refused_ + pipeline_.failed());
        }
        print(ctx_.out, "\n");
        if (!ctx_.config && pipeline_.ok() > 0) {
            say(ctx_.err,
                "spoolctl: import: no --config: imported messages expire by the retention of "
                "their class in the configuration of the spoold that drains them\n");
        }
        return refused_ + pipeline_.failed() > 0 ? kExitFailed : kExitOk;
    }

private:
    Context& ctx_;
    Pipeline pipeline_;
    std::optional<spool::ClassId> class_;
    std::optional<spool::ClassId> default_class_;
    std::uint64_t refused_ = 0;
    std::uint64_t bytes_ = 0;
};

Result<std::string> read_whole_file(const std::string& path) {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) {
        return fail(ErrorKind::kIo, fmt::format("{}: {}", path, std::strerror(errno)));
    }
    std::string out;
    char buf[1U << 16U]; // NOLINT: read buffer
    std::size_t n = 0;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) {
        out.append(buf, n);
    }
    const bool bad = std::ferror(f) != 0;
    std::fclose(f);
    if (bad) {
        return fail(ErrorKind::kIo, fmt::format("{}: read error", path));
    }
    return out;
}

} // namespace

int verb_import(Context& ctx) {
    if (ctx.cl.mbox.empty() == ctx.cl.operands.empty()) {
        return usage_error(ctx, "give .eml files or directories, or --mbox FILE (not both)");
    }
    Importer importer(ctx);
    if (!importer.prepare()) {
        return kExitUsage;
    }
    if (!ctx.cl.mbox.empty()) {
        std::FILE* f = std::fopen(ctx.cl.mbox.c_str(), "rb");
        if (f == nullptr) {
            say(ctx.err, "spoolctl: import: {}: {}\n", ctx.cl.mbox, std::strerror(errno));
            return kExitFailed;
        }
        MboxReader reader(f);
        std::uint64_t n = 0;
        while (auto m = reader.next()) {
            ++n;
            importer.add(fmt::format("{} message {}", ctx.cl.mbox, n), std::move(m->message),
                         m->sender);
        }
        std::fclose(f);
        if (reader.bad_format()) {
            say(ctx.err, "spoolctl: import: {}: not an mbox (line {} is not a From_ line)\n",
                ctx.cl.mbox, reader.line_number());
            importer.finish();
            return kExitFailed;
        }
        return importer.finish();
    }
    std::vector<std::string> files;
    for (const auto& operand : ctx.cl.operands) {
        std::error_code ec;
        if (std::filesystem::is_directory(operand, ec)) {
            std::vector<std::string> found;
            for (const auto& e : std::filesystem::directory_iterator(operand, ec)) {
                if (e.path().extension() == ".eml" && e.is_regular_file()) {
                    found.push_back(e.path().string());
                }
            }
            std::sort(found.begin(), found.end());
            files.insert(files.end(), found.begin(), found.end());
        } else {
            files.push_back(operand);
        }
        if (ec) {
            say(ctx.err, "spoolctl: import: {}: {}\n", operand, ec.message());
            return kExitFailed;
        }
    }
    for (const auto& path : files) {
        auto text = read_whole_file(path);
        if (!text) {
            importer.refuse(path, text.error().message);
            continue;
        }
        importer.add(path, std::move(*text), std::nullopt);
    }
    return importer.finish();
}

} // namespace spoold::spoolctl
