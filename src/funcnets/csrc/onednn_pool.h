// What funcnets' oneDNN FFI handlers share (onednn_conv.cc, onednn_rnn.cc): oneDNN run
// single-threaded in chunks spread over XLA's intra-op pool, and oneDNN's exceptions
// returned to XLA as errors.
#pragma once

#include <omp.h>

#include <atomic>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <string>

#include "xla/ffi/api/ffi.h"

namespace funcnets_onednn {

namespace ffi = xla::ffi;

// OpenMP's thread count is per calling thread; XLA may run the call inline on the Python
// thread, whose setting is torch's, so it is put back.
struct OneThread {
  int prev = omp_get_max_threads();
  OneThread() { omp_set_num_threads(1); }
  ~OneThread() { omp_set_num_threads(prev); }
};

// Runs chunk(i) for i in [0, chunks) on the calling thread and XLA's pool; returns when
// all are done, with the first error any chunk threw. The calling thread takes chunks
// until none is left, so it never waits on a task that has not started; a pool task
// that starts late finds no chunk left and returns at once.
template <typename F>
std::string ParallelChunks(ffi::ThreadPool& pool, int64_t chunks, F chunk) {
  struct State {
    std::atomic<int64_t> next{0};
    std::mutex mu;
    std::condition_variable cv;
    int64_t done = 0;
    std::string error;
  };
  auto st = std::make_shared<State>();
  auto work = [st, chunks, &chunk] {
    OneThread one;
    for (int64_t i; (i = st->next.fetch_add(1)) < chunks;) {
      std::string error;
      try {
        chunk(i);
      } catch (const std::exception& e) {
        error = e.what();
      }
      std::lock_guard<std::mutex> l(st->mu);
      if (st->error.empty()) st->error = error;
      if (++st->done == chunks) st->cv.notify_all();
    }
  };
  for (int64_t t = 1; t < chunks; ++t) pool.Schedule([work] { work(); });
  work();
  std::unique_lock<std::mutex> l(st->mu);
  st->cv.wait(l, [&] { return st->done == chunks; });
  return st->error;
}

// A handler's body, with oneDNN's exceptions returned to XLA as errors.
template <typename F>
ffi::Error Run(const char* what, F body) {
  OneThread one;  // before any oneDNN call: creating a primitive may open a parallel region
  try {
    std::string error = body();
    if (error.empty()) return ffi::Error::Success();
    return ffi::Error::Internal(std::string("oneDNN ") + what + ": " + error);
  } catch (const std::exception& e) {
    return ffi::Error::Internal(std::string("oneDNN ") + what + ": " + e.what());
  }
}

}  // namespace funcnets_onednn
