// bfloat16 and half (IEEE binary16) to and from float (detail/float16.hpp, the pack forms in
// per_isa/float16_packs.hpp): the scalar functions against a reference that decodes the formats
// from their fields in double and rounds by comparing distances, then every kernel set this CPU
// runs against the scalar functions, bit for bit (the AVX2 and AVX-512 sets use F16C for half).
#include <gtest/gtest.h>

#include <algorithm>
#include <cfenv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

// The tests call each kernel set's conversions themselves (bnorm::detail::<set>).
#define BNORM_DETAIL_COMPILE_KERNELS 1
#include <bnorm/bnorm.hpp>

namespace bnorm_test {
namespace {

using bnorm::detail::bits_float;
using bnorm::detail::float_bits;

// The value of a 16-bit format with `mbits` mantissa bits and exponent bias `bias`, from its
// fields; the all-ones exponent decodes as the next power of two (the value rounding reaches
// past the largest finite one). NaN payloads are checked apart.
double decode(std::uint16_t b, int mbits, int bias) {
  const int e = b >> mbits & ((1 << (15 - mbits)) - 1), m = b & ((1 << mbits) - 1);
  const double v =
      e == 0 ? std::ldexp(m, 1 - bias - mbits) : std::ldexp((1 << mbits) + m, e - bias - mbits);
  return b & 0x8000 ? -v : v;
}
double decode_bf16(std::uint16_t b) {
  return decode(b, 7, 127);
}
double decode_half(std::uint16_t b) {
  return decode(b, 10, 15);
}

// The nearest of the format's values to non-NaN f, ties to the even bit pattern: the two
// neighbours of |f| among the codes 0 .. inf are found by bisection on their decoded values
// (which grow with the code).
std::uint16_t nearest(float f, double (*dec)(std::uint16_t), std::uint16_t inf) {
  const double a = std::fabs(static_cast<double>(f));
  std::uint16_t r;
  if (a >= dec(inf)) {
    r = inf;
  } else {
    std::uint16_t lo = 0, hi = inf;  // dec(lo) <= a < dec(hi)
    while (hi - lo > 1) {
      const auto mid = static_cast<std::uint16_t>((lo + hi) / 2);
      (dec(mid) <= a ? lo : hi) = mid;
    }
    const double dlo = a - dec(lo), dhi = dec(hi) - a;
    r = dlo < dhi || (dlo == dhi && lo % 2 == 0) ? lo : hi;
  }
  return static_cast<std::uint16_t>(r | (std::signbit(f) ? 0x8000 : 0));
}

// Floats that test the rounding: each 16-bit pattern as a float's top half with lows that
// sit on, next to and between the rounding boundaries of both formats; the midpoints between
// neighbouring halves and their float neighbours; NaNs of many payloads; random floats.
std::vector<float> rounding_inputs() {
  std::vector<float> v;
  const std::uint32_t lows[] = {0x0000, 0x0001, 0x0FFF, 0x1000, 0x1001, 0x1FFF, 0x2000, 0x2001,
                                0x3000, 0x5FFF, 0x6000, 0x7FFF, 0x8000, 0x8001, 0xA000, 0xFFFF};
  for (std::uint32_t top = 0; top < 0x10000; ++top)
    for (std::uint32_t low : lows) v.push_back(bits_float(top << 16 | low));
  for (std::uint32_t h = 0; h < 0x7C00; ++h) {
    const auto mid = static_cast<float>((decode_half(static_cast<std::uint16_t>(h)) +
                                         decode_half(static_cast<std::uint16_t>(h + 1))) /
                                        2);
    for (float f : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e30f)})
      v.insert(v.end(), {f, -f});
  }
  std::mt19937 gen(16);
  for (int i = 0; i < 200000; ++i) v.push_back(bits_float(static_cast<std::uint32_t>(gen())));
  // ties and near-ties of half's subnormals and its overflow; also a last partial pack
  for (float f : {0x1p-25f, 3 * 0x1p-26f, 3 * 0x1p-25f, 65520.0f, 0x1p-14f}) v.push_back(f);
  return v;
}

