// Prints the widest kernel set this CPU runs, as the library decides at run time. Run at
// configure time (tests/CMakeLists.txt): the digest programs compile no set wider than that.
#include <cstdio>

#include <bnorm/detail/cpu_features.hpp>

int main() {
  std::puts(bnorm::detail::isa_name(bnorm::detail::best_isa()));
}
