// The milters of one SMTP connection (smtp::FilterSession): each configured filter asked
// in order at every stage, their answers combined into one verdict, a filter that fails
// or times out handled by its on_failure (tempfail: 451 4.7.1 from then on; accept: left
// out for the rest of the connection). MilterFilters hands out one chain per connection.
#pragma once

#include <boost/asio/io_context.hpp>
#include <memory>
#include <mutex>
#include <vector>

#include "policy/config.hpp"
#include "smtp/filter.hpp"

namespace spoold::milter {

// What a chain needs besides the filters: our names for the macros j, v and
// {daemon_name} (our authserv-id, as Postfix sends its hostname there).
struct ChainSettings {
    std::string hostname;
    std::string daemon_name = "spoold";
    std::string version;
    std::vector<policy::MilterConfig> milters;
};

class MilterFilters final : public smtp::Filters {
public:
    MilterFilters(boost::asio::io_context& io, ChainSettings settings);
    // New connections get these settings; open ones keep theirs.
    void reconfigure(ChainSettings settings);
    // Null when no milters are configured.
    std::unique_ptr<smtp::FilterSession> open() override;

private:
    boost::asio::io_context& io_;
    std::mutex mutex_;
    std::shared_ptr<const ChainSettings> settings_;
};

} // namespace spoold::milter