bool is_nan_bits(std::uint16_t b, int mbits) {
  const int e = b >> mbits & ((1 << (15 - mbits)) - 1);
  return e == (1 << (15 - mbits)) - 1 && (b & ((1 << mbits) - 1)) != 0;
}

// A NaN narrowed: a NaN of f's sign, quiet, with the top mantissa bits of f's payload.
void expect_nan_kept(float f, std::uint16_t got, int mbits) {
  const std::uint32_t u = float_bits(f);
  const std::uint32_t want_payload = (u & 0x7FFFFFu) >> (23 - mbits) | 1u << (mbits - 1);
  EXPECT_TRUE(is_nan_bits(got, mbits)) << std::hex << u << " -> " << got;
  EXPECT_EQ(got >> 15, u >> 31) << std::hex << u;
  EXPECT_EQ(got & ((1u << mbits) - 1), want_payload) << std::hex << u << " -> " << got;
}

TEST(Float16, WideningIsExactForEveryCode) {
  for (std::uint32_t c = 0; c < 0x10000; ++c) {
    const auto b = static_cast<std::uint16_t>(c);
    for (const bool half : {false, true}) {
      const int mbits = half ? 10 : 7;
      const float f = half ? bnorm::detail::half_to_float(b) : bnorm::detail::bf16_to_float(b);
      if (is_nan_bits(b, mbits)) {
        // bfloat16: the code as the float's top half; half: a NaN of the same sign with the
        // code's payload on top, made quiet (as F16C's vcvtph2ps)
        const std::uint32_t want =
            half ? (c & 0x8000u) << 16 | 0x7F800000u | ((c & 0x3FFu) | 0x200u) << 13 : c << 16;
        EXPECT_EQ(float_bits(f), want) << (half ? "half " : "bf16 ") << std::hex << c;
        continue;
      }
      const bool inf = (c & 0x7FFF) == (half ? 0x7C00u : 0x7F80u);
      const double want =
          inf ? (c & 0x8000 ? -HUGE_VAL : HUGE_VAL) : (half ? decode_half(b) : decode_bf16(b));
      EXPECT_EQ(static_cast<double>(f), want) << (half ? "half " : "bf16 ") << std::hex << c;
      EXPECT_EQ(std::signbit(f), (c & 0x8000) != 0) << std::hex << c;  // -0 stays -0
    }
  }
}

TEST(Float16, NarrowingRoundsToNearestEven) {
  for (float f : rounding_inputs()) {
    const std::uint16_t b = bnorm::detail::float_to_bf16(f), h = bnorm::detail::float_to_half(f);
    if (std::isnan(f)) {
      expect_nan_kept(f, b, 7);
      expect_nan_kept(f, h, 10);
      continue;
    }
    EXPECT_EQ(b, nearest(f, decode_bf16, 0x7F80)) << std::hexfloat << f;
    EXPECT_EQ(h, nearest(f, decode_half, 0x7C00)) << std::hexfloat << f;
  }
}

// Each kernel set's pack conversions (bnorm::detail::<set>::float16_to_float and
// float_to_float16) against the scalar functions, bit for bit, on lengths with a last partial
// pack; the sets this CPU lacks are reported as skipped.
struct KernelSet {
  const char* name;
  bnorm::detail::Isa isa;
  void (*widen)(bool, const std::uint16_t*, float*, bnorm::index_t);
  void (*narrow)(bool, const float*, std::uint16_t*, bnorm::index_t);
};
std::vector<KernelSet> kernel_sets() {
  namespace d = bnorm::detail;
  std::vector<KernelSet> sets{
      {"sse2", d::Isa::baseline, d::baseline::float16_to_float, d::baseline::float_to_float16}};
#if BNORM_DETAIL_HAS_AVX2_SET
  sets.push_back({"avx2", d::Isa::avx2, d::avx2::float16_to_float, d::avx2::float_to_float16});
#endif
#if BNORM_DETAIL_HAS_AVX512_SET
  sets.push_back(
      {"avx512", d::Isa::avx512, d::avx512::float16_to_float, d::avx512::float_to_float16});
#endif
  return sets;
}

