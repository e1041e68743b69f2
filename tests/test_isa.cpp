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
// reads the lines below as "skipped" (SKIP_REGULAR_EXPRESSION). So does, in those ctest runs
// (BNORM_ISA_SUITE set), the set this CPU picks by default: ctest has run the suite with it
// test by test.
class IsaEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    const char* env = std::getenv("BNORM_ISA");
    if (env == nullptr || *env == '\0') return;
    if (!bnorm::isa_supported(env)) skip_run(std::string("this CPU lacks ") + env);
    const char* widest = "sse2";
    for (const char* name : kNames)
      if (bnorm::isa_supported(name)) widest = name;
    if (std::getenv("BNORM_ISA_SUITE") != nullptr && std::string(env) == widest)
      skip_run(std::string(env) + " is the default set, which the suite's own tests ran");
    std::printf("kernels: %s\n", std::string(bnorm::isa()).c_str());
  }

 private:
  [[noreturn]] static void skip_run(const std::string& why) {
    std::printf("skipped: %s\n", why.c_str());
    std::fflush(stdout);
    std::_Exit(0);
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
