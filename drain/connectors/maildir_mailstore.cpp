#include "drain/connectors/maildir_mailstore.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <fmt/format.h>
#include <mutex>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <unistd.h>
#include <unordered_set>

#include "common/dotstuff.hpp"
#include "common/log.hpp"
#include "io/callback.hpp"

namespace spoold::drain::connectors {

namespace asio = boost::asio;

namespace {

// fsync and rename dominate; two threads let two deliveries overlap their fsyncs
// without taking the machine from the SMTP side.
constexpr std::size_t kOwnPoolThreads = 2;
constexpr mode_t kDirMode = 0700;
constexpr mode_t kFileMode = 0600;
constexpr std::size_t kProbeBytes = 4096; // one block: what a probe writes to test for space
constexpr int kNameAttempts = 5;
constexpr std::size_t kMaxDurableDirs = 1 << 16; // ~6 MiB; forgetting costs one fsync more

std::atomic<std::uint64_t> g_delivery_counter{0};

// Directories this process has seen made durable in their parent (it created one and
// synced the parent, or found one and synced the parent once). A directory that merely
// exists may have been made by a process that crashed before syncing its parent, or by
// another delivery still on its way to that sync: a power cut would take it, and every
// message in it, away.
class DurableDirs {
public:
    bool contains(const std::string& dir) {
        const std::lock_guard lock(mutex_);
        return dirs_.contains(dir);
    }
    void add(const std::string& dir) {
        const std::lock_guard lock(mutex_);
        if (dirs_.size() >= kMaxDurableDirs) {
            dirs_.clear();
        }
        dirs_.insert(dir);
    }

private:
    std::mutex mutex_;
    std::unordered_set<std::string> dirs_;
};

DurableDirs g_durable_dirs;

Error errno_error(int err, std::string_view step, std::string_view path) {
    const ErrorKind kind = (err == ENOSPC || err == EDQUOT) ? ErrorKind::kDiskFull : ErrorKind::kIo;
    return Error{kind, fmt::format("{} {}: {}", step, path, std::strerror(err))};
}

bool safe_component(std::string_view s) {
    if (s.empty() || s.front() == '.' || s.front() == '"') {
        return false;
    }
    return std::none_of(s.begin(), s.end(), [](char c) {
        const auto u = static_cast<unsigned char>(c);
        return u < 0x20 || u == 0x7f || c == '/' || c == '\\';
    });
}

std::string lower(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) {
        return static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    });
    return out;
}

Status fsync_dir(const std::string& dir) {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return tl::unexpected(errno_error(errno, "open directory", dir));
    }
    const int rc = ::fsync(fd);
    const int err = errno;
    ::close(fd);
    if (rc != 0) {
        return tl::unexpected(errno_error(err, "fsync directory", dir));
    }
    return {};
}

// mkdir that tolerates an existing directory; either way the directory is durable in
// its parent on return (an existing one is synced once per process, see DurableDirs).
Status ensure_dir(const std::string& parent, const std::string& dir) {
    if (::mkdir(dir.c_str(), kDirMode) != 0) {
        if (errno != EEXIST) {
            return tl::unexpected(errno_error(errno, "mkdir", dir));
        }
        if (g_durable_dirs.contains(dir)) {
            return {};
        }
    }
    SPOOLD_CHECK(fsync_dir(parent));
    g_durable_dirs.add(dir);
    return {};
}

std::string escape_host(std::string_view host) {
    std::string out;
    for (const char c : host) {
        if (c == '/') {
            out += "\\057";
        } else if (c == ':') {
            out += "\\072";
        } else {
            out += c;
        }
    }
    return out;
}

} // namespace

std::optional<MaildirPath> maildir_path_for(std::string_view address) {
    const auto at = address.rfind('@');
    if (at == std::string_view::npos) {
        return std::nullopt;
    }
    MaildirPath p{lower(address.substr(at + 1)), lower(address.substr(0, at))};
    if (!safe_component(p.domain) || !safe_component(p.local)) {
        return std::nullopt;
    }
    return p;
}

std::string maildir_unique_name(std::string_view hostname) {
    timeval tv{};
    ::gettimeofday(&tv, nullptr);
    return fmt::format("{}.M{}P{}Q{}.{}", tv.tv_sec, tv.tv_usec, ::getpid(),
                       g_delivery_counter.fetch_add(1) + 1, escape_host(hostname));
}

MaildirWriter::MaildirWriter(std::string root, std::string hostname)
    : root_(std::move(root)), hostname_(std::move(hostname)) {}

MaildirWriter::~MaildirWriter() { abort(); }

void MaildirWriter::abort() {
    if (fd_ >= 0) {
        ::close(fd_);
        fd_ = -1;
    }
    if (!tmp_path_.empty()) {
        ::unlink(tmp_path_.c_str());
        tmp_path_.clear();
    }
}

