/// @file detail/per_isa/grad_sums.hpp
/// @brief The backward pass's reductions: per channel sum g and sum g * (x - mean), with g = dy,
/// or g = dy gated by the forward's ReLU recomputed from x.

/// The forward's ReLU, recomputed by a backward from x: per channel the forward's scale and
/// shift, so z = (x - hi) * a + b (normalise_constants) has the forward's bits and
/// g = z <= 0 ? 0 : dy passes exactly where the forward's relu did. Null: no ReLU, g = dy.
struct Gate {
  const double* scale = nullptr;
  const double* shift = nullptr;
  bool on() const { return scale != nullptr; }
};

/// The gate's constants on channels [c0, c1) (none when it is off).
template <class T>
ChannelConstants<T, 3> gate_constants(index_t c0, index_t c1, const double* mean,
                                      const Gate& gate) {
  return gate.on() ? normalise_constants<T>(c0, c1, mean, gate.scale, gate.shift)
                   : ChannelConstants<T, 3>{};
}

/// g gated by the ReLU of z = (x - hi) * a + b: z <= 0 ? 0 : g, on scalars or packs.
template <class V, class S>
V gated(const V& x, const V& g, const S& hi, const S& a, const S& b) {
  return passed((x - hi) * a + b, g);
}

/// g of element x of channel c (j = c - c0 in the constants k): gated when the gate is on.
template <class T>
T gradient_of(const Gate& gate, const ChannelConstants<T, 3>& k, std::size_t j, T x, T g) {
  return gate.on() ? gated(x, g, k[0][j], k[1][j], k[2][j]) : g;
}

#if defined(BNORM_HAVE_PACKS)
/// sum g and sum g * (x - mean) of one channel in 16 double lanes and, for the last values of
/// NCHW planes (reduce_planes), in the scalars t_dy and t_dy_xmu; g = dy.
struct GradSums {
  Wide dy{}, dy_xmu{}, mean{};  // mean: one per lane (NHWC) or the same in all (NCHW)
  double t_dy = 0, t_dy_xmu = 0;

  // t_dy += g; t_dy_xmu += g * (x - mean)   (NCHW: lane 0's mean is every lane's)
  template <class X, class G>
  void add_scalar(const X* x, const G* g) {
    const auto gd = static_cast<double>(to_compute(*g));
    t_dy += gd;
    t_dy_xmu += gd * (static_cast<double>(to_compute(*x)) - mean.part[0][0]);
  }

  // dy += g; dy_xmu += g * (x - mean)
  template <class T>
  void add(const T* x, const T* g) {
    accumulate(load_wide(x), load_wide(g));
  }
  // the same on the new lanes of a plane's last pack
  template <class T>
  void add(const Wide& keep, const T* x, const T* g) {
    accumulate(load_wide(x), load_wide(g) * keep);
  }
  void accumulate(const Wide& xw, const Wide& gw) {
    dy = dy + gw;
    dy_xmu = dy_xmu + gw * (xw - mean);
  }
  // (no gate constants)
  template <class T>
  void set_gate(const Pack<T>&, const Pack<T>&, const Pack<T>&) {}
};

/// GradSums of g = dy gated by the forward's ReLU (Gate), z computed from x in T's compute type
/// as the forward computed it.
template <class T>
struct GatedGradSums : GradSums {
  using C = compute_t<T>;
  Pack<C> hi{}, a{}, b{};  // per lane (NHWC) or the same in all (NCHW)

  // g = (x - hi) * a + b <= 0 ? 0 : dy, then GradSums' sums   (NCHW: lane 0 is every lane's)
  void add_scalar(const T* x, const T* dy) {
    const C g = gated(to_compute(*x), to_compute(*dy), lane(hi, 0), lane(a, 0), lane(b, 0));
    GradSums::add_scalar(x, &g);
  }
  // x and g in packs of C, then in double: each value loaded once, no trip through memory
  void add(const T* x, const T* dy) {
    const Pack<C> xp = load_pack(x);
    accumulate(widen(xp), widen(gated(xp, load_pack(dy), hi, a, b)));
  }
  void add(const Wide& keep, const T* x, const T* dy) {
    const Pack<C> xp = load_pack(x);
    accumulate(widen(xp), widen(gated(xp, load_pack(dy), hi, a, b)) * keep);
  }
  void set_gate(const Pack<C>& h, const Pack<C>& s, const Pack<C>& t) {
    hi = h;
    a = s;
    b = t;
  }
};

