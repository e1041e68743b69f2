// oneDNN's batch_normalization primitives, float32, in plain NCHW and in the layouts one of which
// is its fastest on a given machine: blocked nChw16c (AVX-512), nChw8c (AVX2: oneDNN 2.6 has no
// AVX2 kernel for 16c blocks and falls back to reference code) and nhwc. Inputs in another layout
// than NCHW are reordered once, outside the timed loops. The same over bf16 and f16 data (f32
// scale, shift and statistics) for bnorm_bench_16bit, wherever oneDNN implements them.

#include <benchmark/benchmark.h>

#include <oneapi/dnnl/dnnl.hpp>

#include <memory>
#include <string>
#include <unordered_map>

#include "passes.hpp"
#include "peers.hpp"
#include "registration.hpp"
#include "shapes.hpp"
#include "workspace.hpp"

namespace bnorm_bench {
namespace {

using dnnl::memory;
using bn_fwd = dnnl::batch_normalization_forward;
using bn_bwd = dnnl::batch_normalization_backward;

constexpr float kEps = 1e-5f;

dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// Separate scale and shift arrays (2.x deprecates the packed use_scale_shift).
const dnnl::normalization_flags kAffine =
    dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift;

// Everything oneDNN needs for one shape in one layout: primitives and memories, with the
// blocked copies of x and dy made here rather than in the timed loop.
struct Case {
  Case(Workspace& ws, memory::format_tag layout, memory::data_type type)
      : shape(ws.shape), generation(ws.generation), tag(layout), data_type(type) {
    const Shape& s = ws.shape;
    dnnl::engine& eng = cpu_engine();
    dnnl::stream strm(eng);
    const memory::dims dims{s.n, s.c, s.h, s.w};
    const memory::desc plain(dims, memory::data_type::f32, memory::format_tag::nchw);
    const memory::desc data(dims, type, layout);
    // float32 NCHW runs on the shared buffers; another layout or type gets its own, converted
    const bool shared = layout == memory::format_tag::nchw && type == memory::data_type::f32;
    const memory::desc channel({s.c}, memory::data_type::f32, memory::format_tag::x);

    const auto fwd_train_pd = bn_fwd::primitive_desc(
        bn_fwd::desc(dnnl::prop_kind::forward_training, data, kEps, kAffine), eng);
    const auto fwd_infer_pd =
        bn_fwd::primitive_desc(bn_fwd::desc(dnnl::prop_kind::forward_inference, data, kEps,
                                            kAffine | dnnl::normalization_flags::use_global_stats),
                               eng);
    const auto bwd_pd = bn_bwd::primitive_desc(
        bn_bwd::desc(dnnl::prop_kind::backward, data, data, kEps, kAffine), eng, fwd_train_pd);
    fwd_train = bn_fwd(fwd_train_pd);
    fwd_infer = bn_fwd(fwd_infer_pd);
    bwd = bn_bwd(bwd_pd);

    const auto input = [&](float* p) {
      if (shared) return memory(plain, eng, p);
      memory blocked(data, eng);
      memory user(plain, eng, p);
      dnnl::reorder(user, blocked).execute(strm, user, blocked);
      return blocked;
    };
    const auto output = [&](float* p) {
      return shared ? memory(plain, eng, p) : memory(data, eng);
    };
    src = input(ws.x.data());
    diff_dst = input(ws.dy.data());
    dst = output(ws.y.data());
    diff_src = output(ws.dx.data());
    strm.wait();

    scale = memory(channel, eng, ws.weight.data());
    shift = memory(channel, eng, ws.bias.data());
    running_mean = memory(channel, eng, ws.running_mean.data());
    running_var = memory(channel, eng, ws.running_var.data());
    batch_mean = memory(channel, eng);
    batch_var = memory(channel, eng);
    diff_scale = memory(channel, eng);
    diff_shift = memory(channel, eng);
    if (fwd_train_pd.workspace_desc().get_size() > 0)
      work = memory(fwd_train_pd.workspace_desc(), eng);
  }