// Every conversion of every set, and the scalar ones, under a rounding mode.
struct Converted {
  std::vector<float> wide;
  std::vector<std::uint16_t> narrow;
  bool operator==(const Converted& o) const {
    return narrow == o.narrow &&
           std::equal(wide.begin(), wide.end(), o.wide.begin(), o.wide.end(),
                      [](float a, float b) { return float_bits(a) == float_bits(b); });
  }
};
Converted convert_all(const std::vector<KernelSet>& sets, const std::vector<std::uint16_t>& codes,
                      const std::vector<float>& floats) {
  Converted out;
  for (const bool half : {false, true}) {
    for (const KernelSet& set : sets) {
      std::vector<float> w(codes.size());
      std::vector<std::uint16_t> n(floats.size());
      set.widen(half, codes.data(), w.data(), static_cast<bnorm::index_t>(codes.size()));
      set.narrow(half, floats.data(), n.data(), static_cast<bnorm::index_t>(floats.size()));
      out.wide.insert(out.wide.end(), w.begin(), w.end());
      out.narrow.insert(out.narrow.end(), n.begin(), n.end());
    }
    for (std::uint16_t c : codes)
      out.wide.push_back(half ? bnorm::detail::half_to_float(c) : bnorm::detail::bf16_to_float(c));
    for (float f : floats)
      out.narrow.push_back(half ? bnorm::detail::float_to_half(f)
                                : bnorm::detail::float_to_bf16(f));
  }
  return out;
}

// The conversions are integer arithmetic (and F16C's fixed rounding): the same bits whatever
// rounding mode the program set.
TEST(Float16, BitsDoNotDependOnTheRoundingMode) {
  std::vector<KernelSet> sets;
  for (const KernelSet& set : kernel_sets())
    if (bnorm::detail::cpu_runs(set.isa)) sets.push_back(set);
  std::vector<std::uint16_t> codes(0x10000);
  for (std::size_t i = 0; i < codes.size(); ++i) codes[i] = static_cast<std::uint16_t>(i);
  const std::vector<float> floats = rounding_inputs();
  const Converted nearest_even = convert_all(sets, codes, floats);
  for (const int mode : {FE_UPWARD, FE_DOWNWARD, FE_TOWARDZERO}) {
    ASSERT_EQ(std::fesetround(mode), 0);
    const Converted other = convert_all(sets, codes, floats);
    std::fesetround(FE_TONEAREST);
    EXPECT_TRUE(other == nearest_even) << "rounding mode " << mode;
  }
}

TEST(Float16, EveryKernelSetGivesTheScalarBits) {
  std::vector<std::uint16_t> codes(0x10000 + 5);
  for (std::size_t i = 0; i < codes.size(); ++i) codes[i] = static_cast<std::uint16_t>(i * 40503u);
  const std::vector<float> floats = rounding_inputs();
  std::string ran;
  for (const KernelSet& set : kernel_sets()) {
    if (!bnorm::detail::cpu_runs(set.isa)) {
      std::printf("%s: skipped, not on this CPU\n", set.name);
      continue;
    }
    ran += std::string(ran.empty() ? "" : ", ") + set.name;
    for (const bool half : {false, true}) {
      const char* format = half ? "half" : "bf16";
      std::vector<float> wide(codes.size());
      set.widen(half, codes.data(), wide.data(), static_cast<bnorm::index_t>(codes.size()));
      for (std::size_t i = 0; i < codes.size(); ++i) {
        const float want =
            half ? bnorm::detail::half_to_float(codes[i]) : bnorm::detail::bf16_to_float(codes[i]);
        ASSERT_EQ(float_bits(wide[i]), float_bits(want))
            << set.name << " " << format << " code " << std::hex << codes[i];
      }
      std::vector<std::uint16_t> narrow(floats.size());
      set.narrow(half, floats.data(), narrow.data(), static_cast<bnorm::index_t>(floats.size()));
      for (std::size_t i = 0; i < floats.size(); ++i) {
        const std::uint16_t want = half ? bnorm::detail::float_to_half(floats[i])
                                        : bnorm::detail::float_to_bf16(floats[i]);
        ASSERT_EQ(narrow[i], want)
            << set.name << " " << format << " " << std::hex << float_bits(floats[i]);
      }
    }
  }
  std::printf("kernel sets compared: %s\n", ran.c_str());
}

}  // namespace
}  // namespace bnorm_test
