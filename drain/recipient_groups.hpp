// Which of a message's queued recipients go out in this round, grouped by the store they
// go to: one group per store a slot was taken in, in order of its first recipient. The
// recipients of other stores stay queued for a later round. Pure: it reads nothing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "drain/routes.hpp"
#include "spool/spool.hpp"

namespace spoold::drain {

// The queued recipients of one message that go to one store (positions in the
// envelope), delivered in one transaction.
struct Group {
    std::size_t store = 0;
    std::vector<std::uint32_t> indexes;

    friend bool operator==(const Group&, const Group&) = default;
};

// `taken`: the stores a slot was taken in for this message.
std::vector<Group> group_by_store(const spool::Envelope& env, const Routes& routes,
                                  const std::vector<std::size_t>& taken);

} // namespace spoold::drain
