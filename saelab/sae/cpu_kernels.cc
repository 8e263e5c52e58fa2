// Multi-threaded CPU kernels of the sparse TopK step, called from JAX through its FFI (saelab.sae.cpu_kernels).
//
// XLA CPU runs lax.top_k as one single-threaded runtime call and the sparse backward's gathers and
// scatter-adds as chains of small ops; these kernels do each in one call spread over XLA's own intra-op
// thread pool. Work is cut into parts that the calling thread and the pool's threads claim from one atomic
// counter, so the call never waits on a task that has not started (the caller takes every part nobody
// else claimed): no deadlock when every pool thread is busy.
//
// top_k_bias: the k largest of (pre + bias) per row, sorted descending, ties to the lower index, in
//   lax.top_k's total order of floats (the bits as integers, negatives flipped: -0.0 < 0.0, NaN above +inf).
// gather_sum: out[b] = sum_j w[b, j] * table[idx[b, j]]             (the sparse decoder forward)
// gather_dot: out[b, j] = <rows[b], table[idx[b, j]]>                (the decoder's code gradient)
// scatter_rows: out[idx[b, j]] += w[b, j] * rows[b]                   (the weight gradients)
// An index outside the table adds nothing (gather_sum, scatter_rows) or reads as zero (gather_dot).
// Sums run in slot order (b, then j) in float32, as the XLA kernels they replace do.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

struct Shared {
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
  const std::function<void(int64_t)>* body = nullptr;
  int64_t parts = 0;
};

void Claim(const std::shared_ptr<Shared>& s) {
  for (int64_t p = s->next.fetch_add(1); p < s->parts; p = s->next.fetch_add(1)) {
    (*s->body)(p);
    s->done.fetch_add(1, std::memory_order_release);
  }
}

// Runs body(p) for p in [0, parts) on the caller and the pool's threads; returns when all are done.
void ParallelFor(ffi::ThreadPool& pool, int64_t parts, const std::function<void(int64_t)>& body) {
  auto s = std::make_shared<Shared>();
  s->body = &body;
  s->parts = parts;
  int64_t helpers = std::min<int64_t>(pool.num_threads(), parts - 1);
  for (int64_t i = 0; i < helpers; ++i) pool.Schedule([s] { Claim(s); });
  Claim(s);
  while (s->done.load(std::memory_order_acquire) < parts) std::this_thread::yield();
}

inline int32_t OrderKey(float v) {
  int32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  return bits < 0 ? bits ^ 0x7FFFFFFF : bits;
}

inline float KeyFloat(int32_t key) {
  int32_t bits = key < 0 ? key ^ 0x7FFFFFFF : key;
  float v;
  std::memcpy(&v, &bits, sizeof v);
  return v;
}

// Insert (key, i) into the descending list keys[0..n) at the place that keeps earlier indices first on ties.
inline void Insert(int32_t* keys, int32_t* ids, int64_t n, int32_t key, int32_t i) {
  int64_t p = n;
  while (p > 0 && keys[p - 1] < key) {
    keys[p] = keys[p - 1];
    ids[p] = ids[p - 1];
    --p;
  }
  keys[p] = key;
  ids[p] = i;
}

void TopKRow(const float* row, const float* bias, int64_t n, int64_t k, int32_t* keys, int32_t* ids) {
  for (int64_t i = 0; i < k; ++i) Insert(keys, ids, i, OrderKey(row[i] + bias[i]), static_cast<int32_t>(i));
  float thr = KeyFloat(keys[k - 1]);
  for (int64_t i = k; i < n; ++i) {
    float v = row[i] + bias[i];
    if (v < thr) continue;  // false for a NaN on either side: those take the exact comparison
    int32_t key = OrderKey(v);
    if (key <= keys[k - 1]) continue;  // an equal key at a higher index loses the tie
    Insert(keys, ids, k - 1, key, static_cast<int32_t>(i));
    thr = KeyFloat(keys[k - 1]);
  }
}

// <a, b> over d entries in 16 interleaved partial sums (vectorisable without reassociating a single sum).
inline float Dot(const float* a, const float* b, int64_t d) {
  constexpr int kLanes = 16;
  float lanes[kLanes] = {};
  int64_t e = 0;
  for (; e + kLanes <= d; e += kLanes)
    for (int i = 0; i < kLanes; ++i) lanes[i] += a[e + i] * b[e + i];
  float s = 0.0f;
  for (int i = 0; i < kLanes; ++i) s += lanes[i];
  for (; e < d; ++e) s += a[e] * b[e];
  return s;
}

constexpr int64_t kRowsPerPart = 64;

int64_t PartsOf(int64_t rows) { return std::max<int64_t>(1, (rows + kRowsPerPart - 1) / kRowsPerPart); }

