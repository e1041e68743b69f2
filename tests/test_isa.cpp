// bnorm::isa(), set_isa() and isa_supported(); the BNORM_ISA override of a whole run (ctest
// isa.<name>.suite runs this binary once per kernel set) and its bad values (isa_env_check.cpp).
// That the sets give the same bits is the digest tests' part (repro_digest.cpp).
#include <cstdlib>
#include <string>

#include "test_support.hpp"

namespace bnorm_test {
namespace {

const char* const kNames[] = {"sse2", "avx2", "avx512"};

// With BNORM_ISA set (the per-ISA ctest runs), a set this CPU lacks skips the whole run; ctest
// reads the line below as "skipped" (SKIP_REGULAR_EXPRESSION).
class IsaEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    const char* env = std::getenv("BNORM_ISA");
    if (env == nullptr || *env == '\0') return;
    if (!bnorm::isa_supported(env)) {
      std::printf("skipped: this CPU lacks %s\n", env);
      std::fflush(stdout);
      std::_Exit(0);
    }
    std::printf("kernels: %s\n", std::string(bnorm::isa()).c_str());
  }
};
const auto* const kIsaEnvironment =
    ::testing::AddGlobalTestEnvironment(new IsaEnvironment);  // gtest owns it

TEST(Isa, NamesTheKernelsInUse) {
  const std::string now(bnorm::isa());
  bool known = now == "generic";
  for (const char* n : kNames) known = known || now == n;
  EXPECT_TRUE(known) << now;
  EXPECT_TRUE(bnorm::isa_supported(now));
  EXPECT_TRUE(bnorm::isa_supported("sse2") || now == "generic");
  EXPECT_FALSE(bnorm::isa_supported("avx9"));
}

TEST(Isa, SetIsaSelectsEverySupportedSetAndRejectsTheOthers) {
  const std::string before(bnorm::isa());
  for (const char* n : kNames) {
    if (bnorm::isa_supported(n)) {
      bnorm::set_isa(n);
      EXPECT_EQ(bnorm::isa(), n);
    } else {
      const std::string m = message_of([&] { bnorm::set_isa(n); });
      EXPECT_NE(m.find(std::string("set_isa asks for \"") + n + "\", which this CPU cannot run"),
                std::string::npos)
          << m;
      std::printf("%s: not on this CPU, skipped\n", n);
    }
  }
  EXPECT_EQ(
      message_of([] { bnorm::set_isa("avx9"); })
          .rfind("bnorm: set_isa asks for \"avx9\", an unknown instruction set (expected one of \"",
                 0),
      0u);
  bnorm::set_isa(before);  // an error changed nothing: the set chosen last is kept
  EXPECT_EQ(bnorm::isa(), before);
}

}  // namespace
}  // namespace bnorm_test