/// Back from registers: the sums only, the gate's constants do not change.
template <class T>
void put_back(GatedGradSums<T>& to, const GatedGradSums<T>& from) {
  copy_registers<GradSums>(to, from);
}

/// The pack sums of a GatedGradSums in registers, its constants (the mean and the gate's hi, a
/// and b) read from its slot: the same operations in the same order as GatedGradSums::add.
template <class T>
struct GatedSumsInRegisters {
  Wide dy, dy_xmu;
  const GatedGradSums<T>& k;

  // g = (x - hi) * a + b <= 0 ? 0 : dy; dy += g; dy_xmu += g * (x - mean)
  void add(const T* x, const T* g) {
    const Pack<compute_t<T>> xp = load_pack(x);
    accumulate(widen(xp), widen(gated(xp, load_pack(g), k.hi, k.a, k.b)));
  }
  void add(const Wide& keep, const T* x, const T* g) {
    const Pack<compute_t<T>> xp = load_pack(x);
    accumulate(widen(xp), widen(gated(xp, load_pack(g), k.hi, k.a, k.b)) * keep);
  }
  void accumulate(const Wide& xw, const Wide& gw) {
    dy = dy + gw;
    dy_xmu = dy_xmu + gw * (xw - k.mean);
  }
};

/// with_accumulator for the gated sums. Where the whole accumulator does not fit in 16
/// registers (AVX2: 18 of them and two scalars), its two sums go into registers and its
/// constants are read from the slot, as memory operands: worked on in place instead, every pack
/// loaded and stored both sums (ReLU's backward on 14x14 planes 1.57x the time of BN's alone).
template <class T, class F>
void with_accumulator(GatedGradSums<T>& slot, const F& f) {
  if constexpr (sizeof(GatedGradSums<T>) <= 16 * sizeof(WideVec)) {
    GatedGradSums<T> a = in_registers(slot);
    f(a);
    put_back(slot, a);
  } else {
    GatedSumsInRegisters<T> a{in_registers(slot.dy), in_registers(slot.dy_xmu), slot};
    f(a);
    copy_registers(slot.dy, a.dy);
    copy_registers(slot.dy_xmu, a.dy_xmu);
  }
}

/// f(Acc*) with Acc the accumulator of the gate, GradSums or GatedGradSums<T> when it is on (a
/// null pointer names the type: an accumulator of packs is never passed by value).
template <class T, class F>
void with_grad_sums(const Gate& gate, const F& f) {
  if (gate.on())
    f(static_cast<GatedGradSums<T>*>(nullptr));
  else
    f(static_cast<GradSums*>(nullptr));
}

/// A pack of 16 lanes of s.
template <class T>
Pack<T> splat(T s) {
  return Pack<T>{} + s;
}

/// sum_dy[j] and sum_dy_xmu[j] from the accumulators after the reduction.
template <class Acc>
void grad_sums_finish(const std::vector<Acc>& acc, double* sum_dy, double* sum_dy_xmu) {
  for (std::size_t j = 0; j < acc.size(); ++j) {
    sum_dy[j] = lane_total(acc[j].dy) + acc[j].t_dy;
    sum_dy_xmu[j] = lane_total(acc[j].dy_xmu) + acc[j].t_dy_xmu;
  }
}

/// Accumulators of channels [c0, c1) for a reduction over NCHW planes, each with its mean and
/// gate constants.
template <class Acc, class T>
std::vector<Acc> plane_grad_sums_start(index_t c0, index_t c1, const double* mean,
                                       const Gate& gate) {
  std::vector<Acc> acc(static_cast<std::size_t>(c1 - c0));
  const ChannelConstants<compute_t<T>, 3> k = gate_constants<compute_t<T>>(c0, c1, mean, gate);
  for (index_t c = c0; c < c1; ++c) {
    const auto j = static_cast<std::size_t>(c - c0);
    acc[j].mean = broadcast(mean[c]);
    if (gate.on()) acc[j].set_gate(splat(k[0][j]), splat(k[1][j]), splat(k[2][j]));
  }
  return acc;
}

