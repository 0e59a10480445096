// oneDNN's LSTM and linear-before-reset GRU for XLA:CPU, as XLA FFI handlers
// (jax.ffi.ffi_call): one layer, one or both directions (bidirectional_concat), float32,
// forward_training (which leaves oneDNN's workspace for the backward) and backward.
//
// Layouts are torch's: x (T, N, I), states (D, N, H), weights (D, G·H, I) and (D, G·H, H)
// with the gate rows in oneDNN's order (the Python side permutes GRU's), bias (D, B·H),
// output (T, N, D·H). As onednn_conv.cc does, each call splits the batch over XLA's own
// intra-op thread pool and runs oneDNN single-threaded in every chunk: the sequences of a
// batch are independent, so the chunks need no synchronisation per time step, and no
// OpenMP team of oneDNN's spins beside XLA's (and torch's) threads. The weight gradients
// are one partial sum per chunk, added up in torch's layout.
//
// The workspace of each chunk lies at a 64-byte-aligned offset of one byte buffer that the
// forward call returns and the backward call reads; its size is asked of the primitive
// descriptors through funcnets_rnn_workspace_bytes (ctypes), before tracing.
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
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

// One layer: kind 'l' (LSTM, gates i f c~ o, one bias per gate) or 'g' (lbr_gru, gates
// u r o, a fourth bias inside the reset product), T steps, batch n, input i, hidden h,
// directions d.
struct Geometry {
  char kind;
  int64_t t, n, i, h, d;
  bool lstm() const { return kind == 'l'; }
  int64_t gates() const { return lstm() ? 4 : 3; }
  int64_t biases() const { return 4; }  // LSTM: one per gate; lbr_gru: u, r, o and o's hidden part
  std::string Key(int64_t batch, char prop) const {
    std::string k{kind, prop};
    for (int64_t v : {t, n, batch, i, h, d}) k += "," + std::to_string(v);
    return k;
  }
  // A chunk of b sequences of the batch of n: its rows are strided as the whole batch's.
  memory::desc Src(int64_t b) const { return memory::desc({t, b, i}, f32, memory::dims{n * i, i, 1}); }
  memory::desc Dst(int64_t b) const { return memory::desc({t, b, d * h}, f32, memory::dims{n * d * h, d * h, 1}); }
  memory::desc Iter(int64_t b) const { return memory::desc({1, d, b, h}, f32, memory::dims{d * n * h, n * h, h, 1}); }
  memory::desc WLayer(tag f) const { return memory::desc({1, d, i, gates(), h}, f32, f); }
  memory::desc WIter(tag f) const { return memory::desc({1, d, h, gates(), h}, f32, f); }
  memory::desc Bias() const { return memory::desc({1, d, biases(), h}, f32, tag::ldgo); }
  dnnl::rnn_direction Direction() const {
    return d == 2 ? dnnl::rnn_direction::bidirectional_concat : dnnl::rnn_direction::unidirectional_left2right;
  }
};

dnnl::primitive_attr UserScratchpad() {
  dnnl::primitive_attr a;
  a.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return a;
}

// One primitive per geometry, batch chunk and direction of propagation ('f' or 'b'), with
// the weight layouts it wants, its workspace and its scratchpad.
struct Prim {
  dnnl::primitive prim;
  memory::desc w_layer, w_iter, diff_w_layer, diff_w_iter, workspace, scratch;
};

std::mutex cache_mu;
std::unordered_map<std::string, std::unique_ptr<Prim>> cache;

