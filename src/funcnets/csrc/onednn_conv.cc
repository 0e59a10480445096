// oneDNN convolutions for XLA:CPU, as XLA FFI handlers (jax.ffi.ffi_call).
//
// 1-D, 2-D and 3-D, float32; activations channels-last (funcnets' trunk) or channels-first
// (torch's NCW/NCHW/NCDHW, as oneDNN takes them without a transpose), weights torch's (O, C, *K).
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
#include <stdexcept>
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

// A convolution with 1, 2 or 3 spatial axes; activations channels-last (N, *S, C) or
// channels-first (N, C, *S), weights (O, C, *K) either way (torch's).
struct Geometry {
  bool last;  // channels-last activations
  int64_t n, c, o;
  memory::dims in, k, out, stride, lo, hi, dil;  // per spatial axis; dil counts from 1 (torch's)
  std::string Key(int64_t batch, char kind) const {
    std::string key(1, kind);
    key += last ? "l" : "f";
    for (int64_t v : {batch, c, o}) key += "," + std::to_string(v);
    for (const memory::dims* d : {&in, &k, &out, &stride, &lo, &hi, &dil})
      for (int64_t v : *d) key += "," + std::to_string(v);
    return key;
  }
  int Rank() const { return static_cast<int>(in.size()); }
  tag Act() const {
    static const tag first[] = {tag::ncw, tag::nchw, tag::ncdhw}, chlast[] = {tag::nwc, tag::nhwc, tag::ndhwc};
    return (last ? chlast : first)[Rank() - 1];
  }
  static memory::dims Dims(int64_t a, int64_t b, const memory::dims& rest) {
    memory::dims d{a, b};
    d.insert(d.end(), rest.begin(), rest.end());
    return d;
  }
  static int64_t Prod(const memory::dims& d) {
    int64_t p = 1;
    for (int64_t v : d) p *= v;
    return p;
  }
  int64_t InPerSample() const { return c * Prod(in); }
  int64_t OutPerSample() const { return o * Prod(out); }
  memory::desc Src(int64_t b) const { return memory::desc(Dims(b, c, in), f32, Act()); }
  memory::desc Dst(int64_t b) const { return memory::desc(Dims(b, o, out), f32, Act()); }
  // The activation layouts a primitive is created with: channels-last ones as they are
  // (oneDNN's direct kernels take them); channels-first ones oneDNN's choice (blocked),
  // reordered in and out as torch does: on plain NCW/NCDHW oneDNN falls back to im2col +
  // GEMM (Conv1d 64->64 over 256 steps, Conv3d 16->32 over 16^3: 2-3x slower).
  memory::desc SrcFor(int64_t b) const { return last ? Src(b) : memory::desc(Dims(b, c, in), f32, tag::any); }
  memory::desc DstFor(int64_t b) const { return last ? Dst(b) : memory::desc(Dims(b, o, out), f32, tag::any); }
  memory::desc Wei(tag t) const { return memory::desc(Dims(o, c, k), f32, t); }
  memory::desc Bias() const { return memory::desc({o}, f32, tag::a); }
  memory::desc UserWei() const {
    static const tag plain[] = {tag::oiw, tag::oihw, tag::oidhw};
    return Wei(plain[Rank() - 1]);
  }
  // oneDNN counts dilation from 0 (torch's 1)
  memory::dims Dil() const {
    memory::dims d(dil);
    for (auto& v : d) v -= 1;
    return d;
  }
};

dnnl::primitive_attr UserScratchpad() {
  dnnl::primitive_attr a;
  a.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return a;
}