/// Channels-last: sum g and sum g * (x - mean) of every channel over images [n0, n1) into
/// sum_dy[c] and sum_dy_xmu[c], vectorised along C (or, for interleaved views, along the
/// pseudo-channels of interleaved.hpp).
template <class T>
void pixel_grad_sums(const NCHWView<const T>& x, const NCHWView<const T>& dy, index_t n0,
                     index_t n1, const double* mean, double* sum_dy, double* sum_dy_xmu,
                     const Gate& gate) {
  const index_t channels = x.c();
  using C = compute_t<T>;
  const ChannelConstants<C, 3> k = gate_constants<C>(0, channels, mean, gate);
  with_grad_sums<T>(gate, [&](auto* type) {
    using Acc = std::remove_pointer_t<decltype(type)>;
    if (interleaved(x, dy)) {  // over pseudo-channels (interleaved.hpp)
      const Interleave il(x);
      std::vector<Acc> acc =
          group_accumulators<Acc>(il, mean, [](Acc& a, const Wide& m) { a.mean = m; });
      if (gate.on()) {
        const SmallBuffer<C> hi = il.spread<C>(k[0].data()), a = il.spread<C>(k[1].data()),
                             b = il.spread<C>(k[2].data());
        for (std::size_t g = 0; g < acc.size(); ++g)
          acc[g].set_gate(load_pack(&hi[g * kPackLanes]), load_pack(&a[g * kPackLanes]),
                          load_pack(&b[g * kPackLanes]));
      }
      reduce_pixels(0, il.period, n0, n1, acc.data(), il.pseudo(x), il.pseudo(dy));
      std::fill(sum_dy, sum_dy + channels, 0.0);
      std::fill(sum_dy_xmu, sum_dy_xmu + channels, 0.0);
      fold_lanes(
          il, acc, [](const Acc& a) { return a.dy; }, sum_dy);
      fold_lanes(
          il, acc, [](const Acc& a) { return a.dy_xmu; }, sum_dy_xmu);
      for_each_tail_value(
          il, n0, n1,
          [&](index_t c, const T* xv, const T* dyv) {
            // sum_dy += g; sum_dy_xmu += g * (x - mean)
            const C xc = to_compute(*xv);
            const auto g = static_cast<double>(
                gradient_of(gate, k, static_cast<std::size_t>(c), xc, to_compute(*dyv)));
            sum_dy[c] += g;
            sum_dy_xmu[c] += g * (static_cast<double>(xc) - mean[c]);
          },
          x, dy);
      return;
    }
    const index_t groups = pixel_groups(0, channels);
    std::vector<Acc> acc(static_cast<std::size_t>(groups));
    for (index_t g = 0; g < groups; ++g) {
      const index_t cg = group_start(0, channels, g);
      acc[g].mean = load_wide(mean + cg);
      if (gate.on())
        acc[g].set_gate(load_pack(k[0].data() + cg), load_pack(k[1].data() + cg),
                        load_pack(k[2].data() + cg));
    }
    reduce_pixels(0, channels, n0, n1, acc.data(), x, dy);
    store_group_lanes(0, channels, sum_dy, [&](index_t g) { return acc[g].dy; });
    store_group_lanes(0, channels, sum_dy_xmu, [&](index_t g) { return acc[g].dy_xmu; });
  });
}
#endif

