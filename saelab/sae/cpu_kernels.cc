// Multi-threaded CPU kernels of the sparse TopK step, called from JAX through its FFI (saelab.sae.cpu_kernels).
//
// XLA CPU runs lax.top_k as one single-threaded runtime call and the sparse backward's gathers and
// scatter-adds as chains of small ops; these kernels do each in one call spread over XLA's own intra-op
// thread pool. Work is cut into parts that the calling thread and the pool's threads claim from one atomic
// counter, so the call never waits on a task that has not started (the caller takes every part nobody
// else claimed): no deadlock when every pool thread is busy.
//
// screened_top_k: the same for x @ W + bias, recomputing exactly only the latents a bfloat16 estimate
//   cannot rule out (ScreenedRow).
// top_k_bias: the k largest of (pre + bias) per row, sorted descending, ties to the lower index, in
//   lax.top_k's total order of floats (the bits as integers, negatives flipped: -0.0 < 0.0, NaN above +inf).
// gather_sum: out[b] = sum_j w[b, j] * table[idx[b, j]]             (the sparse decoder forward)
// gather_dot: out[b, j] = <rows[b], table[idx[b, j]]>                (the decoder's code gradient)
// scatter_rows: out[idx[b, j]] += w[b, j] * rows[b]                   (the weight gradients)
// An index outside the table adds nothing (gather_sum, scatter_rows) or reads as zero (gather_dot).
// Sums run in slot order (b, then j) in float32, as the XLA kernels they replace do.

#include <algorithm>
#include <cfloat>
#include <cmath>
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

constexpr int64_t kBlock = 16;  // entries per block maximum (one AVX-512 register)

// Whether any of v[0..kBlock) is not below t (NaNs count as not below): branch-free, vectorised.
template <typename T>
inline bool AnyNotBelow(const T* v, T t) {
  bool any = false;
  for (int64_t i = 0; i < kBlock; ++i) any |= !(v[i] < t);
  return any;
}

