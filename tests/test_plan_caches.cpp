// The kernels' plans take the cache sizes read at run time (detail/cache_sizes.hpp) for what is
// locality only. Here: the sizes are this CPU's (against CPUID's cache leaves), other machines'
// sizes change the plans, and every pass gives the same bits under each.
#define BNORM_DETAIL_COMPILE_KERNELS 1  // the plans are the kernels' own (detail::baseline::Plan)
#include "test_support.hpp"

#if defined(__x86_64__)
#include <cpuid.h>
#endif

namespace bnorm_test {
namespace {

using bnorm::detail::CacheSizes;

/// The bytes of the data or unified cache of `level` by CPUID's deterministic cache leaves
/// (AMD 0x8000001D, Intel 4): ways x partitions x line x sets; 0 if the CPU does not say.
std::size_t cpuid_cache_bytes(int level) {
#if defined(__x86_64__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  __get_cpuid(0, &a, &b, &c, &d);
  const bool amd = b == 0x68747541;  // "Auth"enticAMD
  const unsigned leaf = amd ? 0x8000001D : 4;
  if (static_cast<unsigned>(__get_cpuid_max(leaf & 0x80000000, nullptr)) < leaf) return 0;
  for (unsigned i = 0; i < 16; ++i) {
    __cpuid_count(leaf, i, a, b, c, d);
    const unsigned type = a & 0x1F;
    if (type == 0) break;
    if (type == 2 || static_cast<int>(a >> 5 & 0x7) != level) continue;  // 2: instruction
    return std::size_t{(b >> 22) + 1} * ((b >> 12 & 0x3FF) + 1) * ((b & 0xFFF) + 1) * (c + 1);
  }
#else
  (void)level;
#endif
  return 0;
}

TEST(CacheSizes, AreThisCpusByCpuid) {
  const std::size_t l2 = cpuid_cache_bytes(2), l3 = cpuid_cache_bytes(3);
  if (l2 == 0) GTEST_SKIP() << "CPUID gives no cache sizes here";
  const CacheSizes read = bnorm::detail::read_cache_sizes();
  EXPECT_EQ(read.l2, l2);
  EXPECT_EQ(read.last_level, l3 != 0 ? l3 : l2);
  std::printf("L2 %zu KiB per core, last level %zu KiB\n", read.l2 >> 10, read.last_level >> 10);
}

// Sizes of other machines: a small one (everything streams, long channels pipelined, small
// blocks), this one's, and a huge one (nothing streams).
const CacheSizes kMachines[] = {
    {std::size_t{16} << 10, std::size_t{64} << 10},
    bnorm::detail::read_cache_sizes(),
    {std::size_t{1} << 30, std::size_t{1} << 31},
};

// Shapes whose plans differ between those machines: long channels over two chunks, and short
// channels in blocks.
const Shape kShapes[] = {{32, 8, 56, 56}, {8, 64, 7, 7}, {4, 3, 30, 30}};

TEST(CacheSizes, ChangeThePlans) {
  for (const Shape& s : kShapes) {
    std::vector<float> x(static_cast<std::size_t>(count(s)));
    const bnorm::NCHWView<const float> v(x.data(), s[0], s[1], s[2], s[3]);
    std::vector<bnorm::detail::baseline::Plan> plans;
    for (const CacheSizes& m : kMachines) {
      const CacheSizesScope scope(m);
      plans.emplace_back(v, sizeof(float));
    }
    EXPECT_TRUE(plans.front().stream && !plans.back().stream) << to_string(s);
    if (s[0] == 32) {
      EXPECT_TRUE(plans.front().pipelined && !plans.back().pipelined) << to_string(s);
    }
    if (s[0] == 8) {
      EXPECT_LT(plans.front().block, plans.back().block) << to_string(s);
    }
  }
}

template <class T>
class PlanCaches : public ::testing::Test {};
TYPED_TEST_SUITE(PlanCaches, FloatTypes, );  // the empty argument: -Wpedantic

// Every pass's outputs under each machine's sizes, as bytes.
template <class T>
std::vector<std::vector<T>> outputs_under(const CacheSizes& m, const Shape& s, Layout layout) {
  const CacheSizesScope scope(m);
  const index_t c = s[1];
  Buffer<T> x(s, layout), dy(s, layout), y(s, layout), dx(s, layout);
  x.set(random_values<T>(s, 7, 3.0, 2.0));
  dy.set(random_values<T>(s, 8));
  const Eigen::Array<T, Eigen::Dynamic, 1> w = random_array<T>(c, 9, 0.5, 2.0),
                                           b = random_array<T>(c, 10, -1.0, 1.0),
                                           rm = random_array<T>(c, 11, -1.0, 1.0),
                                           rv = random_array<T>(c, 12, 0.5, 2.0);
  Eigen::Array<T, Eigen::Dynamic, 1> dw, db;
  std::vector<std::vector<T>> out;
  const auto stats = bnorm::fused::forward_training<T>(x.cview(), w, b, 1e-5, y.view());
  out.push_back(y.values());
  bnorm::fused::backward<T>(x.cview(), dy.cview(), w, stats, dx.view(), dw, db);
  out.push_back(dx.values());
  out.emplace_back(dw.data(), dw.data() + dw.size());
  out.emplace_back(db.data(), db.data() + db.size());
  bnorm::fused::forward_inference<T>(x.cview(), w, b, rm, rv, 1e-5, y.view());
  out.push_back(y.values());
  return out;
}

TYPED_TEST(PlanCaches, SameBitsForAnyCacheSizes) {
  using T = TypeParam;
  for (const Shape& s : kShapes)
    for (const Layout layout : {Layout::nchw, Layout::channels_last}) {
      const auto here = outputs_under<T>(kMachines[1], s, layout);
      for (const CacheSizes& m : {kMachines[0], kMachines[2]}) {
        const auto there = outputs_under<T>(m, s, layout);
        for (std::size_t i = 0; i < here.size(); ++i)
          EXPECT_TRUE(same_bits(here[i], there[i]))
              << to_string(s) << " " << name(layout) << " output " << i << " under L2 " << m.l2
              << ", last level " << m.last_level;
      }
    }
}

}  // namespace
}  // namespace bnorm_test
