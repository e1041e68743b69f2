// What every step of the module pair shares: the modules' state, and a call's outcome (it
// threw bnorm::invalid_argument, or nothing) checked against the oracle's verdict.
#pragma once

#include <bnorm/bnorm.hpp>

#include "../module_state.hpp"
#include "arena.hpp"
#include "fuzz_input.hpp"

#include <cstring>
#include <string>

namespace {

using bnorm_test::ModuleState;
using bnorm_test::same_bits;

struct Outcome {
  bool threw = false;
  std::string message;
};
template <class F>
Outcome attempt(const F& f) {
  try {
    f();
    return {};
  } catch (const bnorm::invalid_argument& e) {
    FUZZ_CHECK(std::strncmp(e.what(), "bnorm: ", 7) == 0, "message prefix: ", e.what());
    return {true, e.what()};
  }
  // Anything else (std::bad_alloc, another std::invalid_argument, ...) escapes: a crash.
}

void check_verdict(const Verdict& v, const Outcome& o, const std::string& what) {
  if (v.must_reject) FUZZ_CHECK(o.threw, what, ": accepted, expected a rejection");
  if (!v.must_reject && v.sure) FUZZ_CHECK(!o.threw, what, ": rejected a valid call: ", o.message);
}

}  // namespace
