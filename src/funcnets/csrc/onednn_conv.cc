// oneDNN convolutions for XLA:CPU, as XLA FFI handlers (jax.ffi.ffi_call).
//
// Activations are NHWC (funcnets' channels-last trunk), weights OIHW (torch's), float32.
// Each call splits the batch over XLA's own intra-op thread pool and runs oneDNN
// single-threaded in every chunk. With oneDNN's own OpenMP team beside XLA's worker
// threads the train step gained nothing, and the team's threads slowed torch's in the
// same process (a torch ResNet-18 step 64 -> 90-101 ms, 2-core CPU).
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"
#include "onednn_pool.h"

namespace ffi = xla::ffi;
using dnnl::memory;
using tag = memory::format_tag;
constexpr auto f32 = memory::data_type::f32;

namespace {

using funcnets_onednn::OneThread;
using funcnets_onednn::ParallelChunks;
using funcnets_onednn::Run;

dnnl::engine& Engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

struct Geometry {
  int64_t n, h, w, c, o, kh, kw, oh, ow, sh, sw, pt, pl, pb, pr, dh, dw;
  std::string Key(int64_t batch, char kind) const {
    std::string k(1, kind);
    for (int64_t v : {batch, h, w, c, o, kh, kw, oh, ow, sh, sw, pt, pl, pb, pr, dh, dw}) k += "," + std::to_string(v);
    return k;
  }
  memory::desc Src(int64_t b) const { return memory::desc({b, c, h, w}, f32, tag::nhwc); }
  memory::desc Dst(int64_t b) const { return memory::desc({b, o, oh, ow}, f32, tag::nhwc); }
  memory::desc Wei(tag t) const { return memory::desc({o, c, kh, kw}, f32, t); }
  // oneDNN counts dilation from 0 (torch's 1)
  memory::dims Dil() const { return {dh - 1, dw - 1}; }
};

dnnl::primitive_attr UserScratchpad() {
  dnnl::primitive_attr a;
  a.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return a;
}

dnnl::convolution_forward::primitive_desc FwdPd(const Geometry& g, int64_t b) {
  return dnnl::convolution_forward::primitive_desc(
      Engine(), dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, g.Src(b), g.Wei(tag::any),
      g.Dst(b), {g.sh, g.sw}, g.Dil(), {g.pt, g.pl}, {g.pb, g.pr}, UserScratchpad());
}

// One primitive (and its descriptor) per geometry, batch chunk and direction.
struct Prim {
  dnnl::primitive prim;
  memory::desc wei, scratch;  // the weight layout the primitive wants; its scratchpad
};

std::mutex cache_mu;
std::unordered_map<std::string, std::unique_ptr<Prim>> cache;

const Prim& Get(const Geometry& g, int64_t b, char kind) {
  std::lock_guard<std::mutex> lock(cache_mu);
  auto& p = cache[g.Key(b, kind)];
  if (!p) {
    auto fwd = FwdPd(g, b);
    if (kind == 'f') {
      p.reset(new Prim{dnnl::convolution_forward(fwd), fwd.weights_desc(), fwd.scratchpad_desc()});
    } else if (kind == 'd') {
      dnnl::convolution_backward_data::primitive_desc pd(Engine(), dnnl::algorithm::convolution_direct, g.Src(b),
          g.Wei(tag::any), g.Dst(b), {g.sh, g.sw}, g.Dil(), {g.pt, g.pl}, {g.pb, g.pr}, fwd, UserScratchpad());
      p.reset(new Prim{dnnl::convolution_backward_data(pd), pd.weights_desc(), pd.scratchpad_desc()});
    } else {
      dnnl::convolution_backward_weights::primitive_desc pd(Engine(), dnnl::algorithm::convolution_direct, g.Src(b),
          g.Wei(tag::any), g.Dst(b), {g.sh, g.sw}, g.Dil(), {g.pt, g.pl}, {g.pb, g.pr}, fwd, UserScratchpad());
      p.reset(new Prim{dnnl::convolution_backward_weights(pd), pd.diff_weights_desc(), pd.scratchpad_desc()});
    }
  }
  return *p;
}

void Execute(const Prim& p, std::unordered_map<int, memory> args) {
  thread_local std::vector<char> scratch;
  size_t need = p.scratch.get_size();
  if (scratch.size() < need) scratch.resize(need);
  args.insert({DNNL_ARG_SCRATCHPAD, memory(p.scratch, Engine(), scratch.data())});
  dnnl::stream s(Engine());
  p.prim.execute(s, args);
  s.wait();
}

// Weights in the layout `want`: the OIHW buffer itself, or a reordered copy.
memory Weights(float* oihw, const Geometry& g, const memory::desc& want) {
  memory user(g.Wei(tag::oihw), Engine(), oihw);
  if (want == user.get_desc()) return user;
  memory m(want, Engine());
  dnnl::stream s(Engine());
  dnnl::reorder(user, m).execute(s, user, m);
  s.wait();
  return m;
}

int64_t ChunkSize(ffi::ThreadPool& pool, int64_t n) {
  int64_t t = std::max<int64_t>(1, std::min<int64_t>(n, pool.num_threads()));
  return (n + t - 1) / t;
}

Geometry Make(ffi::Span<const int64_t> x, ffi::Span<const int64_t> w, ffi::Span<const int64_t> y, int64_t sh, int64_t sw,
              int64_t pt, int64_t pl, int64_t pb, int64_t pr, int64_t dh, int64_t dw) {
  return Geometry{x[0], x[1], x[2], x[3], w[0], w[2], w[3], y[1], y[2], sh, sw, pt, pl, pb, pr, dh, dw};
}

#define FUNCNETS_CONV_ATTRS                                                                                  \
  .Attr<int64_t>("sh").Attr<int64_t>("sw").Attr<int64_t>("pt").Attr<int64_t>("pl").Attr<int64_t>("pb") \
      .Attr<int64_t>("pr").Attr<int64_t>("dh").Attr<int64_t>("dw")

// The forward convolution (kind 'f') or the input gradient ('d'), one batch chunk per
// task: both map rows of one NHWC buffer to rows of another through the weights.
std::string WeightsTimesChunks(ffi::ThreadPool& pool, const Geometry& g, char kind, float* w, int src_arg, float* src,
                               int dst_arg, float* dst) {
  int64_t per = ChunkSize(pool, g.n), chunks = (g.n + per - 1) / per;
  memory wm = Weights(w, g, Get(g, per, kind).wei);
  return ParallelChunks(pool, chunks, [&](int64_t i) {
    int64_t n0 = i * per, b = std::min(per, g.n - n0);
    const Prim& p = Get(g, b, kind);
    memory wk = p.wei == wm.get_desc() ? wm : Weights(w, g, p.wei);
    Execute(p, {{src_arg, memory(g.Src(b), Engine(), src + n0 * g.h * g.w * g.c)},
                {DNNL_ARG_WEIGHTS, wk},
                {dst_arg, memory(g.Dst(b), Engine(), dst + n0 * g.oh * g.ow * g.o)}});
  });
}

// y = conv(x, w)
ffi::Error Forward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w, ffi::ResultBuffer<ffi::F32> y,
                   int64_t sh, int64_t sw, int64_t pt, int64_t pl, int64_t pb, int64_t pr, int64_t dh, int64_t dw) {
  return Run("convolution", [&] {
    Geometry g = Make(x.dimensions(), w.dimensions(), y->dimensions(), sh, sw, pt, pl, pb, pr, dh, dw);
    return WeightsTimesChunks(pool, g, 'f', w.typed_data(), DNNL_ARG_SRC, x.typed_data(), DNNL_ARG_DST, y->typed_data());
  });
}