/// Per-chunk backward sums of channels [c0, c1), images [n0, n1), in double:
/// sum_dy[c - c0] = sum g and sum_dy_xmu[c - c0] = sum g * (x - mean[c]), g = dy or gated.
template <class T>
void chunk_grad_sums(const NCHWView<const T>& x, const NCHWView<const T>& dy, index_t c0,
                     index_t c1, index_t n0, index_t n1, const double* mean, double* sum_dy,
                     double* sum_dy_xmu, const Gate& gate = {}) {
#if defined(BNORM_HAVE_PACKS)
  if (by_planes(x, dy)) {
    with_grad_sums<T>(gate, [&](auto* type) {
      using Acc = std::remove_pointer_t<decltype(type)>;
      std::vector<Acc> acc = plane_grad_sums_start<Acc, T>(c0, c1, mean, gate);
      reduce_planes(x.c(), c0, c1, n0, n1, acc.data(), Planes<const T>(x), Planes<const T>(dy));
      grad_sums_finish(acc, sum_dy, sum_dy_xmu);
    });
    return;
  }
#endif
  const RowLayout layout(x, dy);
  const auto width = static_cast<std::size_t>(c1 - c0);
  const ChannelConstants<compute_t<T>, 3> k = gate_constants<compute_t<T>>(c0, c1, mean, gate);
  SmallBuffer<LaneSum> s_dy(width), s_dy_xmu(width);
  with_unit_rows(layout, [&](auto unit) {
    constexpr bool U = decltype(unit)::value;
    for_each_block_row<U>(
        layout, c0, c1, n0, n1,
        [&](index_t c, auto xr, auto dyr, index_t len) {
          const double m = mean[c];
          const auto j = static_cast<std::size_t>(c - c0);
          const auto g = [&](index_t i) {
            return static_cast<double>(
                gradient_of(gate, k, j, to_compute(xr[i]), to_compute(dyr[i])));
          };
          // sum_dy += g
          s_dy[j].add(len, g);
          // sum_dy_xmu += g * (x - mean)
          s_dy_xmu[j].add(
              len, [&](index_t i) { return g(i) * (static_cast<double>(to_compute(xr[i])) - m); });
        },
        x, dy);
  });
  for (index_t c = c0; c < c1; ++c) {
    sum_dy[c - c0] = s_dy[c - c0].total();
    sum_dy_xmu[c - c0] = s_dy_xmu[c - c0].total();
  }
}

/// Backward sums of every channel, chunk results added left to right.
template <class T>
void channel_grad_sums(const NCHWView<const T>& x, const NCHWView<const T>& dy, const Plan& p,
                       const double* mean, double* sum_dy, double* sum_dy_xmu,
                       const Gate& gate = {}) {
  std::fill(sum_dy, sum_dy + p.channels, 0.0);
  std::fill(sum_dy_xmu, sum_dy_xmu + p.channels, 0.0);
  if (p.chunks == 0) return;
#if defined(BNORM_HAVE_PACKS)
  if (by_pixels(x, dy)) {  // channels-last: added in image order
    const auto channels = static_cast<std::size_t>(p.channels);
    std::vector<double> parts(2 * channels * static_cast<std::size_t>(p.items()));
    parallel_for(
        p.items(),
        [&](index_t k) {
          double* part = &parts[2 * channels * static_cast<std::size_t>(k)];
          pixel_grad_sums(x, dy, p.item_begin(k), p.item_end(k), mean, part, part + channels, gate);
        },
        p.threads);
    for (std::size_t k = 0; k < parts.size(); k += 2 * channels)
      for (std::size_t c = 0; c < channels; ++c) {
        sum_dy[c] += parts[k + c];
        sum_dy_xmu[c] += parts[k + channels + c];
      }
    return;
  }
#endif
  std::vector<double> parts(static_cast<std::size_t>(2 * p.channels * p.chunks));
  auto part = [&](index_t k) { return parts.data() + 2 * k * p.channels; };
  parallel_for(
      p.blocks * p.chunks,
      [&](index_t item) {
        const index_t b = item / p.chunks, k = item % p.chunks;
        const index_t c0 = p.block_begin(b);
        chunk_grad_sums(x, dy, c0, p.block_end(b), p.chunk_begin(k), p.chunk_end(k), mean,
                        part(k) + c0, part(k) + p.channels + c0, gate);
      },
      p.threads);
  for (index_t k = 0; k < p.chunks; ++k)
    for (index_t c = 0; c < p.channels; ++c) {
      sum_dy[c] += part(k)[c];
      sum_dy_xmu[c] += part(k)[p.channels + c];
    }
}