// The k-th largest of v[0..n), 1 <= k <= n. The entries split into nb = n / kBlock strided sets
// {c, c + nb, ...}; the k-th largest set maximum t is at most the answer (k sets hold an entry >= t), so only
// the entries >= t are ranked. The set maxima are taken column-wise, so every step is a vector operation.
// `scratch` holds n + n / kBlock.
template <typename T>
T KthLargest(const T* v, int64_t n, int64_t k, T* scratch) {
  const int64_t nb = n / kBlock;
  int64_t m = 0;
  if (nb >= k) {
    T* maxima = scratch + n;
    std::copy(v, v + nb, maxima);
    for (int64_t r = 1; r < kBlock; ++r)
      for (int64_t c = 0; c < nb; ++c) maxima[c] = std::max(maxima[c], v[r * nb + c]);
    std::nth_element(maxima, maxima + k - 1, maxima + nb, std::greater<T>());
    const T t = maxima[k - 1];
    int64_t i = 0;
    for (; i + kBlock <= n; i += kBlock)
      if (AnyNotBelow(v + i, t))
        for (int64_t j = i; j < i + kBlock; ++j)
          if (v[j] >= t) scratch[m++] = v[j];
    for (; i < n; ++i)
      if (v[i] >= t) scratch[m++] = v[i];
  } else {
    std::copy(v, v + n, scratch);
    m = n;
  }
  std::nth_element(scratch, scratch + k - 1, scratch + m, std::greater<T>());
  return scratch[k - 1];
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

// The top k of one row of pre + bias in lax.top_k's order: a descending list of k (key, index) that an entry
// enters only when its key beats the k-th; entries come in index order, so a tie keeps the lower index.
void TopKRow(const float* row, const float* bias, int64_t n, int64_t k, int32_t* keys, int32_t* ids) {
  for (int64_t i = 0; i < k; ++i) Insert(keys, ids, i, OrderKey(row[i] + bias[i]), static_cast<int32_t>(i));
  float thr = KeyFloat(keys[k - 1]);
  for (int64_t i = k; i < n; ++i) {
    const float v = row[i] + bias[i];
    if (v < thr) continue;  // false for a NaN on either side: those take the exact comparison
    const int32_t key = OrderKey(v);
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


// The k largest exact pre-activations x_b . W_j + bias_j of a row, found from a cheap estimate `lo_pre`
// (a bfloat16 GEMM) and a bound on its error: the latents whose upper bound reaches
// the k-th largest lower bound are the only ones that can be in the top k (the k latents of the largest
// lower bounds all have exact values at or above it), so only those are recomputed exactly (a float32 dot
// of x_b with the row W_j of `wt`) and ranked in index order, ties to the lower index. A row with a value
// that is not finite is recomputed in full.

// The bound's row terms rb = (||dx_b||, ||bf16(x_b)||, gamma ||x_b||) and latent terms cw = (||bf16(W_j)||
// + ||dW_j||, ||dW_j||, ||W_j||) (three rows of n), with dx, dW the bfloat16 rounding errors: by
// Cauchy-Schwarz on x.W - bf16(x).bf16(W) = dx.bf16(W) + bf16(x).dW + dx.dW, plus both sums' float32
// accumulation; kUlps covers the float32 roundings of the bounds themselves.
constexpr float kUlps = 1e-6f;

void ScreenedRow(const float* lo_pre, const float* xb, const float* wt, const float* bias, const float* rb,
                 const float* cw, int64_t n, int64_t d, int64_t k, int32_t* keys, int32_t* ids, float* lo,
                 float* hi, float* scratch, int32_t* cand) {
  const float* __restrict c0 = cw;
  const float* __restrict c1 = cw + n;
  const float* __restrict c2 = cw + 2 * n;
  const float* __restrict est_in = lo_pre;
  const float* __restrict bias_in = bias;
  float* __restrict lo_out = lo;
  float* __restrict hi_out = hi;
  const float r0 = rb[0], r1 = rb[1], r2 = rb[2];
  int bad = 0;  // a bound that is not finite
  for (int64_t j = 0; j < n; ++j) {
    const float est = est_in[j] + bias_in[j];
    const float spread = r0 * c0[j] + r1 * c1[j] + r2 * c2[j] + kUlps * std::fabs(est);
    const float l = est - spread, h = est + spread;
    lo_out[j] = l;
    hi_out[j] = h;
    bad |= static_cast<int>(!(std::fabs(l) <= FLT_MAX)) | static_cast<int>(!(std::fabs(h) <= FLT_MAX));
  }
  int64_t found = 0;
  if (bad) {  // recompute the whole row
    for (int64_t j = 0; j < n; ++j) cand[found++] = static_cast<int32_t>(j);
  } else {
    const float floor_ = KthLargest(lo, n, k, scratch);  // the k-th largest lower bound
    int64_t j = 0;
    for (; j + kBlock <= n; j += kBlock)
      if (AnyNotBelow(hi + j, floor_))
        for (int64_t i = j; i < j + kBlock; ++i)
          if (hi[i] >= floor_) cand[found++] = static_cast<int32_t>(i);
    for (; j < n; ++j)
      if (hi[j] >= floor_) cand[found++] = static_cast<int32_t>(j);
  }
  int64_t kept = 0;
  for (int64_t c = 0; c < found; ++c) {
    const int32_t j = cand[c];
    const int32_t key = OrderKey(Dot(xb, wt + static_cast<int64_t>(j) * d, d) + bias[j]);
    if (kept < k) {
      Insert(keys, ids, kept++, key, j);
    } else if (key > keys[k - 1]) {
      Insert(keys, ids, k - 1, key, j);
    }
  }
}

ffi::Error ScreenedTopK(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> lo_pre, ffi::Buffer<ffi::F32> x,
                        ffi::Buffer<ffi::F32> wt, ffi::Buffer<ffi::F32> bias, ffi::Buffer<ffi::F32> row_terms,
                        ffi::Buffer<ffi::F32> latent_terms, ffi::ResultBuffer<ffi::F32> vals,
                        ffi::ResultBuffer<ffi::S32> idx) {
  const int64_t rows = lo_pre.dimensions()[0], n = lo_pre.dimensions()[1], d = x.dimensions()[1];
  const int64_t k = vals->dimensions()[1];
  if (wt.dimensions()[0] != n || wt.dimensions()[1] != d || k < 1 || k > n)
    return ffi::Error::InvalidArgument("screened_top_k: shapes do not fit, or k is not in [1, n]");
  const float *lp = lo_pre.typed_data(), *xp = x.typed_data(), *w = wt.typed_data();
  const float *b = bias.typed_data(), *rt = row_terms.typed_data(), *lt = latent_terms.typed_data();
  float* v = vals->typed_data();
  int32_t* ix = idx->typed_data();
  ParallelFor(pool, PartsOf(rows), [&](int64_t part) {
    std::unique_ptr<int32_t[]> keys(new int32_t[k]), cand(new int32_t[n]);
    std::unique_ptr<float[]> scratch(new float[n + n / kBlock + 1]), lo(new float[n]), hi(new float[n]);
    const int64_t end = std::min(rows, (part + 1) * kRowsPerPart);
    for (int64_t r = part * kRowsPerPart; r < end; ++r) {
      ScreenedRow(lp + r * n, xp + r * d, w, b, rt + 3 * r, lt, n, d, k, keys.get(), ix + r * k, lo.get(), hi.get(),
                  scratch.get(), cand.get());
      for (int64_t j = 0; j < k; ++j) v[r * k + j] = KeyFloat(keys[j]);
    }
  });
  return ffi::Error::Success();
}

// bfloat16 bits of v, rounded to nearest even (a NaN stays a quiet NaN), as XLA's convert rounds.
inline uint16_t ToBf16(float v) {
  uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

inline float FromBf16(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float v;
  std::memcpy(&v, &u, sizeof v);
  return v;
}

// One pass over W (d, n) for the screened top-k: its transpose wt (n, d), its bfloat16 rounding wb (d, n)
// and per column j the bound's terms (||wb_j|| + ||W_j - wb_j||, ||W_j - wb_j||, ||W_j||), terms (3, n).
ffi::Error ScreenPrep(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> w, ffi::ResultBuffer<ffi::F32> wt,
                      ffi::ResultBuffer<ffi::BF16> wb, ffi::ResultBuffer<ffi::F32> terms) {
  const int64_t d = w.dimensions()[0], n = w.dimensions()[1];
  const float* src = w.typed_data();
  float* t = wt->typed_data();
  uint16_t* b = reinterpret_cast<uint16_t*>(wb->typed_data());
  float* out = terms->typed_data();
  constexpr int64_t kCols = 64;
  ParallelFor(pool, (n + kCols - 1) / kCols, [&](int64_t part) {
    const int64_t lo = part * kCols, hi = std::min(n, lo + kCols), m = hi - lo;
    float sb[kCols] = {}, sd[kCols] = {}, sw[kCols] = {};
    for (int64_t i = 0; i < d; ++i) {
      const float* row = src + i * n + lo;
      uint16_t* brow = b + i * n + lo;
      for (int64_t j = 0; j < m; ++j) {
        const float v = row[j];
        const uint16_t r = ToBf16(v);
        const float vb = FromBf16(r);
        brow[j] = r;
        sb[j] += vb * vb;
        sd[j] += (v - vb) * (v - vb);
        sw[j] += v * v;
      }
      for (int64_t j = 0; j < m; ++j) t[(lo + j) * d + i] = row[j];
    }
    for (int64_t j = 0; j < m; ++j) {
      const float dn = std::sqrt(sd[j]);
      out[lo + j] = std::sqrt(sb[j]) + dn;
      out[n + lo + j] = dn;
      out[2 * n + lo + j] = std::sqrt(sw[j]);
    }
  });
  return ffi::Error::Success();
}

// The FFI signatures. Every kernel takes XLA's intra-op thread pool first; gather_sum, gather_dot and
// scatter_rows share one: (float32 weights or rows, int32 slots, float32 table or rows) -> float32.
using F32 = ffi::Buffer<ffi::F32>;
using S32 = ffi::Buffer<ffi::S32>;

auto Pooled() { return ffi::Ffi::Bind().Ctx<ffi::ThreadPool>(); }

auto SlotKernel() { return Pooled().Arg<F32>().Arg<S32>().Arg<F32>().Ret<F32>(); }

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(saelab_top_k_bias, TopKBias, Pooled().Arg<F32>().Arg<F32>().Ret<F32>().Ret<S32>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(saelab_gather_sum, GatherSum, SlotKernel());
XLA_FFI_DEFINE_HANDLER_SYMBOL(saelab_gather_dot, GatherDot, SlotKernel());
XLA_FFI_DEFINE_HANDLER_SYMBOL(saelab_scatter_rows, ScatterRows, SlotKernel());
XLA_FFI_DEFINE_HANDLER_SYMBOL(saelab_screened_top_k, ScreenedTopK,
                              Pooled()  // lo_pre, x, wt, bias, row terms, latent terms
                                  .Arg<F32>()
                                  .Arg<F32>()
                                  .Arg<F32>()
                                  .Arg<F32>()
                                  .Arg<F32>()
                                  .Arg<F32>()
                                  .Ret<F32>()
                                  .Ret<S32>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(saelab_screen_prep, ScreenPrep,
                              Pooled().Arg<F32>().Ret<F32>().Ret<ffi::Buffer<ffi::BF16>>().Ret<F32>());
