/// @file detail/small_buffer.hpp
/// @brief SmallBuffer: the per-channel scratch of one kernel call, held inline up to a few
/// channels and on the heap beyond.
///
/// A call on a tiny tensor (2x2x2x2 inference: about 130 ns) spent a third of its time in
/// malloc and free for its per-channel constants, seven allocations of a few bytes each. Held
/// inline, small tensors allocate nothing; large ones allocate once per buffer, as before.
#pragma once

#include <cstddef>
#include <cstring>
#include <memory>
#include <new>
#include <type_traits>

namespace bnorm::detail {

/// A fixed-size array of n zeroed T, inline when n <= N. T is trivially copyable and zero in
/// all its bytes when value-initialised (floats, doubles, aggregates of them). The storage is
/// raw bytes zeroed by memset for the n elements in use: an array of T with default member
/// initialisers was zeroed whole by every construction, and a fill of T() compiled for the
/// baseline was a `rep stos` per element (2x2x2x2 training forward: a fifth of its time).
template <class T, std::size_t N = 16>
class SmallBuffer {
  static_assert(std::is_trivially_copyable_v<T>, "SmallBuffer holds plain values");
  static_assert(alignof(T) <= alignof(std::max_align_t), "heap storage is new unsigned char[]");

 public:
  SmallBuffer() = default;
  explicit SmallBuffer(std::size_t n) { resize(n); }
  SmallBuffer(const SmallBuffer& other) { assign(other); }
  SmallBuffer& operator=(const SmallBuffer& other) {
    if (this != &other) assign(other);
    return *this;
  }
  SmallBuffer(SmallBuffer&& other) noexcept { take(other); }
  SmallBuffer& operator=(SmallBuffer&& other) noexcept {
    if (this != &other) take(other);
    return *this;
  }
  ~SmallBuffer() = default;

  /// n zeroed elements; the old ones are dropped.
  void resize(std::size_t n) {
    heap_.reset(n > N ? new unsigned char[n * sizeof(T)] : nullptr);
    size_ = n;
    std::memset(static_cast<void*>(data()), 0, n * sizeof(T));
  }

  T* data() { return std::launder(reinterpret_cast<T*>(heap_ ? heap_.get() : inline_)); }
  const T* data() const {
    return std::launder(reinterpret_cast<const T*>(heap_ ? heap_.get() : inline_));
  }
  std::size_t size() const { return size_; }
  T& operator[](std::size_t i) { return data()[i]; }
  const T& operator[](std::size_t i) const { return data()[i]; }
  T* begin() { return data(); }
  T* end() { return data() + size_; }
  const T* begin() const { return data(); }
  const T* end() const { return data() + size_; }

 private:
  void assign(const SmallBuffer& other) {
    resize(other.size_);
    std::memcpy(static_cast<void*>(data()), other.data(), size_ * sizeof(T));
  }
  void take(SmallBuffer& other) {
    if (other.heap_) {
      heap_ = std::move(other.heap_);
      size_ = other.size_;
    } else {
      assign(other);
    }
    other.size_ = 0;
  }

  alignas(T) unsigned char inline_[N * sizeof(T)];  // the first size_ elements are in use
  std::unique_ptr<unsigned char[]> heap_;
  std::size_t size_ = 0;
};

}  // namespace bnorm::detail