ffi::Error TopKBias(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> pre, ffi::Buffer<ffi::F32> bias,
                    ffi::ResultBuffer<ffi::F32> vals, ffi::ResultBuffer<ffi::S32> idx) {
  auto dims = pre.dimensions();
  if (dims.size() != 2) return ffi::Error::InvalidArgument("top_k_bias: pre must be (rows, n)");
  const int64_t rows = dims[0], n = dims[1], k = vals->dimensions()[1];
  if (bias.element_count() != static_cast<size_t>(n) || k < 1 || k > n)
    return ffi::Error::InvalidArgument("top_k_bias: bias must be (n,) and 1 <= k <= n");
  const float* p = pre.typed_data();
  const float* b = bias.typed_data();
  float* v = vals->typed_data();
  int32_t* ix = idx->typed_data();
  ParallelFor(pool, PartsOf(rows), [&](int64_t part) {
    std::unique_ptr<int32_t[]> keys(new int32_t[k]);
    const int64_t end = std::min(rows, (part + 1) * kRowsPerPart);
    for (int64_t r = part * kRowsPerPart; r < end; ++r) {
      int32_t* out_ix = ix + r * k;
      TopKRow(p + r * n, b, n, k, keys.get(), out_ix);
      for (int64_t j = 0; j < k; ++j) v[r * k + j] = p[r * n + out_ix[j]] + b[out_ix[j]];
    }
  });
  return ffi::Error::Success();
}

ffi::Error GatherSum(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> w, ffi::Buffer<ffi::S32> idx,
                     ffi::Buffer<ffi::F32> table, ffi::ResultBuffer<ffi::F32> out) {
  const int64_t rows = w.dimensions()[0], k = w.dimensions()[1];
  const int64_t n_table = table.dimensions()[0], d = table.dimensions()[1];
  const float* wp = w.typed_data();
  const int32_t* ip = idx.typed_data();
  const float* t = table.typed_data();
  float* o = out->typed_data();
  ParallelFor(pool, PartsOf(rows), [&](int64_t part) {
    const int64_t end = std::min(rows, (part + 1) * kRowsPerPart);
    for (int64_t r = part * kRowsPerPart; r < end; ++r) {
      float* acc = o + r * d;
      std::fill(acc, acc + d, 0.0f);
      for (int64_t j = 0; j < k; ++j) {
        const int64_t l = ip[r * k + j];
        if (l < 0 || l >= n_table) continue;  // out of range adds nothing
        const float c = wp[r * k + j];
        const float* src = t + l * d;
        for (int64_t e = 0; e < d; ++e) acc[e] += c * src[e];
      }
    }
  });
  return ffi::Error::Success();
}

ffi::Error GatherDot(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> rows_in, ffi::Buffer<ffi::S32> idx,
                     ffi::Buffer<ffi::F32> table, ffi::ResultBuffer<ffi::F32> out) {
  const int64_t rows = idx.dimensions()[0], k = idx.dimensions()[1];
  const int64_t n_table = table.dimensions()[0], d = table.dimensions()[1];
  const float* x = rows_in.typed_data();
  const int32_t* ip = idx.typed_data();
  const float* t = table.typed_data();
  float* o = out->typed_data();
  ParallelFor(pool, PartsOf(rows), [&](int64_t part) {
    const int64_t end = std::min(rows, (part + 1) * kRowsPerPart);
    for (int64_t r = part * kRowsPerPart; r < end; ++r) {
      const float* xr = x + r * d;
      for (int64_t j = 0; j < k; ++j) {
        const int64_t l = ip[r * k + j];
        if (l < 0 || l >= n_table) {  // out of range reads as a zero row
          o[r * k + j] = 0.0f;
          continue;
        }
        o[r * k + j] = Dot(xr, t + l * d, d);
      }
    }
  });
  return ffi::Error::Success();
}

ffi::Error ScatterRows(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> w, ffi::Buffer<ffi::S32> idx,
                       ffi::Buffer<ffi::F32> rows_in, ffi::ResultBuffer<ffi::F32> out) {
  const int64_t rows = w.dimensions()[0], k = w.dimensions()[1];
  const int64_t n_out = out->dimensions()[0], d = out->dimensions()[1];
  const float* wp = w.typed_data();
  const int32_t* ip = idx.typed_data();
  const float* x = rows_in.typed_data();
  float* o = out->typed_data();
  // Each part owns a range of output rows and scans every slot, so no two threads add to one row.
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(n_out, 4 * std::max<int64_t>(1, pool.num_threads())));
  const int64_t span = (n_out + parts - 1) / parts;
  ParallelFor(pool, parts, [&](int64_t part) {
    const int64_t lo = part * span, hi = std::min(n_out, lo + span);
    if (lo >= hi) return;
    std::fill(o + lo * d, o + hi * d, 0.0f);
    for (int64_t s = 0; s < rows * k; ++s) {
      const int64_t l = ip[s];
      if (l < lo || l >= hi) continue;
      const float c = wp[s];
      const float* src = x + (s / k) * d;
      float* dst = o + l * d;
      for (int64_t e = 0; e < d; ++e) dst[e] += c * src[e];
    }
  });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(saelab_top_k_bias, TopKBias,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(saelab_gather_sum, GatherSum,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(saelab_gather_dot, GatherDot,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(saelab_scatter_rows, ScatterRows,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