const Prim& Get(const Geometry& g, int64_t b, char prop) {
  std::lock_guard<std::mutex> lock(cache_mu);
  auto& p = cache[g.Key(b, prop)];
  if (p) return *p;
  if (prop == 'f') {
    if (g.lstm()) {
      dnnl::lstm_forward::primitive_desc pd(Engine(), dnnl::prop_kind::forward_training, g.Direction(), g.Src(b),
                                            g.Iter(b), g.Iter(b), g.WLayer(tag::any), g.WIter(tag::any), g.Bias(),
                                            g.Dst(b), g.Iter(b), g.Iter(b), UserScratchpad());
      p.reset(new Prim{dnnl::lstm_forward(pd), pd.weights_layer_desc(), pd.weights_iter_desc(), {}, {},
                       pd.workspace_desc(), pd.scratchpad_desc()});
    } else {
      dnnl::lbr_gru_forward::primitive_desc pd(Engine(), dnnl::prop_kind::forward_training, g.Direction(), g.Src(b),
                                               g.Iter(b), g.WLayer(tag::any), g.WIter(tag::any), g.Bias(), g.Dst(b),
                                               g.Iter(b), UserScratchpad());
      p.reset(new Prim{dnnl::lbr_gru_forward(pd), pd.weights_layer_desc(), pd.weights_iter_desc(), {}, {},
                       pd.workspace_desc(), pd.scratchpad_desc()});
    }
    return *p;
  }
  // the backward; its weights (and weight gradients) in the layouts it chooses
  if (g.lstm()) {
    dnnl::lstm_forward::primitive_desc fwd(Engine(), dnnl::prop_kind::forward_training, g.Direction(), g.Src(b),
                                           g.Iter(b), g.Iter(b), g.WLayer(tag::any), g.WIter(tag::any), g.Bias(),
                                           g.Dst(b), g.Iter(b), g.Iter(b), UserScratchpad());
    dnnl::lstm_backward::primitive_desc pd(
        Engine(), dnnl::prop_kind::backward, g.Direction(), g.Src(b), g.Iter(b), g.Iter(b), g.WLayer(tag::any),
        g.WIter(tag::any), g.Bias(), g.Dst(b), g.Iter(b), g.Iter(b), g.Src(b), g.Iter(b), g.Iter(b),
        g.WLayer(tag::any), g.WIter(tag::any), g.Bias(), g.Dst(b), g.Iter(b), g.Iter(b), fwd, UserScratchpad());
    p.reset(new Prim{dnnl::lstm_backward(pd), pd.weights_layer_desc(), pd.weights_iter_desc(),
                     pd.diff_weights_layer_desc(), pd.diff_weights_iter_desc(), pd.workspace_desc(),
                     pd.scratchpad_desc()});
  } else {
    dnnl::lbr_gru_forward::primitive_desc fwd(Engine(), dnnl::prop_kind::forward_training, g.Direction(), g.Src(b),
                                              g.Iter(b), g.WLayer(tag::any), g.WIter(tag::any), g.Bias(), g.Dst(b),
                                              g.Iter(b), UserScratchpad());
    dnnl::lbr_gru_backward::primitive_desc pd(
        Engine(), dnnl::prop_kind::backward, g.Direction(), g.Src(b), g.Iter(b), g.WLayer(tag::any),
        g.WIter(tag::any), g.Bias(), g.Dst(b), g.Iter(b), g.Src(b), g.Iter(b), g.WLayer(tag::any), g.WIter(tag::any),
        g.Bias(), g.Dst(b), g.Iter(b), fwd, UserScratchpad());
    p.reset(new Prim{dnnl::lbr_gru_backward(pd), pd.weights_layer_desc(), pd.weights_iter_desc(),
                     pd.diff_weights_layer_desc(), pd.diff_weights_iter_desc(), pd.workspace_desc(),
                     pd.scratchpad_desc()});
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

void Reorder(memory& from, memory& to) {
  dnnl::stream s(Engine());
  dnnl::reorder(from, to).execute(s, from, to);
  s.wait();
}

// Weights in the layout `want`: torch's (D, G·H, K) buffer itself (ldgoi), or a reordered copy.
memory Weights(float* ldgoi, const memory::desc& user_desc, const memory::desc& want) {
  memory user(user_desc, Engine(), ldgoi);
  if (want == user.get_desc()) return user;
  memory m(want, Engine());
  Reorder(user, m);
  return m;
}

// The batch chunks: `per` sequences each (the last may have fewer).
struct Chunks {
  int64_t per, count;
  Chunks(int64_t n, int64_t wanted) {
    int64_t t = std::max<int64_t>(1, std::min<int64_t>(n, wanted));
    per = (n + t - 1) / t;
    count = (n + per - 1) / per;
  }
  int64_t Size(int64_t c, int64_t n) const { return std::min(per, n - c * per); }
};

constexpr size_t kAlign = 64;
size_t AlignUp(size_t v) { return (v + kAlign - 1) / kAlign * kAlign; }

// Byte offsets of each chunk's workspace in the call's workspace buffer, and its size (last).
std::vector<size_t> WorkspaceOffsets(const Geometry& g, const Chunks& ch) {
  std::vector<size_t> off{0};
  for (int64_t c = 0; c < ch.count; ++c) off.push_back(off.back() + AlignUp(Get(g, ch.Size(c, g.n), 'f').workspace.get_size()));
  return off;
}

// Chunk memories: the rows of sequences [n0, n0 + b) of a (T, N, C) or (D, N, C) buffer.
memory At(const memory::desc& d, float* base, int64_t n0, int64_t c) { return memory(d, Engine(), base + n0 * c); }

Geometry Make(char kind, ffi::Span<const int64_t> x, ffi::Span<const int64_t> h0) {
  return Geometry{kind, x[0], x[1], x[2], h0[2], h0[0]};
}

// The forward of one layer: y, h_n (and c_n) and the workspace from x, h0 (c0), weights, bias.
ffi::Error Forward(char kind, ffi::ThreadPool& pool, int64_t chunks, const ffi::Buffer<ffi::F32>& x,
                   const ffi::Buffer<ffi::F32>& h0, const ffi::Buffer<ffi::F32>* c0, const ffi::Buffer<ffi::F32>& w_ih,
                   const ffi::Buffer<ffi::F32>& w_hh, const ffi::Buffer<ffi::F32>& bias, ffi::Result<ffi::Buffer<ffi::F32>>& y,
                   ffi::Result<ffi::Buffer<ffi::F32>>& hn, ffi::Result<ffi::Buffer<ffi::F32>>* cn,
                   ffi::Result<ffi::Buffer<ffi::U8>>& ws) {
  return Run(kind == 'l' ? "LSTM" : "GRU", [&]() -> std::string {
    Geometry g = Make(kind, x.dimensions(), h0.dimensions());
    Chunks ch(g.n, chunks);
    std::vector<size_t> off = WorkspaceOffsets(g, ch);
    if (off.back() > static_cast<size_t>(ws->element_count()))
      return "workspace buffer of " + std::to_string(ws->element_count()) + " bytes, " + std::to_string(off.back()) +
             " needed";
    const Prim& p0 = Get(g, ch.per, 'f');
    memory wl = Weights(w_ih.typed_data(), g.WLayer(tag::ldgoi), p0.w_layer);
    memory wi = Weights(w_hh.typed_data(), g.WIter(tag::ldgoi), p0.w_iter);
    memory b(g.Bias(), Engine(), bias.typed_data());
    return ParallelChunks(pool, ch.count, [&](int64_t c) {
      int64_t n0 = c * ch.per, bn = ch.Size(c, g.n);
      const Prim& p = Get(g, bn, 'f');
      memory wlk = p.w_layer == wl.get_desc() ? wl : Weights(w_ih.typed_data(), g.WLayer(tag::ldgoi), p.w_layer);
      memory wik = p.w_iter == wi.get_desc() ? wi : Weights(w_hh.typed_data(), g.WIter(tag::ldgoi), p.w_iter);
      std::unordered_map<int, memory> args{
          {DNNL_ARG_SRC_LAYER, At(g.Src(bn), x.typed_data(), n0, g.i)},
          {DNNL_ARG_SRC_ITER, At(g.Iter(bn), h0.typed_data(), n0, g.h)},
          {DNNL_ARG_WEIGHTS_LAYER, wlk},
          {DNNL_ARG_WEIGHTS_ITER, wik},
          {DNNL_ARG_BIAS, b},
          {DNNL_ARG_DST_LAYER, At(g.Dst(bn), y->typed_data(), n0, g.d * g.h)},
          {DNNL_ARG_DST_ITER, At(g.Iter(bn), hn->typed_data(), n0, g.h)},
          {DNNL_ARG_WORKSPACE, memory(p.workspace, Engine(), ws->typed_data() + off[c])}};
      if (c0) {
        args.insert({DNNL_ARG_SRC_ITER_C, At(g.Iter(bn), c0->typed_data(), n0, g.h)});
        args.insert({DNNL_ARG_DST_ITER_C, At(g.Iter(bn), (*cn)->typed_data(), n0, g.h)});
      }
      Execute(p, args);
    });
  });
}

// The backward of one layer: dx, dh0 (dc0), dw_ih, dw_hh, dbias from the forward's inputs,
// outputs and workspace and the output cotangents dy, dh_n (dc_n).
struct BackwardArgs {
  const ffi::Buffer<ffi::F32> *x, *h0, *c0, *w_ih, *w_hh, *bias, *y, *hn, *cn;
  const ffi::Buffer<ffi::U8>* ws;
  const ffi::Buffer<ffi::F32> *dy, *dhn, *dcn;
  ffi::Result<ffi::Buffer<ffi::F32>> *dx, *dh0, *dc0, *dw_ih, *dw_hh, *dbias;
};

ffi::Error Backward(char kind, ffi::ThreadPool& pool, int64_t chunks, const BackwardArgs& a) {
  return Run(kind == 'l' ? "LSTM backward" : "GRU backward", [&]() -> std::string {
    Geometry g = Make(kind, a.x->dimensions(), a.h0->dimensions());
    Chunks ch(g.n, chunks);
    std::vector<size_t> off = WorkspaceOffsets(g, ch);
    if (off.back() > static_cast<size_t>(a.ws->element_count())) return "workspace buffer too small";
    const Prim& p0 = Get(g, ch.per, 'b');
    memory wl = Weights(a.w_ih->typed_data(), g.WLayer(tag::ldgoi), p0.w_layer);
    memory wi = Weights(a.w_hh->typed_data(), g.WIter(tag::ldgoi), p0.w_iter);
    memory b(g.Bias(), Engine(), a.bias->typed_data());
    int64_t sl = g.d * g.gates() * g.h * g.i, si = g.d * g.gates() * g.h * g.h, sb = g.d * g.biases() * g.h;
    // chunk 0 writes the results' buffers; the others partial sums in torch's layout
    std::vector<float> partial((ch.count - 1) * (sl + si + sb));
    std::string error = ParallelChunks(pool, ch.count, [&](int64_t c) {
      int64_t n0 = c * ch.per, bn = ch.Size(c, g.n);
      const Prim& p = Get(g, bn, 'b');
      memory wlk = p.w_layer == wl.get_desc() ? wl : Weights(a.w_ih->typed_data(), g.WLayer(tag::ldgoi), p.w_layer);
      memory wik = p.w_iter == wi.get_desc() ? wi : Weights(a.w_hh->typed_data(), g.WIter(tag::ldgoi), p.w_iter);
      float* part = c == 0 ? nullptr : partial.data() + (c - 1) * (sl + si + sb);
      memory dwl_user(g.WLayer(tag::ldgoi), Engine(), c == 0 ? (*a.dw_ih)->typed_data() : part);
      memory dwi_user(g.WIter(tag::ldgoi), Engine(), c == 0 ? (*a.dw_hh)->typed_data() : part + sl);
      memory db(g.Bias(), Engine(), c == 0 ? (*a.dbias)->typed_data() : part + sl + si);
      memory dwl = p.diff_w_layer == dwl_user.get_desc() ? dwl_user : memory(p.diff_w_layer, Engine());
      memory dwi = p.diff_w_iter == dwi_user.get_desc() ? dwi_user : memory(p.diff_w_iter, Engine());
      // oneDNN adds the weight gradients to what these hold
      for (memory* m : {&dwl, &dwi, &db}) std::memset(m->get_data_handle(), 0, m->get_desc().get_size());
      std::unordered_map<int, memory> args{
          {DNNL_ARG_SRC_LAYER, At(g.Src(bn), a.x->typed_data(), n0, g.i)},
          {DNNL_ARG_SRC_ITER, At(g.Iter(bn), a.h0->typed_data(), n0, g.h)},
          {DNNL_ARG_WEIGHTS_LAYER, wlk},
          {DNNL_ARG_WEIGHTS_ITER, wik},
          {DNNL_ARG_BIAS, b},
          {DNNL_ARG_DST_LAYER, At(g.Dst(bn), a.y->typed_data(), n0, g.d * g.h)},
          {DNNL_ARG_DST_ITER, At(g.Iter(bn), a.hn->typed_data(), n0, g.h)},
          {DNNL_ARG_WORKSPACE,
           memory(p.workspace, Engine(), const_cast<uint8_t*>(a.ws->typed_data()) + off[c])},
          {DNNL_ARG_DIFF_SRC_LAYER, At(g.Src(bn), (*a.dx)->typed_data(), n0, g.i)},
          {DNNL_ARG_DIFF_SRC_ITER, At(g.Iter(bn), (*a.dh0)->typed_data(), n0, g.h)},
          {DNNL_ARG_DIFF_WEIGHTS_LAYER, dwl},
          {DNNL_ARG_DIFF_WEIGHTS_ITER, dwi},
          {DNNL_ARG_DIFF_BIAS, db},
          {DNNL_ARG_DIFF_DST_LAYER, At(g.Dst(bn), a.dy->typed_data(), n0, g.d * g.h)},
          {DNNL_ARG_DIFF_DST_ITER, At(g.Iter(bn), a.dhn->typed_data(), n0, g.h)}};
      if (g.lstm()) {
        args.insert({DNNL_ARG_SRC_ITER_C, At(g.Iter(bn), a.c0->typed_data(), n0, g.h)});
        args.insert({DNNL_ARG_DST_ITER_C, At(g.Iter(bn), a.cn->typed_data(), n0, g.h)});
        args.insert({DNNL_ARG_DIFF_SRC_ITER_C, At(g.Iter(bn), (*a.dc0)->typed_data(), n0, g.h)});
        args.insert({DNNL_ARG_DIFF_DST_ITER_C, At(g.Iter(bn), a.dcn->typed_data(), n0, g.h)});
      }
      Execute(p, args);
      if (dwl != dwl_user) Reorder(dwl, dwl_user);
      if (dwi != dwi_user) Reorder(dwi, dwi_user);
    });
    float* outs[3] = {(*a.dw_ih)->typed_data(), (*a.dw_hh)->typed_data(), (*a.dbias)->typed_data()};
    int64_t sizes[3] = {sl, si, sb}, at[3] = {0, sl, sl + si};
    for (int64_t c = 1; c < ch.count; ++c) {
      const float* part = partial.data() + (c - 1) * (sl + si + sb);
      for (int k = 0; k < 3; ++k)
        for (int64_t j = 0; j < sizes[k]; ++j) outs[k][j] += part[at[k] + j];
    }
    return error;
  });
}

using F32 = ffi::Buffer<ffi::F32>;
using RF32 = ffi::Result<ffi::Buffer<ffi::F32>>;
using U8 = ffi::Buffer<ffi::U8>;
using RU8 = ffi::Result<ffi::Buffer<ffi::U8>>;

ffi::Error LstmForward(ffi::ThreadPool pool, F32 x, F32 h0, F32 c0, F32 w_ih, F32 w_hh, F32 bias, RF32 y, RF32 hn,
                       RF32 cn, RU8 ws, int64_t chunks) {
  return Forward('l', pool, chunks, x, h0, &c0, w_ih, w_hh, bias, y, hn, &cn, ws);
}

ffi::Error GruForward(ffi::ThreadPool pool, F32 x, F32 h0, F32 w_ih, F32 w_hh, F32 bias, RF32 y, RF32 hn, RU8 ws,
                      int64_t chunks) {
  return Forward('g', pool, chunks, x, h0, nullptr, w_ih, w_hh, bias, y, hn, nullptr, ws);
}

ffi::Error LstmBackward(ffi::ThreadPool pool, F32 x, F32 h0, F32 c0, F32 w_ih, F32 w_hh, F32 bias, F32 y, F32 hn,
                        F32 cn, U8 ws, F32 dy, F32 dhn, F32 dcn, RF32 dx, RF32 dh0, RF32 dc0, RF32 dw_ih, RF32 dw_hh,
                        RF32 dbias, int64_t chunks) {
  BackwardArgs a{&x, &h0, &c0, &w_ih, &w_hh, &bias, &y, &hn, &cn, &ws, &dy, &dhn, &dcn,
                 &dx, &dh0, &dc0, &dw_ih, &dw_hh, &dbias};
  return Backward('l', pool, chunks, a);
}

ffi::Error GruBackward(ffi::ThreadPool pool, F32 x, F32 h0, F32 w_ih, F32 w_hh, F32 bias, F32 y, F32 hn, U8 ws, F32 dy,
                       F32 dhn, RF32 dx, RF32 dh0, RF32 dw_ih, RF32 dw_hh, RF32 dbias, int64_t chunks) {
  BackwardArgs a{&x, &h0, nullptr, &w_ih, &w_hh, &bias, &y, &hn, nullptr, &ws, &dy, &dhn, nullptr,
                 &dx, &dh0, nullptr, &dw_ih, &dw_hh, &dbias};
  return Backward('g', pool, chunks, a);
}

}  // namespace

// The workspace bytes one forward call needs (0 on error, with the reason in `error`,
// `error_len` bytes at most): kind 'l' or 'g', x (t, n, i), hidden h, d directions, the
// batch split into `chunks`. Called through ctypes while tracing.
extern "C" int64_t funcnets_rnn_workspace_bytes(char kind, int64_t t, int64_t n, int64_t i, int64_t h, int64_t d,
                                                int64_t chunks, char* error, int64_t error_len) {
  OneThread one;
  try {
    Geometry g{kind, t, n, i, h, d};
    return static_cast<int64_t>(WorkspaceOffsets(g, Chunks(n, chunks)).back());
  } catch (const std::exception& e) {
    if (error && error_len > 0) {
      std::strncpy(error, e.what(), error_len - 1);
      error[error_len - 1] = 0;
    }
    return 0;
  }
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(funcnets_lstm_forward, LstmForward,
                              ffi::Ffi::Bind().Ctx<ffi::ThreadPool>().Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>()
                                  .Arg<F32>().Arg<F32>().Ret<F32>().Ret<F32>().Ret<F32>().Ret<U8>()
                                  .Attr<int64_t>("chunks"));
XLA_FFI_DEFINE_HANDLER_SYMBOL(funcnets_gru_forward, GruForward,
                              ffi::Ffi::Bind().Ctx<ffi::ThreadPool>().Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>()
                                  .Arg<F32>().Ret<F32>().Ret<F32>().Ret<U8>().Attr<int64_t>("chunks"));
XLA_FFI_DEFINE_HANDLER_SYMBOL(funcnets_lstm_backward, LstmBackward,
                              ffi::Ffi::Bind().Ctx<ffi::ThreadPool>().Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>()
                                  .Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>().Arg<U8>().Arg<F32>()
                                  .Arg<F32>().Arg<F32>().Ret<F32>().Ret<F32>().Ret<F32>().Ret<F32>().Ret<F32>()
                                  .Ret<F32>().Attr<int64_t>("chunks"));
XLA_FFI_DEFINE_HANDLER_SYMBOL(funcnets_gru_backward, GruBackward,
                              ffi::Ffi::Bind().Ctx<ffi::ThreadPool>().Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>()
                                  .Arg<F32>().Arg<F32>().Arg<F32>().Arg<U8>().Arg<F32>().Arg<F32>().Ret<F32>()
                                  .Ret<F32>().Ret<F32>().Ret<F32>().Ret<F32>().Attr<int64_t>("chunks"));
