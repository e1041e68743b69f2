/// @file detail/per_isa/lane_sum.hpp
/// @brief A sum in double with a fixed number of lanes, so its order depends on the shape only.

/// Accumulates values into kLanes double accumulators: element i of a row goes to lane i % kLanes.
/// The lanes persist across rows (no horizontal reduction per row, which matters for 7x7 planes),
/// and total() adds them pairwise. The order of every addition is fixed by the row lengths alone,
/// so the result is the same bits whatever thread computes it, and the explicit lanes let the
/// compiler vectorise without reassociating.
class LaneSum {
 public:
  static constexpr int kLanes = 16;

  /// acc[i % kLanes] += g(i) for i in [0, len).
  template <class G>
  void add(index_t len, const G& g) {
    index_t i = 0;
    // lane[j] += g(i + j), kLanes at a time
    for (; i + kLanes <= len; i += kLanes)
      for (int j = 0; j < kLanes; ++j) lane_[j] += g(i + j);
    for (int j = 0; i < len; ++i, ++j) lane_[j] += g(i);
  }

  double total() const {
    double t[kLanes];
    for (int j = 0; j < kLanes; ++j) t[j] = lane_[j];
    for (int width = kLanes / 2; width > 0; width /= 2)
      for (int j = 0; j < width; ++j) t[j] += t[j + width];
    return t[0];
  }

 private:
  double lane_[kLanes] = {};
};
