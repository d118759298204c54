// The embedded default mailstore: each recipient local@domain gets the message as a
// file in <root>/<domain>/<local>/new/ by the Maildir protocol (tmp/, fsync, rename,
// fsync the directory). No quotas, no indexes, no sieve: that is a real mailstore's job.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/thread_pool.hpp>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/reply.hpp"
#include "drain/connectors/options.hpp"
#include "drain/mailstore.hpp"
#include "policy/config.hpp"

namespace spoold::drain::connectors {

// Where one recipient's mail goes: lower-cased domain and local part, each checked
// to be one safe path component. Refused (nullopt): no '@', an empty part, '/' or
// '\\', a leading '.', NUL or any control byte, a quoted local part. Such a recipient
// gets 550 5.1.3 (bad destination mailbox address syntax) and nothing is written.
struct MaildirPath {
    std::string domain;
    std::string local;
};
std::optional<MaildirPath> maildir_path_for(std::string_view address);

// The synchronous half, usable from any thread; one instance per message.
// Errors: kDiskFull for ENOSPC/EDQUOT, kIo otherwise (the message names the step).
class MaildirWriter {
public:
    MaildirWriter(std::string root, std::string hostname);
    ~MaildirWriter(); // removes the tmp/ file of a message that was not committed
    MaildirWriter(const MaildirWriter&) = delete;
    MaildirWriter& operator=(const MaildirWriter&) = delete;

    // Creates <root>/<domain>/<local>/{tmp,new,cur} (mode 0700) when missing (the root
    // itself must exist: a missing root is an unmounted store, not a place to create),
    // makes each durable in its parent (one found existing: once per process), and
    // opens a new file in tmp/.
    Status open(const MaildirPath& path);
    Status write(std::string_view data);
    // fsync, close, rename to new/<name>,S=<size>, fsync new/. Returns the new path.
    Result<std::string> commit();
    void abort();
    // After one of the calls above failed with `e`: whether every other mailbox would fail
    // alike, so the failure is the store's: the root is gone, or the filesystem holding it is
    // full (ENOSPC, or our user's quota: EDQUOT) or read-only and this mailbox lies on it. A
    // mailbox on a filesystem of its own fails alone. Synchronous (stat, statvfs).
    bool fails_every_mailbox(const Error& e) const;

private:
    std::string root_;
    std::string hostname_;
    std::string dir_;
    std::string tmp_path_;
    std::string base_name_;
    std::uint64_t size_ = 0;
    int fd_ = -1;
};

// A unique Maildir base name: "<sec>.M<usec>P<pid>Q<counter>.<host>", the host with
// '/' and ':' escaped as the Maildir spec asks.
std::string maildir_unique_name(std::string_view hostname);

class MaildirMailstore final : public Mailstore {
public:
    // `blocking` runs the file I/O (options.blocking_executor, or a pool of our own).
    MaildirMailstore(boost::asio::any_io_executor executor, const policy::MailstoreConfig& config,
                     ConnectorOptions options);
    ~MaildirMailstore() override;

    const std::string& name() const override { return name_; }
    // Per recipient: 250 2.0.0 delivered; 550 5.1.3 unsafe address; 452 4.3.1 disk full
    // (deferred, and mailstore trouble); 451 4.3.0 other I/O failure (trouble); `store_wide`
    // when the failure is the whole store's (MaildirWriter::fails_every_mailbox). The body
    // is read and written piece by piece, the message stored with LF line ends.
    boost::asio::awaitable<DeliveryResult> deliver(DeliveryRequest request) override;
    // The root exists, is a directory and a file can be created in it.
    boost::asio::awaitable<Status> probe() override;

private:
    boost::asio::any_io_executor executor_;
    std::string name_;
    std::string root_;
    ConnectorOptions options_;
    std::unique_ptr<boost::asio::thread_pool> own_pool_;
    boost::asio::any_io_executor blocking_;
};

} // namespace spoold::drain::connectors