  void forward_training(dnnl::stream& strm) {
    std::unordered_map<int, memory> args{
        {DNNL_ARG_SRC, src},     {DNNL_ARG_DST, dst},         {DNNL_ARG_SCALE, scale},
        {DNNL_ARG_SHIFT, shift}, {DNNL_ARG_MEAN, batch_mean}, {DNNL_ARG_VARIANCE, batch_var}};
    if (work) args.insert({DNNL_ARG_WORKSPACE, work});
    fwd_train.execute(strm, args);
  }
  void forward_inference(dnnl::stream& strm) {
    fwd_infer.execute(strm, {{DNNL_ARG_SRC, src},
                             {DNNL_ARG_DST, dst},
                             {DNNL_ARG_SCALE, scale},
                             {DNNL_ARG_SHIFT, shift},
                             {DNNL_ARG_MEAN, running_mean},
                             {DNNL_ARG_VARIANCE, running_var}});
  }
  void backward(dnnl::stream& strm) {
    // 2.6 wants the shift among the backward arguments too, though dx does not depend on it.
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, src},
                                         {DNNL_ARG_DIFF_DST, diff_dst},
                                         {DNNL_ARG_MEAN, batch_mean},
                                         {DNNL_ARG_VARIANCE, batch_var},
                                         {DNNL_ARG_SCALE, scale},
                                         {DNNL_ARG_SHIFT, shift},
                                         {DNNL_ARG_DIFF_SRC, diff_src},
                                         {DNNL_ARG_DIFF_SCALE, diff_scale},
                                         {DNNL_ARG_DIFF_SHIFT, diff_shift}};
    if (work) args.insert({DNNL_ARG_WORKSPACE, work});
    bwd.execute(strm, args);
  }

  Shape shape;
  std::uint64_t generation;
  memory::format_tag tag;
  memory::data_type data_type;
  bn_fwd fwd_train, fwd_infer;
  bn_bwd bwd;
  memory src, dst, diff_dst, diff_src, scale, shift, running_mean, running_var, batch_mean,
      batch_var, diff_scale, diff_shift, work;
};

// The case of the current workspace and layout; rebuilt when either changes. The benchmarks of
// one layout are registered together, so each shape builds each layout once.
Case& case_for(const Shape& s, memory::format_tag layout, memory::data_type type) {
  static std::unique_ptr<Case> current;
  Workspace& ws = workspace(s);
  if (!current || current->shape != s || current->generation != ws.generation ||
      current->tag != layout || current->data_type != type) {
    current.reset();
    current = std::make_unique<Case>(ws, layout, type);
  }
  return *current;
}

void run(benchmark::State& state, const Shape& s, memory::format_tag layout, Pass pass,
         memory::data_type type = memory::data_type::f32) {
  try {
    Case& c = case_for(s, layout, type);
    dnnl::stream strm(cpu_engine());
    // Backward needs the batch statistics of a training forward, computed outside the loop.
    if (pass == Pass::bwd) c.forward_training(strm);
    strm.wait();
    for (auto _ : state) {
      if (pass == Pass::fwd_train)
        c.forward_training(strm);
      else if (pass == Pass::fwd_infer)
        c.forward_inference(strm);
      else
        c.backward(strm);
      strm.wait();
    }
    set_traffic_counters(state, minimal_bytes(pass, s, type == memory::data_type::f32 ? 4 : 2));
  } catch (const dnnl::error& e) {
    state.SkipWithError(e.what());
  }
}

// The passes over one data type in the first `count` layouts of the list; implementation ids
// "onednn[_<type>]_<layout>".
void register_type(const Shape& s, memory::data_type type, const std::string& prefix,
                   std::size_t count) {
  const std::pair<memory::format_tag, const char*> layouts[] = {
      {memory::format_tag::nChw16c, "nChw16c"},
      {memory::format_tag::nChw8c, "nChw8c"},
      {memory::format_tag::nhwc, "nhwc"},
      {memory::format_tag::nchw, "nchw"}};
  for (std::size_t i = 0; i < count; ++i) {
    const auto& [layout, name] = layouts[i];
    for (Pass pass : {Pass::fwd_train, Pass::fwd_infer, Pass::bwd}) {
      const memory::format_tag tag = layout;
      add_benchmark(
          bench_name(pass_name(pass), prefix + name, s), s,
          [s, tag, pass, type](benchmark::State& state) { run(state, s, tag, pass, type); });
    }
  }
}

void register_shape(const Shape& s) {
  register_type(s, memory::data_type::f32, "onednn_", 4);
}

// Without plain NCHW: over bf16 it is oneDNN's reference code (32x256x56x56 training forward
// 184 ms against 2.7 ms in nChw16c), never its fastest.
void register_shape_16bit(const Shape& s) {
  register_type(s, memory::data_type::bf16, "onednn_bfloat16_", 3);
  register_type(s, memory::data_type::f16, "onednn_half_", 3);
}

}  // namespace

Peer onednn_peer() {
  const dnnl_version_t* v = dnnl::version();
  return {
      "onednn",
      std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch),
      &register_shape};
}

Peer onednn_16bit_peer() {
  Peer p = onednn_peer();
  p.register_shape = &register_shape_16bit;
  return p;
}

}  // namespace bnorm_bench
