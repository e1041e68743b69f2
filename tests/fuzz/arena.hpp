// Memory: buffers with guard bytes, views placed in them, snapshots; and the output rules
// (Verdict) worked out by brute force on the placed views.
#pragma once

#include <bnorm/bnorm.hpp>

#include "fuzz_input.hpp"
#include "view_oracle.hpp"

#include <algorithm>
#include <cstring>
#include <iterator>
#include <vector>

namespace {

/// A view placed in a buffer: offset (elements from the buffer's first element) and layout.
struct Placed {
  int buffer = -1;
  index_t offset = 0;
  Shape extents{}, strides{};
  bool known_unique = false;
  index_t count() const { return extents[0] * extents[1] * extents[2] * extents[3]; }
  std::vector<index_t> elements() const { return offsets(extents, strides, offset); }
  bool same_strides(const Placed& o) const {
    if (extents != o.extents) return false;
    for (std::size_t r = 0; r < 4; ++r)
      if (extents[r] > 1 && strides[r] != o.strides[r]) return false;
    return true;
  }
};

template <class T>
class Arena {
 public:
  using Snapshot = std::vector<std::vector<unsigned char>>;

  int add(index_t elements) {
    std::vector<unsigned char> b(2 * kGuard + static_cast<std::size_t>(elements) * sizeof(T));
    const auto salt = static_cast<unsigned char>(buffers_.size() * 37 + 11);
    for (std::size_t j = 0; j < b.size(); ++j)
      b[j] = static_cast<unsigned char>((j * 131 + 17) ^ salt);
    buffers_.push_back(std::move(b));
    return static_cast<int>(buffers_.size()) - 1;
  }
  T* base(int b) {
    return reinterpret_cast<T*>(buffers_[static_cast<std::size_t>(b)].data() + kGuard);
  }
  index_t elements(int b) const {
    return static_cast<index_t>((buffers_[static_cast<std::size_t>(b)].size() - 2 * kGuard) /
                                sizeof(T));
  }
  template <class U = T>
  bnorm::NCHWView<U> view(const Placed& p) {
    T* data = p.count() == 0 && p.buffer < 0 ? nullptr : base(p.buffer) + p.offset;
    return bnorm::NCHWView<U>(data, p.extents, p.strides);
  }
  bnorm::NCHWView<const T> cview(const Placed& p) { return view<const T>(p); }
  Snapshot snapshot() const { return buffers_; }
  void restore(const Snapshot& s) { buffers_ = s; }

  /// Logical values of a view, from the live buffers or from a snapshot.
  std::vector<T> read(const Placed& p, const Snapshot* from = nullptr) const {
    std::vector<T> out;
    if (p.count() == 0) return out;
    const auto& bytes = from ? (*from)[static_cast<std::size_t>(p.buffer)]
                             : buffers_[static_cast<std::size_t>(p.buffer)];
    for (index_t n = 0; n < p.extents[0]; ++n)
      for (index_t c = 0; c < p.extents[1]; ++c)
        for (index_t h = 0; h < p.extents[2]; ++h)
          for (index_t w = 0; w < p.extents[3]; ++w) {
            const index_t o = p.offset + n * p.strides[0] + c * p.strides[1] + h * p.strides[2] +
                              w * p.strides[3];
            T v;
            std::memcpy(&v, bytes.data() + kGuard + static_cast<std::size_t>(o) * sizeof(T),
                        sizeof(T));
            out.push_back(v);
          }
    return out;
  }
  void write(const Placed& p, const std::vector<T>& values) {
    if (p.count() == 0) return;
    std::size_t i = 0;
    for (index_t n = 0; n < p.extents[0]; ++n)
      for (index_t c = 0; c < p.extents[1]; ++c)
        for (index_t h = 0; h < p.extents[2]; ++h)
          for (index_t w = 0; w < p.extents[3]; ++w)
            base(p.buffer)[p.offset + n * p.strides[0] + c * p.strides[1] + h * p.strides[2] +
                           w * p.strides[3]] = values[i++];
  }

  /// Every byte of every buffer equals `s`, except the elements of the output views `outs`.
  void expect_unchanged_except(const Snapshot& s, const std::vector<const Placed*>& outs,
                               const char* what) const {
    FUZZ_CHECK(s.size() == buffers_.size(), what);
    for (std::size_t b = 0; b < buffers_.size(); ++b) {
      std::vector<char> written(buffers_[b].size(), 0);
      for (const Placed* p : outs)
        if (p && p->buffer == static_cast<int>(b))
          for (const index_t o : p->elements())
            std::fill_n(written.begin() + static_cast<std::ptrdiff_t>(kGuard) +
                            static_cast<std::ptrdiff_t>(o) * static_cast<std::ptrdiff_t>(sizeof(T)),
                        sizeof(T), 1);
      for (std::size_t j = 0; j < buffers_[b].size(); ++j)
        if (!written[j] && buffers_[b][j] != s[b][j])
          fail(concat(what, ": byte ", j, " of buffer ", b, " changed (guard ", kGuard,
                      " bytes, then elements of ", sizeof(T), " bytes)"));
    }
  }

 private:
  Snapshot buffers_;
};

/// Output rules, worked out by brute force: whether the library must reject `out` as an output
/// beside the input `in` (a non-unique layout, or a partial overlap), and whether it must accept.
struct Verdict {
  bool must_reject = false, sure = true;
  void reject() { must_reject = true; }
  void unsure() { sure = false; }
  void merge(const Verdict& o) {
    must_reject |= o.must_reject;
    sure &= o.sure;
  }
};
Verdict output_unique(const Placed& out) {
  Verdict v;
  if (out.count() == 0) return v;
  const auto o = out.elements();
  if (std::adjacent_find(o.begin(), o.end()) != o.end())
    v.reject();
  else if (!out.known_unique)
    v.unsure();  // unique, but the library's test is only sufficient
  return v;
}
Verdict output_vs_input(const Placed& out, const Placed& in) {
  Verdict v;
  if (out.count() == 0 || in.count() == 0 || out.buffer != in.buffer) return v;
  const bool same = out.offset == in.offset && out.same_strides(in);
  if (same) return v;  // in place
  const auto a = out.elements(), b = in.elements();
  std::vector<index_t> common;
  std::set_intersection(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(common));
  const bool ranges_meet = !(a.back() < b.front() || b.back() < a.front());
  if (!common.empty() || (ranges_meet && !out.same_strides(in))) v.reject();
  return v;
}

}  // namespace