Status MaildirWriter::open(const MaildirPath& path) {
    struct stat st {};
    if (::stat(root_.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
        return fail(ErrorKind::kIo, fmt::format("maildir root {} is not a directory", root_));
    }
    const std::string domain_dir = root_ + "/" + path.domain;
    dir_ = domain_dir + "/" + path.local;
    for (const auto& [parent, dir] :
         {std::pair{root_, domain_dir}, std::pair{domain_dir, dir_}, std::pair{dir_, dir_ + "/tmp"},
          std::pair{dir_, dir_ + "/new"}, std::pair{dir_, dir_ + "/cur"}}) {
        if (auto s = ensure_dir(parent, dir); !s) {
            return s;
        }
    }
    for (int attempt = 0; attempt < kNameAttempts; ++attempt) {
        base_name_ = maildir_unique_name(hostname_);
        const std::string tmp = dir_ + "/tmp/" + base_name_;
        fd_ = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, kFileMode);
        if (fd_ >= 0) {
            tmp_path_ = tmp;
            size_ = 0;
            return {};
        }
        if (errno != EEXIST) {
            return tl::unexpected(errno_error(errno, "create", tmp));
        }
    }
    return fail(ErrorKind::kIo, fmt::format("no unique file name in {}/tmp", dir_));
}

Status MaildirWriter::write(std::string_view data) {
    while (!data.empty()) {
        const ssize_t n = ::write(fd_, data.data(), data.size());
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return tl::unexpected(errno_error(errno, "write", tmp_path_));
        }
        data.remove_prefix(static_cast<std::size_t>(n));
        size_ += static_cast<std::uint64_t>(n);
    }
    return {};
}

Result<std::string> MaildirWriter::commit() {
    // The file's data must be on disk before its name appears in new/: a crash must
    // never leave a truncated message where the reader looks (Maildir's whole point).
    if (::fsync(fd_) != 0) {
        return tl::unexpected(errno_error(errno, "fsync", tmp_path_));
    }
    const int fd = std::exchange(fd_, -1);
    if (::close(fd) != 0) {
        return tl::unexpected(errno_error(errno, "close", tmp_path_));
    }
    const std::string final_path = fmt::format("{}/new/{},S={}", dir_, base_name_, size_);
    if (::rename(tmp_path_.c_str(), final_path.c_str()) != 0) {
        return tl::unexpected(errno_error(errno, "rename", tmp_path_));
    }
    tmp_path_.clear();
    // The rename is durable only once new/ itself is synced; only then may we say 250.
    if (auto s = fsync_dir(dir_ + "/new"); !s) {
        return tl::unexpected(s.error());
    }
    return final_path;
}

bool MaildirWriter::fails_every_mailbox(const Error& e) const {
    struct stat root {};
    if (::stat(root_.c_str(), &root) != 0 || !S_ISDIR(root.st_mode)) {
        return true; // unmounted or gone: no mailbox can be written
    }
    struct statvfs vfs {};
    const bool read_only = ::statvfs(root_.c_str(), &vfs) == 0 && (vfs.f_flag & ST_RDONLY) != 0;
    if (e.kind != ErrorKind::kDiskFull && !read_only) {
        return false;
    }
    // The nearest directory of this mailbox that exists (its own, its domain's) tells the
    // filesystem it is on; one not created yet would be made on the root's.
    for (std::string d = dir_; d.size() > root_.size(); d.resize(d.rfind('/'))) {
        struct stat st {};
        if (::stat(d.c_str(), &st) == 0) {
            return st.st_dev == root.st_dev;
        }
    }
    return true;
}

MaildirMailstore::MaildirMailstore(asio::any_io_executor executor,
                                   const policy::MailstoreConfig& config, ConnectorOptions options)
    : executor_(std::move(executor)), name_(config.name), root_(config.maildir_root),
      options_(std::move(options)) {
    if (options_.blocking_executor) {
        blocking_ = *options_.blocking_executor;
    } else {
        own_pool_ = std::make_unique<asio::thread_pool>(kOwnPoolThreads);
        blocking_ = own_pool_->get_executor();
    }
}

MaildirMailstore::~MaildirMailstore() {
    if (own_pool_) {
        own_pool_->join();
    }
}

namespace {

Reply reply_for_write_error(const Error& e) {
    if (e.kind == ErrorKind::kDiskFull) {
        return make_reply(452, "4.3.1", "Insufficient system storage in the mailstore");
    }
    return make_reply(451, "4.3.0", "Mailstore I/O error, try again later");
}

struct Slot {
    std::unique_ptr<MaildirWriter> writer;
    std::optional<Error> error;
    bool store_wide = false; // the error fails every mailbox of the store

    // On the blocking pool, right after the writer's step failed.
    void failed(Error e) {
        store_wide = writer->fails_every_mailbox(e);
        error = std::move(e);
    }
};

} // namespace

