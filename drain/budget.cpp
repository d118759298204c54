#include "drain/budget.hpp"

namespace spoold::drain {

const char* to_string(BudgetMode mode) {
    switch (mode) {
    case BudgetMode::kLocal: return "local";
    case BudgetMode::kFleet: return "fleet";
    case BudgetMode::kFallback: return "fallback";
    }
    return "local";
}

} // namespace spoold::drain
