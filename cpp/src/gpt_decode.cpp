#include "seqlab/gpt_decode.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "seqlab/activations.hpp"
#include "seqlab/kv_attention.hpp"
#include "seqlab/layer_norm.hpp"
#include "seqlab/linear.hpp"
#include "seqlab/simd.hpp"
#include "seqlab/thread_pool.hpp"

namespace seqlab {
SEQLAB_LEVEL_BEGIN

namespace {

using simd::Batch;
using simd::kLanes;
using I64 = std::int64_t;

// Up to this many rows go through the matrix-vector kernel below; more through GEMMs.
constexpr int kFewRows = 8;
// A thread's share of a matrix-vector product covers at least this many weights (1 MiB):
// below it waking the pool costs more than the product.
constexpr std::size_t kParallelWeights = std::size_t{1} << 18;

// out[r] = w[r] . x for the four weight rows w, w + K, w + 2K, w + 3K (four independent
// FMA chains sharing each load of x).
inline void dot4(const float* x, const float* w, int K, float* out) {
  Batch a0(0.0f), a1(0.0f), a2(0.0f), a3(0.0f);
  int k = 0;
  for (; k + static_cast<int>(kLanes) <= K; k += kLanes) {
    const Batch xv = Batch::load_unaligned(x + k);
    a0 = xsimd::fma(Batch::load_unaligned(w + k), xv, a0);
    a1 = xsimd::fma(Batch::load_unaligned(w + K + k), xv, a1);
    a2 = xsimd::fma(Batch::load_unaligned(w + 2 * K + k), xv, a2);
    a3 = xsimd::fma(Batch::load_unaligned(w + 3 * K + k), xv, a3);
  }
  float s[4] = {xsimd::hadd(a0), xsimd::hadd(a1), xsimd::hadd(a2), xsimd::hadd(a3)};
  for (; k < K; ++k)
    for (int r = 0; r < 4; ++r) s[r] += w[r * K + k] * x[k];
  std::copy(s, s + 4, out);
}

// y (M, N) = x (M, K) w^T + b (b may be null), for M <= kFewRows: each weight row is
// read once for all M rows; output rows split over the pool when the weights are large.
void few_rows_linear(const float* x, const float* w, const float* b, float* y, int M, int K, int N) {
  const std::size_t grain = std::max<std::size_t>(4, kParallelWeights / static_cast<std::size_t>(std::max(K, 1)));
  parallel_for(static_cast<std::size_t>(N), grain, [&](std::size_t n0, std::size_t n1) {
    std::size_t n = n0;
    float d[4];
    for (; n + 4 <= n1; n += 4)
      for (int m = 0; m < M; ++m) {
        dot4(x + static_cast<I64>(m) * K, w + static_cast<I64>(n) * K, K, d);
        float* ym = y + static_cast<I64>(m) * N + n;
        for (int r = 0; r < 4; ++r) ym[r] = d[r] + (b != nullptr ? b[n + r] : 0.0f);
      }
    for (; n < n1; ++n)
      for (int m = 0; m < M; ++m)
        y[static_cast<I64>(m) * N + n] =
            simd::row_dot(x + static_cast<I64>(m) * K, w + static_cast<I64>(n) * K, K) + (b != nullptr ? b[n] : 0.0f);
  });
}

// y (M, N) = act(x (M, K) w^T + b): the matrix-vector kernel for a few rows, linear_forward's
// GEMMs for many.
void project(const float* x, const float* w, const float* b, float* y, int M, int K, int N, Activation act,
             bool gelu_tanh) {
  if (M > kFewRows) {
    linear_forward(x, w, b, y, static_cast<std::size_t>(M), static_cast<std::size_t>(K), static_cast<std::size_t>(N),
                   act);
    return;
  }
  few_rows_linear(x, w, b, y, M, K, N);
  if (act == Activation::kNone) return;
  const std::size_t n = static_cast<std::size_t>(M) * static_cast<std::size_t>(N);
  if (gelu_tanh) simd::map1(y, y, n, [](Batch v) { return act::gelu_tanh(v); });
  else simd::map1(y, y, n, [](Batch v) { return act::gelu_exact(v); });
}

// x += d over n floats.
void add_into(float* x, const float* d, std::size_t n) {
  simd::map2(x, d, x, n, [](Batch a, Batch v) { return a + v; });
}

}  // namespace

void gpt_decode_step(const GptDecodeShape& s, const GptWeights& w, const std::int64_t* ids, int pos,
                     float* const* key_caches, float* const* value_caches, float* logits,
                     GptDecodeBuffers& buf) {
  const int M = s.B * s.Tn, E = s.E, Dh = s.E / s.H;
  const auto rows = static_cast<std::size_t>(M);
  const auto ue = static_cast<std::size_t>(E);
  auto fit = [](std::vector<float>& v, std::size_t n) {
    if (v.size() < n) v.resize(n);
    return v.data();
  };
  float* x = fit(buf.x, rows * ue);
  float* h = fit(buf.h, rows * ue);
  float* qkv = fit(buf.qkv, rows * 3 * ue);
  float* att = fit(buf.att, rows * ue);
  float* ff = fit(buf.ff, rows * static_cast<std::size_t>(s.F));
  float* last = fit(buf.last, static_cast<std::size_t>(s.B) * ue);
  float* mean = fit(buf.mean, rows);
  float* rstd = fit(buf.rstd, rows);
  const Activation gelu = s.gelu_tanh ? Activation::kGeluTanh : Activation::kGelu;

  // x (M, E) = token + position embeddings
  for (int m = 0; m < M; ++m) {
    const float* tok = w.wte + ids[m] * E;
    const float* where = w.wpe + static_cast<I64>(pos + m % s.Tn) * E;
    simd::map2(tok, where, x + static_cast<I64>(m) * E, ue, [](Batch a, Batch p) { return a + p; });
  }

  KvShape ks;
  ks.B = s.B;
  ks.H = s.H;
  ks.Tn = s.Tn;
  ks.Tmax = s.Tmax;
  ks.D = Dh;
  ks.Dv = Dh;
  ks.pos = pos;
  const float scale = 1.0f / std::sqrt(static_cast<float>(Dh));
  const I64 row3 = 3 * static_cast<I64>(E), seq3 = row3 * s.Tn, seq = static_cast<I64>(E) * s.Tn;
  for (int l = 0; l < s.L; ++l) {
    const GptBlockWeights& bw = w.blocks[static_cast<std::size_t>(l)];
    layer_norm_forward(x, bw.ln1_w, bw.ln1_b, h, mean, rstd, rows, ue, s.eps);
    project(h, bw.qkv_w, bw.qkv_b, qkv, M, E, 3 * E, Activation::kNone, s.gelu_tanh);
    // heads of the packed (B, Tn, 3E) projection and of the merged (B, Tn, E) output
    const AttnView q{qkv, seq3, Dh, row3}, k{qkv + E, seq3, Dh, row3}, v{qkv + 2 * E, seq3, Dh, row3};
    const AttnMutView o{att, seq, Dh, E};
    kv_cache_attention(ks, scale, q, k, v, key_caches[l], value_caches[l], o);
    project(att, bw.out_w, bw.out_b, h, M, E, E, Activation::kNone, s.gelu_tanh);
    add_into(x, h, rows * ue);
    layer_norm_forward(x, bw.ln2_w, bw.ln2_b, h, mean, rstd, rows, ue, s.eps);
    project(h, bw.fc_w, bw.fc_b, ff, M, E, s.F, gelu, s.gelu_tanh);
    project(ff, bw.proj_w, bw.proj_b, h, M, s.F, E, Activation::kNone, s.gelu_tanh);
    add_into(x, h, rows * ue);
  }
  // logits (B, V) of each sequence's last new token, through the tied output layer
  for (int b = 0; b < s.B; ++b) {
    const float* xb = x + (static_cast<I64>(b) * s.Tn + s.Tn - 1) * E;
    std::copy(xb, xb + E, last + static_cast<I64>(b) * E);
  }
  layer_norm_forward(last, w.lnf_w, w.lnf_b, h, mean, rstd, static_cast<std::size_t>(s.B), ue, s.eps);
  project(h, w.wte, nullptr, logits, s.B, E, s.V, Activation::kNone, s.gelu_tanh);
}

SEQLAB_LEVEL_END
}  // namespace seqlab