// The forward convolution, with a bias (C_out,) added by the kernel as it writes y, or not.
dnnl::convolution_forward::primitive_desc FwdPd(const Geometry& g, int64_t b, bool bias = false) {
  auto prop = dnnl::prop_kind::forward_training;
  auto alg = dnnl::algorithm::convolution_direct;
  if (bias)
    return dnnl::convolution_forward::primitive_desc(Engine(), prop, alg, g.SrcFor(b), g.Wei(tag::any), g.Bias(),
                                                     g.DstFor(b), g.stride, g.Dil(), g.lo, g.hi, UserScratchpad());
  return dnnl::convolution_forward::primitive_desc(Engine(), prop, alg, g.SrcFor(b), g.Wei(tag::any), g.DstFor(b),
                                                   g.stride, g.Dil(), g.lo, g.hi, UserScratchpad());
}

// One primitive (and its descriptor) per geometry, batch chunk and direction: 'f' the
// forward convolution, 'b' the same with a bias, 'd' the input gradient, 'w' the weight gradient.
struct Prim {
  dnnl::primitive prim;
  memory::desc wei, src, dst, scratch;  // the layouts the primitive wants (src, dst: the x and y sides); its scratchpad
};

std::mutex cache_mu;
std::unordered_map<std::string, std::unique_ptr<Prim>> cache;

