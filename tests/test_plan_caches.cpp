// The kernels' plans take the cache sizes read at run time (detail/cache_sizes.hpp), and whether
// the last level serves as a cache (probed, detail/last_level_probe.hpp), for what is locality
// only. Here: the sizes are this CPU's (against CPUID's cache leaves), other machines' sizes and
// last levels change the plans, and every pass gives the same bits under each.
#define BNORM_DETAIL_COMPILE_KERNELS 1  // the plans are the kernels' own (detail::baseline::Plan)
#include "test_support.hpp"

#if defined(__x86_64__)
#include <cpuid.h>
#endif

namespace bnorm_test {
namespace {

using bnorm::detail::CacheSizes;
using bnorm::detail::LastLevel;

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

const CacheSizes kHere = bnorm::detail::read_cache_sizes();

// Caches of other machines: a small one (everything streams, long channels pipelined, small
// blocks), this one's as probed, this one's with a last level taken as no faster than memory
// and as a cache, a small cache (whole-line outputs stream from 768 KiB of traffic), and a huge
// one (nothing streams). The first is the one the others are compared with.
const CacheSizes kMachines[] = {
    {kHere.l2, kHere.last_level, LastLevel::unknown},
    {std::size_t{16} << 10, std::size_t{64} << 10, LastLevel::fast},
    {kHere.l2, kHere.last_level, LastLevel::slow},
    {kHere.l2, kHere.last_level, LastLevel::fast},
    {std::size_t{16} << 10, std::size_t{1} << 20, LastLevel::fast},
    {std::size_t{1} << 30, std::size_t{1} << 31, LastLevel::fast},
};

// Shapes whose plans differ between those machines: long channels over two chunks, short
// channels in blocks (past this machine's L2s in backward), planes of a pack and a pack and
// a value (streamed where a pack spans two planes: map_plane_lines), and pixels of more
// channels than reduce_pixels' L1 budget (channels-last: tiles of 8 to 16 pixels by the L2).
const Shape kShapes[] = {{32, 8, 56, 56}, {8, 64, 7, 7},    {4, 3, 30, 30}, {32, 64, 14, 14},
                         {16, 150, 4, 4}, {20, 120, 1, 17}, {4, 1030, 3, 3}};

TEST(CacheSizes, ChangeThePlans) {
  for (const Shape& s : kShapes) {
    std::vector<float> x(static_cast<std::size_t>(count(s)));
    const bnorm::NCHWView<const float> v(x.data(), s[0], s[1], s[2], s[3]);
    std::vector<bnorm::detail::baseline::Plan> plans;
    for (const CacheSizes& m : {kMachines[1], kMachines[5]}) {
      const CacheSizesScope scope(m);
      plans.emplace_back(v, sizeof(float));
    }
    EXPECT_TRUE(plans.front().stream && !plans.back().stream) << to_string(s);
    if (s[0] == 32 && s[2] == 56) {
      EXPECT_TRUE(plans.front().pipelined && !plans.back().pipelined) << to_string(s);
    }
    if (s[0] == 8) {
      EXPECT_LT(plans.front().block, plans.back().block) << to_string(s);
    }
  }
}

// A last level no faster than memory: streaming from the threads' L2s on, and blocks of half an
// L2, where a last level that serves as a cache keeps regular stores and blocks of an eighth of
// it. 12.8 MB of traffic overflow 256 KiB L2s on up to 48 threads.
TEST(CacheSizes, ALastLevelNoFasterThanMemoryChangesThePlans) {
  const Shape s{32, 256, 14, 14};
  std::vector<float> x(static_cast<std::size_t>(count(s)));
  const bnorm::NCHWView<const float> v(x.data(), s[0], s[1], s[2], s[3]);
  const auto plan = [&](LastLevel speed) {
    const CacheSizesScope scope({std::size_t{256} << 10, std::size_t{64} << 20, speed});
    return bnorm::detail::baseline::Plan(v, sizeof(float));
  };
  const auto slow = plan(LastLevel::slow), fast = plan(LastLevel::fast);
  EXPECT_TRUE(slow.stream);
  EXPECT_FALSE(fast.stream);
  EXPECT_LT(slow.block, fast.block);
}

// A last level that is a cache: from three quarters of it (and below all of it), outputs the
// kernels store in whole cache lines stream, the others do not. Forward traffic here: 2.5 MiB
// against a 3 MiB last level.
TEST(CacheSizes, WholeLinesStreamFromThreeQuartersOfTheLastLevel) {
  struct alignas(64) Line {
    float v[16];
  };
  const std::vector<Line> memory(393216 / 16);
  const float* data = memory.front().v;
  using View = bnorm::NCHWView<const float>;
  const View planes(data, 4, 20, 64, 64),  // planes of 256 lines
      adjacent(data, 4, 1671, 7, 7),       // 49 values, walked in lines (map_plane_lines)
      tiny(data, 4, 5461, 3, 5),           // 15 values: through the L1 buffer
      apart(data, {4, 24, 59, 59}, {24 * 4096, 4096, 59, 1}),  // not adjacent: the L1 buffer
      pixels = View::channels_last(data, 4, 64, 32, 40),
      odd_pixels = View::channels_last(data, 4, 40, 32, 64);
  const auto plan = [](const View& v) {
    const CacheSizesScope scope({std::size_t{16} << 10, std::size_t{3} << 20, LastLevel::fast});
    return bnorm::detail::baseline::Plan(v, sizeof(float));
  };
  for (const View& v : {planes, adjacent, tiny, apart, pixels, odd_pixels}) {
    EXPECT_FALSE(plan(v).stream);
    EXPECT_TRUE(plan(v).stream_lines);
  }
  EXPECT_TRUE(plan(planes).stream_to(planes));
  EXPECT_TRUE(plan(adjacent).stream_to(adjacent));
  EXPECT_TRUE(plan(pixels).stream_to(pixels));
  EXPECT_FALSE(plan(tiny).stream_to(tiny));
  EXPECT_FALSE(plan(apart).stream_to(apart));
  EXPECT_FALSE(plan(odd_pixels).stream_to(odd_pixels));
  // below three quarters, nothing streams
  const View less(data, 4, 16, 64, 64);
  EXPECT_FALSE(plan(less).stream_lines || plan(less).stream_to(less));
}

// reduce_pixels' tiles: as many pixels as fit its L1 budget (32 KiB) when that is 16 or more,
// else what fits an eighth of the L2, from 8 to 16 pixels (the bits do not depend on it:
// PlanCaches below).
TEST(CacheSizes, PixelTilesFitTheL1OrAnEighthOfTheL2) {
  using bnorm::detail::baseline::pixel_tile;
  const auto on = [](std::size_t l2_kib, index_t bytes) {
    const CacheSizesScope scope({l2_kib << 10, std::size_t{32} << 20, LastLevel::fast});
    return pixel_tile(bytes);
  };
  EXPECT_EQ(on(512, 1024), 32);  // 2 views of 8 groups of 16 floats: within L1
  EXPECT_EQ(on(512, 2048), 16);
  EXPECT_EQ(on(512, 4096), 16);   // 64 KiB of L2 / 4 KiB
  EXPECT_EQ(on(512, 8192), 8);    // channels-last backward of 1024 channels
  EXPECT_EQ(on(512, 16384), 8);   // 2048 channels: 4 by the L2, 8 at least
  EXPECT_EQ(on(1024, 8192), 16);  // the same on a 1 MiB L2
  EXPECT_EQ(on(1024, 16384), 8);
  EXPECT_EQ(on(4096, 16384), 16);  // 16 at most
}

// BNORM_LAST_LEVEL in place of the probe: "cache" and "memory", unset or empty to probe, and a
// clear error for anything else (tests/CMakeLists.txt runs a program with a bad value).
TEST(CacheSizes, BnormLastLevelAnswersInsteadOfTheProbe) {
  using bnorm::detail::last_level_from;
  EXPECT_EQ(last_level_from(nullptr), LastLevel::unknown);
  EXPECT_EQ(last_level_from(""), LastLevel::unknown);
  EXPECT_EQ(last_level_from("cache"), LastLevel::fast);
  EXPECT_EQ(last_level_from("memory"), LastLevel::slow);
  EXPECT_EQ(message_of([] { last_level_from("Cache"); }),
            "bnorm: BNORM_LAST_LEVEL asks for \"Cache\" (expected \"cache\" or \"memory\", or "
            "unset to probe)");
}

// The probe's sweep computes its map with either kind of store, the probe times nothing where
// the last level is not larger than twice the L2s, and it answers for this machine.
TEST(CacheSizes, TheLastLevelProbe) {
  constexpr std::size_t n = 1024;
  alignas(64) float x[n], y[n];
  for (std::size_t i = 0; i < n; ++i) x[i] = static_cast<float>(i) - 100.0f;
  for (const bool stream : {false, true}) {
    std::fill(y, y + n, -1.0f);
    bnorm::detail::probe_sweep(x, y, 64, n, stream);
    for (std::size_t i = 0; i < n; ++i)
      ASSERT_EQ(y[i], i < 64 ? -1.0f : x[i] * 0.5f + 0.25f) << i << (stream ? " streamed" : "");
  }
  EXPECT_TRUE(bnorm::detail::probe_last_level_fast(std::size_t{1} << 20, std::size_t{4} << 20, 2));
  std::printf("this machine's last level: %s\n",
              bnorm::detail::last_level_fast(kMachines[0]) ? "a cache" : "no faster than memory");
}

template <class T>
class PlanCaches : public ::testing::Test {};
TYPED_TEST_SUITE(PlanCaches, FloatTypes, );  // the empty argument: -Wpedantic

// One shape's inputs, made once and run under every machine's sizes.
template <class T>
struct Inputs {
  Inputs(const Shape& s, Layout layout)
      : x(s, layout),
        dy(s, layout),
        w(random_array<T>(s[1], 9, 0.5, 2.0)),
        b(random_array<T>(s[1], 10, -1.0, 1.0)),
        rm(random_array<T>(s[1], 11, -1.0, 1.0)),
        rv(random_array<T>(s[1], 12, 0.5, 2.0)) {
    x.set(random_values<T>(s, 7, 3.0, 2.0));
    dy.set(random_values<T>(s, 8));
  }
  Buffer<T> x, dy;
  Eigen::Array<T, Eigen::Dynamic, 1> w, b, rm, rv;
};

// Every pass's outputs under one machine's sizes, as bytes.
template <class T>
std::vector<std::vector<T>> outputs_under(const CacheSizes& m, const Inputs<T>& in) {
  const CacheSizesScope scope(m);
  const Shape& s = in.x.shape();
  const Layout layout = in.x.layout();
  Buffer<T> y(s, layout), dx(s, layout);
  Eigen::Array<T, Eigen::Dynamic, 1> dw, db;
  std::vector<std::vector<T>> out;
  const auto stats = bnorm::fused::forward_training<T>(in.x.cview(), in.w, in.b, 1e-5, y.view());
  out.push_back(y.values());
  bnorm::fused::backward<T>(in.x.cview(), in.dy.cview(), in.w, stats, dx.view(), dw, db);
  out.push_back(dx.values());
  out.emplace_back(dw.data(), dw.data() + dw.size());
  out.emplace_back(db.data(), db.data() + db.size());
  bnorm::fused::forward_inference<T>(in.x.cview(), in.w, in.b, in.rm, in.rv, 1e-5, y.view());
  out.push_back(y.values());
  // y = relu(BN(x) + r) and its gradients, in training and in eval (the gated passes)
  bnorm::Options relu;
  relu.activation = bnorm::Activation::relu;
  bnorm::BatchNorm2d<T> bn(s[1], relu);
  bn.weight() = in.w;
  bn.bias() = in.b;
  Buffer<T> dr(s, layout);
  for (const bool training : {true, false}) {
    bn.train(training);
    const auto saved = bn.forward(in.x.cview(), in.dy.cview(), y.view());
    out.push_back(y.values());
    bn.backward(saved, in.dy.cview(), dx.view(), dr.view());
    out.push_back(dx.values());
    out.push_back(dr.values());
  }
  return out;
}

TYPED_TEST(PlanCaches, SameBitsForAnyCacheSizes) {
  using T = TypeParam;
  for (const Shape& s : kShapes)
    for (const Layout layout : {Layout::nchw, Layout::channels_last}) {
      const Inputs<T> in(s, layout);
      const auto here = outputs_under<T>(kMachines[0], in);
      for (std::size_t k = 1; k < std::size(kMachines); ++k) {
        const CacheSizes& m = kMachines[k];
        const auto there = outputs_under<T>(m, in);
        for (std::size_t i = 0; i < here.size(); ++i)
          EXPECT_TRUE(same_bits(here[i], there[i]))
              << to_string(s) << " " << name(layout) << " output " << i << " under L2 " << m.l2
              << ", last level " << m.last_level << " (" << static_cast<int>(m.speed) << ")";
      }
    }
}

}  // namespace
}  // namespace bnorm_test