// dx = the input gradient of conv for the output gradient dy
ffi::Error BackwardData(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> dy, ffi::Buffer<ffi::F32> w,
                        ffi::ResultBuffer<ffi::F32> dx, int64_t sh, int64_t sw, int64_t pt, int64_t pl, int64_t pb,
                        int64_t pr, int64_t dh, int64_t dw) {
  return Run("convolution input gradient", [&] {
    Geometry g = Make(dx->dimensions(), w.dimensions(), dy.dimensions(), sh, sw, pt, pl, pb, pr, dh, dw);
    return WeightsTimesChunks(pool, g, 'd', w.typed_data(), DNNL_ARG_DIFF_SRC, dx->typed_data(), DNNL_ARG_DIFF_DST,
                              dy.typed_data());
  });
}

// dw = the weight gradient of conv for the input x and the output gradient dy: one
// partial sum per batch chunk, added up in OIHW.
ffi::Error BackwardWeights(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> dy,
                           ffi::ResultBuffer<ffi::F32> dw, int64_t sh, int64_t sw, int64_t pt, int64_t pl, int64_t pb,
                           int64_t pr, int64_t dh, int64_t ddw) {
  return Run("convolution weight gradient", [&] {
    Geometry g = Make(x.dimensions(), dw->dimensions(), dy.dimensions(), sh, sw, pt, pl, pb, pr, dh, ddw);
    int64_t per = ChunkSize(pool, g.n), chunks = (g.n + per - 1) / per;
    int64_t size = g.o * g.c * g.kh * g.kw;
    std::vector<float> partial((chunks - 1) * size);
    std::string error = ParallelChunks(pool, chunks, [&](int64_t i) {
      int64_t n0 = i * per, b = std::min(per, g.n - n0);
      const Prim& p = Get(g, b, 'w');
      float* out = i == 0 ? dw->typed_data() : partial.data() + (i - 1) * size;
      memory user(g.Wei(tag::oihw), Engine(), out);
      memory m = p.wei == user.get_desc() ? user : memory(p.wei, Engine());
      Execute(p, {{DNNL_ARG_SRC, memory(g.Src(b), Engine(), x.typed_data() + n0 * g.h * g.w * g.c)},
                  {DNNL_ARG_DIFF_DST, memory(g.Dst(b), Engine(), dy.typed_data() + n0 * g.oh * g.ow * g.o)},
                  {DNNL_ARG_DIFF_WEIGHTS, m}});
      if (m != user) {
        dnnl::stream s(Engine());
        dnnl::reorder(m, user).execute(s, m, user);
        s.wait();
      }
    });
    float* out = dw->typed_data();
    for (int64_t i = 1; i < chunks; ++i) {
      const float* p = partial.data() + (i - 1) * size;
      for (int64_t k = 0; k < size; ++k) out[k] += p[k];
    }
    return error;
  });
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(funcnets_conv_forward, Forward,
                              ffi::Ffi::Bind().Ctx<ffi::ThreadPool>().Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>().Ret<ffi::Buffer<ffi::F32>>() FUNCNETS_CONV_ATTRS);
XLA_FFI_DEFINE_HANDLER_SYMBOL(funcnets_conv_backward_data, BackwardData,
                              ffi::Ffi::Bind().Ctx<ffi::ThreadPool>().Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>().Ret<ffi::Buffer<ffi::F32>>() FUNCNETS_CONV_ATTRS);
XLA_FFI_DEFINE_HANDLER_SYMBOL(funcnets_conv_backward_weights, BackwardWeights,
                              ffi::Ffi::Bind().Ctx<ffi::ThreadPool>().Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>().Ret<ffi::Buffer<ffi::F32>>() FUNCNETS_CONV_ATTRS);