const Prim& Get(const Geometry& g, int64_t b, char kind) {
  std::lock_guard<std::mutex> lock(cache_mu);
  auto& p = cache[g.Key(b, kind)];
  if (!p) {
    auto fwd = FwdPd(g, b, kind == 'b');
    if (kind == 'f' || kind == 'b') {
      p.reset(new Prim{dnnl::convolution_forward(fwd), fwd.weights_desc(), fwd.src_desc(), fwd.dst_desc(),
                       fwd.scratchpad_desc()});
    } else if (kind == 'd') {
      dnnl::convolution_backward_data::primitive_desc pd(Engine(), dnnl::algorithm::convolution_direct, g.SrcFor(b),
          g.Wei(tag::any), g.DstFor(b), g.stride, g.Dil(), g.lo, g.hi, fwd, UserScratchpad());
      p.reset(new Prim{dnnl::convolution_backward_data(pd), pd.weights_desc(), pd.diff_src_desc(), pd.diff_dst_desc(),
                       pd.scratchpad_desc()});
    } else {
      dnnl::convolution_backward_weights::primitive_desc pd(Engine(), dnnl::algorithm::convolution_direct, g.SrcFor(b),
          g.Wei(tag::any), g.DstFor(b), g.stride, g.Dil(), g.lo, g.hi, fwd, UserScratchpad());
      p.reset(new Prim{dnnl::convolution_backward_weights(pd), pd.diff_weights_desc(), pd.src_desc(),
                       pd.diff_dst_desc(), pd.scratchpad_desc()});
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

// Weights in the layout `want`: the (O, C, *K) buffer itself, or a reordered copy.
memory Weights(float* oihw, const Geometry& g, const memory::desc& want) {
  memory user(g.UserWei(), Engine(), oihw);
  if (want == user.get_desc()) return user;
  memory m(want, Engine());
  dnnl::stream s(Engine());
  dnnl::reorder(user, m).execute(s, user, m);
  s.wait();
  return m;
}

// `user` itself where the primitive takes its layout, else a new buffer in the layout it wants.
memory Like(const memory& user, const memory::desc& want) {
  return want == user.get_desc() ? user : memory(want, Engine());
}

// from -> to, unless they are the same buffer.
void Copy(memory from, memory to) {  // handles: copies are cheap
  if (from == to) return;
  dnnl::stream s(Engine());
  dnnl::reorder(from, to).execute(s, from, to);
  s.wait();
}

int64_t ChunkSize(ffi::ThreadPool& pool, int64_t n) {
  int64_t t = std::max<int64_t>(1, std::min<int64_t>(n, pool.num_threads()));
  return (n + t - 1) / t;
}

// x: the activations' shape (the input's, or the input gradient's), w: the weight's,
// y: the output's (or the output gradient's).
Geometry Make(ffi::Span<const int64_t> x, ffi::Span<const int64_t> w, ffi::Span<const int64_t> y, bool last,
              ffi::Span<const int64_t> stride, ffi::Span<const int64_t> lo, ffi::Span<const int64_t> hi,
              ffi::Span<const int64_t> dil) {
  size_t r = w.size() - 2;
  if (r < 1 || r > 3 || x.size() != r + 2 || y.size() != r + 2 || stride.size() != r || lo.size() != r ||
      hi.size() != r || dil.size() != r)
    throw std::invalid_argument("1 to 3 spatial axes, and one stride, padding and dilation per axis");
  auto spatial = [&](ffi::Span<const int64_t> d) {
    return last ? memory::dims(d.begin() + 1, d.end() - 1) : memory::dims(d.begin() + 2, d.end());
  };
  auto dims = [](ffi::Span<const int64_t> d) { return memory::dims(d.begin(), d.end()); };
  return Geometry{last, x[0], last ? x[r + 1] : x[1], w[0], spatial(x), memory::dims(w.begin() + 2, w.end()),
                  spatial(y), dims(stride), dims(lo), dims(hi), dims(dil)};
}

#define FUNCNETS_CONV_ATTRS                                                                                        \
  .Attr<bool>("channels_last").Attr<ffi::Span<const int64_t>>("stride").Attr<ffi::Span<const int64_t>>("lo") \
      .Attr<ffi::Span<const int64_t>>("hi").Attr<ffi::Span<const int64_t>>("dilation")

// The forward convolution (kind 'f', or 'b' with the bias `bias`) or the input gradient
// ('d'), one batch chunk per task: both map samples of one buffer to samples of another
// through the weights.
std::string WeightsTimesChunks(ffi::ThreadPool& pool, const Geometry& g, char kind, float* w, int src_arg, float* src,
                               int dst_arg, float* dst, float* bias = nullptr) {
  bool forward = kind != 'd';
  int64_t per = ChunkSize(pool, g.n), chunks = (g.n + per - 1) / per;
  memory wm = Weights(w, g, Get(g, per, kind).wei);
  return ParallelChunks(pool, chunks, [&](int64_t i) {
    int64_t n0 = i * per, b = std::min(per, g.n - n0);
    const Prim& p = Get(g, b, kind);
    memory wk = p.wei == wm.get_desc() ? wm : Weights(w, g, p.wei);
    memory user_x(g.Src(b), Engine(), src + n0 * g.InPerSample()), user_y(g.Dst(b), Engine(), dst + n0 * g.OutPerSample());
    memory xm = Like(user_x, p.src), ym = Like(user_y, p.dst);
    // the forward convolution reads x and writes y; the input gradient reads dy and writes dx
    if (forward) Copy(user_x, xm); else Copy(user_y, ym);
    std::unordered_map<int, memory> args{{src_arg, xm}, {DNNL_ARG_WEIGHTS, wk}, {dst_arg, ym}};
    if (bias) args.insert({DNNL_ARG_BIAS, memory(g.Bias(), Engine(), bias)});
    Execute(p, std::move(args));
    if (forward) Copy(ym, user_y); else Copy(xm, user_x);
  });
}

using Ints = ffi::Span<const int64_t>;

// y = conv(x, w)
ffi::Error Forward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w, ffi::ResultBuffer<ffi::F32> y,
                   bool last, Ints stride, Ints lo, Ints hi, Ints dil) {
  return Run("convolution", [&] {
    Geometry g = Make(x.dimensions(), w.dimensions(), y->dimensions(), last, stride, lo, hi, dil);
    return WeightsTimesChunks(pool, g, 'f', w.typed_data(), DNNL_ARG_SRC, x.typed_data(), DNNL_ARG_DST, y->typed_data());
  });
}

// y = conv(x, w) + b, the bias added by oneDNN's kernel as torch's forward does, with no
// pass of XLA's over y. A forward + backward, alone in a process, 2-core CPU: Conv1d(64, 64,
// 3) over 256 steps, batch 32, 2.6-2.9 -> 1.7 ms; Conv3d(16, 32, 3) over 16^3, batch 8,
// 6.8-7.8 -> 5.8 ms.
ffi::Error ForwardBias(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w,
                       ffi::Buffer<ffi::F32> b, ffi::ResultBuffer<ffi::F32> y, bool last, Ints stride, Ints lo,
                       Ints hi, Ints dil) {
  return Run("convolution", [&] {
    Geometry g = Make(x.dimensions(), w.dimensions(), y->dimensions(), last, stride, lo, hi, dil);
    if (b.element_count() != static_cast<size_t>(g.o)) throw std::invalid_argument("the bias is not (C_out,)");
    return WeightsTimesChunks(pool, g, 'b', w.typed_data(), DNNL_ARG_SRC, x.typed_data(), DNNL_ARG_DST, y->typed_data(),
                              b.typed_data());
  });
}

// dx = the input gradient of conv for the output gradient dy
ffi::Error BackwardData(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> dy, ffi::Buffer<ffi::F32> w,
                        ffi::ResultBuffer<ffi::F32> dx, bool last, Ints stride, Ints lo, Ints hi, Ints dil) {
  return Run("convolution input gradient", [&] {
    Geometry g = Make(dx->dimensions(), w.dimensions(), dy.dimensions(), last, stride, lo, hi, dil);
    return WeightsTimesChunks(pool, g, 'd', w.typed_data(), DNNL_ARG_DIFF_SRC, dx->typed_data(), DNNL_ARG_DIFF_DST,
                              dy.typed_data());
  });
}

// dw = the weight gradient of conv for the input x and the output gradient dy: one
// partial sum per batch chunk, added up in OIHW.
ffi::Error BackwardWeights(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> dy,
                           ffi::ResultBuffer<ffi::F32> dw, bool last, Ints stride, Ints lo, Ints hi, Ints dil) {
  return Run("convolution weight gradient", [&] {
    Geometry g = Make(x.dimensions(), dw->dimensions(), dy.dimensions(), last, stride, lo, hi, dil);
    int64_t per = ChunkSize(pool, g.n), chunks = (g.n + per - 1) / per;
    int64_t size = g.o * g.c * Geometry::Prod(g.k);
    std::vector<float> partial((chunks - 1) * size);
    std::string error = ParallelChunks(pool, chunks, [&](int64_t i) {
      int64_t n0 = i * per, b = std::min(per, g.n - n0);
      const Prim& p = Get(g, b, 'w');
      float* out = i == 0 ? dw->typed_data() : partial.data() + (i - 1) * size;
      memory user(g.UserWei(), Engine(), out);
      memory m = p.wei == user.get_desc() ? user : memory(p.wei, Engine());
      memory user_x(g.Src(b), Engine(), x.typed_data() + n0 * g.InPerSample());
      memory user_dy(g.Dst(b), Engine(), dy.typed_data() + n0 * g.OutPerSample());
      memory xm = Like(user_x, p.src), dym = Like(user_dy, p.dst);
      Copy(user_x, xm);
      Copy(user_dy, dym);
      Execute(p, {{DNNL_ARG_SRC, xm}, {DNNL_ARG_DIFF_DST, dym}, {DNNL_ARG_DIFF_WEIGHTS, m}});
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
XLA_FFI_DEFINE_HANDLER_SYMBOL(funcnets_conv_forward_bias, ForwardBias,
                              ffi::Ffi::Bind().Ctx<ffi::ThreadPool>().Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>().Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>() FUNCNETS_CONV_ATTRS);
XLA_FFI_DEFINE_HANDLER_SYMBOL(funcnets_conv_backward_data, BackwardData,
                              ffi::Ffi::Bind().Ctx<ffi::ThreadPool>().Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>().Ret<ffi::Buffer<ffi::F32>>() FUNCNETS_CONV_ATTRS);
XLA_FFI_DEFINE_HANDLER_SYMBOL(funcnets_conv_backward_weights, BackwardWeights,
                              ffi::Ffi::Bind().Ctx<ffi::ThreadPool>().Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>().Ret<ffi::Buffer<ffi::F32>>() FUNCNETS_CONV_ATTRS);
