// What one mailstore's deliveries may use beyond this node's own limits: a share of a budget
// other nodes draw on too (the fleet's), and whose turn it is to probe the store. The drain
// asks synchronously and never waits; `UnlimitedBudget` is a node on its own.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace spoold::drain {

// For status: where the budget's answers come from.
enum class BudgetMode : std::uint8_t {
    kLocal,    // no shared budget: only this node's limits apply
    kFleet,    // the fleet's shared budget, as last granted
    kFallback, // the fleet cannot be reached: a conservative share of its limits
};
const char* to_string(BudgetMode mode);

struct BudgetStatus {
    BudgetMode mode = BudgetMode::kLocal;
    std::uint32_t concurrency = 0; // deliveries this node may have in flight (0 = no limit)
    double rate = 0;               // its share of the rate, per second (0 = no limit)
    std::uint32_t live_nodes = 1;  // as last seen
    bool prober = false;           // this node holds the fleet's probe of the store
};

class Budget {
public:
    virtual ~Budget() = default;

    // Whether one more delivery may start now; `urgent` = of the class a reserve is kept
    // for. A refusal is remembered as demand: the budget asks for more room itself and
    // calls the wake function when it got some.
    virtual bool admits(bool urgent) = 0;
    // A delivery admitted just now starts, or one ends.
    virtual void started(bool urgent) = 0;
    virtual void ended(bool urgent) = 0;
    // The node's own view of the store, each drain tick: deliveries its own limits allow
    // now (breaker, pacing, pause) and whether the store is down (breaker open).
    virtual void update(std::uint32_t own_limit, bool store_down) = 0;

    // Whether this node runs the probe that is due now. Alone it always does; in a fleet
    // one node at a time probes and the others wait for its result.
    virtual bool may_probe() = 0;
    virtual void probe_done(bool ok) = 0;
    // True once for each recovery another node's probe saw since the last call: the
    // store answers again, and this node may try it (half-open) as if it had probed.
    virtual bool recovered_elsewhere() = 0;

    // Called (on the drain's executor) when the budget's answers may have changed.
    virtual void set_wake(std::function<void()> wake) = 0;
    virtual BudgetStatus status() const = 0;
};

// A node without a fleet: admits everything; the node's own limits are all there is.
class UnlimitedBudget final : public Budget {
public:
    bool admits(bool /*urgent*/) override { return true; }
    void started(bool /*urgent*/) override {}
    void ended(bool /*urgent*/) override {}
    void update(std::uint32_t /*own_limit*/, bool /*store_down*/) override {}
    bool may_probe() override { return true; }
    void probe_done(bool /*ok*/) override {}
    bool recovered_elsewhere() override { return false; }
    void set_wake(std::function<void()> /*wake*/) override {}
    BudgetStatus status() const override { return {}; }
};

} // namespace spoold::drain
