#include "drain/recipient_sweep.hpp"

#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <utility>

#include "common/log.hpp"

namespace spoold::drain {

namespace asio = boost::asio;

RecipientSweep::RecipientSweep(asio::any_io_executor executor, spool::Spool& spool,
                               const bool& stopping, std::function<void()> wake, const Clock& clock)
    : executor_(std::move(executor)), spool_(spool), stopping_(stopping), wake_(std::move(wake)),
      clock_(clock) {}

void RecipientSweep::tick(UnixMillis now, bool others_busy) {
    if (running_ || stopping_ || others_busy || now < next_ms_) {
        return;
    }
    next_ms_ = now + kSweepIntervalMs;
    auto pending = spool_.removed_recipients_pending();
    if (!pending) {
        log::warn("event=recipient_sweep_read_failed error={}",
                  log::quote(pending.error().describe()));
        return;
    }
    if (*pending == 0) {
        return;
    }
    const std::size_t batch = pacer_.size();
    running_ = true;
    const UnixMillis submitted = clock_.now_ms();
    const asio::any_io_executor tracked =
        asio::prefer(executor_, asio::execution::outstanding_work.tracked);
    spool_.sweep_removed_recipients(batch, [this, tracked, submitted](Result<std::size_t> n) {
        asio::post(tracked, [this, submitted, n = std::move(n)] {
            running_ = false;
            if (!n) {
                log::warn("event=spool_write_failed op=sweep_removed_recipients error={}",
                          log::quote(n.error().describe()));
                return;
            }
            const UnixMillis took = clock_.now_ms() - submitted;
            pacer_.took(*n, took);
            swept_ += *n;
            log::debug("event=recipient_sweep messages={} ms={}", *n, took);
            if (*n > 0 && !stopping_) {
                next_ms_ = clock_.now_ms(); // more may wait: the next look at the next turn
                wake_();
            }
        });
    });
}

} // namespace spoold::drain
