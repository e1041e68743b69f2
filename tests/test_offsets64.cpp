// 64-bit offsets: forward and backward on views whose element offsets pass 2^31 and 2^32, laid
// in one large anonymous mapping reserved without backing (MAP_NORESERVE), so only the pages the
// views touch become memory (a few hundred KiB of some 100 GiB of address space). x, y, dy and
// dx interleave in it, 8 elements apart, without sharing an element. Results must match the same
// data in compact buffers: an offset computed in 32 bits would land elsewhere.
#include <sys/mman.h>

#include <cerrno>
#include <cstring>

#include "test_support.hpp"

namespace bnorm_test {
namespace {

template <class T>
using Array = Eigen::Array<T, Eigen::Dynamic, 1>;

/// A private anonymous mapping of `elements` Ts, reserved but not backed until touched.
template <class T>
class Reserved {
 public:
  explicit Reserved(index_t elements) : bytes_(static_cast<std::size_t>(elements) * sizeof(T)) {
    void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p != MAP_FAILED) data_ = static_cast<T*>(p);
    error_ = p == MAP_FAILED ? errno : 0;
  }
  ~Reserved() {
    if (data_) munmap(data_, bytes_);
  }
  Reserved(const Reserved&) = delete;
  Reserved& operator=(const Reserved&) = delete;
  T* data() const { return data_; }
  std::string error() const { return std::strerror(error_); }

 private:
  std::size_t bytes_;
  T* data_ = nullptr;
  int error_ = 0;
};

/// Largest offset of a view, plus one: the elements a mapping needs.
index_t span(const Shape& e, const Shape& s) {
  index_t last = 0;
  for (std::size_t r = 0; r < 4; ++r) last += (e[r] - 1) * s[r];
  return last + 1;
}

template <class T>
class Offsets64 : public ::testing::Test {};
TYPED_TEST_SUITE(Offsets64, FloatTypes, );  // the empty argument: -Wpedantic

constexpr index_t k2to31 = index_t{1} << 31;

struct Case {
  const char* name;
  Shape extents, strides;
};
// (1) unit W stride, C stride past 2^31 and N stride past 2^32; (2) every stride that moves
// past 2^31, so even offset(0, 0, 0, 1) needs 64 bits and rows are strided. Both are unique.
const Case kCases[] = {
    {"rows contiguous", {2, 2, 2, 5}, {2 * k2to31 + 4099, k2to31 + 1031, 4103, 1}},
    {"all strides huge", {1, 2, 2, 2}, {0, 4 * k2to31 + 7, 2 * k2to31 + 3, k2to31 + 1}},
};

TYPED_TEST(Offsets64, ForwardAndBackwardMatchCompactBuffers) {
  using T = TypeParam;
  for (const Case& k : kCases)
    for (const bnorm::Variant variant : {bnorm::Variant::fused, bnorm::Variant::staged})
      for (const bool training : {true, false}) {
        SCOPED_TRACE(::testing::Message()
                     << k.name << " " << variant << (training ? " train" : " eval"));
        const Shape& e = k.extents;
        const index_t n = span(e, k.strides) + 24;
        ASSERT_GT(n, 2 * k2to31);
        Reserved<T> mem(n + 8);
        if (!mem.data())
          GTEST_SKIP() << "cannot reserve " << n * sizeof(T)
                       << " bytes of address space: " << mem.error();
        T* const base = mem.data();
        const bnorm::NCHWView<T> x(base, e, k.strides), y(base + 8, e, k.strides),
            dy(base + 16, e, k.strides), dx(base + 24, e, k.strides);
        const auto xv = random_values<T>(e, 301, 2.0), dyv = random_values<T>(e, 302);
        Buffer<T> xc(e), yc(e), dyc(e), dxc(e);
        xc.set(xv);
        dyc.set(dyv);
        std::size_t i = 0;
        for (index_t a = 0; a < e[0]; ++a)
          for (index_t c = 0; c < e[1]; ++c)
            for (index_t h = 0; h < e[2]; ++h)
              for (index_t w = 0; w < e[3]; ++w, ++i) {
                x(a, c, h, w) = xv[i];
                dy(a, c, h, w) = dyv[i];
              }
        auto make = [&] {
          bnorm::BatchNorm2d<T> bn(e[1], {1e-5, 0.1, true, true, variant});
          bn.weight() = random_array<T>(e[1], 303, 0.5, 1.5);
          bn.bias() = random_array<T>(e[1], 304, -1, 1);
          bn.running_mean() = random_array<T>(e[1], 305, 1, 3);
          bn.running_var() = random_array<T>(e[1], 306, 0.5, 2);
          bn.train(training);
          return bn;
        };
        bnorm::BatchNorm2d<T> big = make(), compact = make();
        const auto saved_big = big.forward(x, y);
        const auto saved_compact = compact.forward(xc.cview(), yc.view());
        big.backward(saved_big, dy, dx);
        compact.backward(saved_compact, dyc.cview(), dxc.view());

        std::vector<T> yv, dxv;
        for (index_t a = 0; a < e[0]; ++a)
          for (index_t c = 0; c < e[1]; ++c)
            for (index_t h = 0; h < e[2]; ++h)
              for (index_t w = 0; w < e[3]; ++w) {
                yv.push_back(y(a, c, h, w));
                dxv.push_back(dx(a, c, h, w));
              }
        // Against the compact run, and against the long-double reference (training).
        EXPECT_LE(rel_error(yv, yc.values()), tolerance<T>());
        EXPECT_LE(rel_error(dxv, dxc.values()), tolerance<T>());
        EXPECT_LE(rel_error(big.weight_grad(), compact.weight_grad()), tolerance<T>());
        EXPECT_LE(rel_error(big.bias_grad(), compact.bias_grad()), tolerance<T>());
        EXPECT_LE(rel_error(big.running_mean(), compact.running_mean()), tolerance<T>());
        EXPECT_LE(rel_error(big.running_var(), compact.running_var()), tolerance<T>());
        if (training) {
          const Reference ref = reference(e, xv, dyv, big.weight(), big.bias(), 1e-5);
          EXPECT_LE(rel_error(yv, ref.y), tolerance<T>());
          EXPECT_LE(rel_error(dxv, ref.dx), tolerance<T>());
        }
        // Elements between the views' first rows and after dx's last element stay untouched
        // (pages of zeros).
        for (const index_t i :
             {index_t{5}, index_t{7}, index_t{13}, index_t{21}, index_t{29}, index_t{31}, n, n + 7})
          EXPECT_EQ(base[i], T(0)) << "element " << i;
      }
}

}  // namespace
}  // namespace bnorm_test