asio::awaitable<DeliveryResult> MaildirMailstore::deliver(DeliveryRequest request) {
    DeliveryResult result;
    result.per_recipient.assign(request.recipients.size(),
                                make_reply(250, "2.0.0", "Delivered to maildir"));
    std::vector<Slot> slots(request.recipients.size());
    std::vector<std::optional<MaildirPath>> paths;
    for (std::size_t i = 0; i < request.recipients.size(); ++i) {
        paths.push_back(maildir_path_for(request.recipients[i]));
        if (paths.back()) {
            slots[i].writer = std::make_unique<MaildirWriter>(root_, options_.hostname);
        } else {
            result.per_recipient[i] =
                make_reply(550, "5.1.3", "Recipient address is not a safe mailbox name");
        }
    }
    auto live = [&slots] {
        return std::any_of(slots.begin(), slots.end(),
                           [](const Slot& s) { return s.writer && !s.error; });
    };

    // Named functions, not lambdas inside co_await (g++ 12 coroutine hygiene); each
    // runs on the blocking pool while this coroutine is suspended, so nothing else
    // touches `slots` meanwhile.
    std::function<bool()> open_all = [&slots, &paths] {
        for (std::size_t i = 0; i < slots.size(); ++i) {
            if (slots[i].writer) {
                if (auto s = slots[i].writer->open(*paths[i]); !s) {
                    slots[i].failed(s.error());
                }
            }
        }
        return true;
    };
    (void)co_await io::offload<bool>(blocking_, std::move(open_all));

    LfNormalizer normalizer;
    std::uint32_t chunk = 0;
    std::string data;
    std::optional<Error> read_error;
    while (live()) {
        auto piece = request.read_body(chunk, options_.body_piece_bytes);
        if (!piece) {
            read_error = piece.error();
            break;
        }
        if (!piece->done && piece->data.empty() && piece->next_chunk == chunk) {
            read_error = Error{ErrorKind::kInternal, "body reader made no progress"};
            break;
        }
        data.clear();
        normalizer.feed(piece->data, data);
        if (piece->done) {
            normalizer.finish(data);
        }
        std::function<bool()> write_all = [&slots, &data] {
            for (auto& s : slots) {
                if (s.writer && !s.error) {
                    if (auto st = s.writer->write(data); !st) {
                        s.failed(st.error());
                    }
                }
            }
            return true;
        };
        (void)co_await io::offload<bool>(blocking_, std::move(write_all));
        if (piece->done) {
            break;
        }
        chunk = piece->next_chunk;
    }

    std::function<bool()> finish_all = [&slots, &read_error] {
        for (auto& s : slots) {
            if (!s.writer) {
                continue;
            }
            if (!s.error && !read_error) {
                if (auto committed = s.writer->commit(); !committed) {
                    s.failed(committed.error());
                }
            }
            s.writer.reset(); // unlinks tmp/ leftovers of failed ones
        }
        return true;
    };
    (void)co_await io::offload<bool>(blocking_, std::move(finish_all));

    for (std::size_t i = 0; i < slots.size(); ++i) {
        if (!paths[i]) {
            continue;
        }
        if (read_error) {
            result.per_recipient[i] =
                reply_for_local_error(*read_error); // our spool, not the store
        } else if (slots[i].error) {
            result.per_recipient[i] = reply_for_write_error(*slots[i].error);
            result.mailstore_trouble = true;
            result.store_wide = result.store_wide || slots[i].store_wide;
            log::warn("event=maildir_write_failed mailstore={} id={} store_wide={} error={}", name_,
                      request.id.text(), slots[i].store_wide,
                      log::quote(slots[i].error->describe()));
        }
    }
    co_return result;
}

asio::awaitable<Status> MaildirMailstore::probe() {
    std::function<Status()> check = [root = root_] {
        struct stat st {};
        if (::stat(root.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
            return Status(fail(ErrorKind::kUnavailable,
                               fmt::format("maildir root {} is not a directory", root)));
        }
        const std::string probe_file =
            fmt::format("{}/.spoold-probe.{}", root, maildir_unique_name("probe"));
        const int fd =
            ::open(probe_file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, kFileMode);
        if (fd < 0) {
            const Error e = errno_error(errno, "create", probe_file);
            return Status(
                fail(e.kind == ErrorKind::kDiskFull ? e.kind : ErrorKind::kUnavailable, e.message));
        }
        // An empty file needs only an inode: on a full filesystem creating one still
        // works, and the breaker would half-open on every probe only for the delivery to
        // fail. One block of data tells whether a message could be written.
        const std::string block(kProbeBytes, '\n');
        const ssize_t n = ::write(fd, block.data(), block.size());
        const int write_errno = errno;
        ::close(fd);
        ::unlink(probe_file.c_str());
        if (n != static_cast<ssize_t>(block.size())) {
            const Error e = errno_error(n < 0 ? write_errno : ENOSPC, "write", probe_file);
            return Status(
                fail(e.kind == ErrorKind::kDiskFull ? e.kind : ErrorKind::kUnavailable, e.message));
        }
        return Status{};
    };
    co_return co_await io::offload<Status>(blocking_, std::move(check));
}

} // namespace spoold::drain::connectors
