// The teacher-forced pointer-generator decoder (see pointer_generator.hpp): the
// attention decoder of decoder.cpp, then the copy gate, the mixture and the NLL.
#include "seqlab/pointer_generator.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <type_traits>

#include "seqlab/blas.hpp"
#include "seqlab/decoder_attention.hpp"
#include "seqlab/gemm_microkernel.hpp"
#include "seqlab/recurrent_cells.hpp"
#include "seqlab/recurrent_gemm.hpp"
#include "seqlab/recurrent_rows.hpp"
#include "seqlab/simd.hpp"
#include "seqlab/thread_pool.hpp"

namespace seqlab {
SEQLAB_LEVEL_BEGIN
namespace {

using recurrent::add_row;
using recurrent::axpy;
using recurrent::ensure_shape;
using recurrent::fbatch;
using recurrent::load;
using recurrent::row_grain;
using recurrent::simd_for;
using recurrent::store;
using usize = std::size_t;
constexpr int kW = static_cast<int>(fbatch::size);

int source_length(const PointerGeneratorCache& c, usize b) {
  return c.dec.memory_lengths.empty() ? c.shape.dec.S : static_cast<int>(c.dec.memory_lengths[b]);
}

// Copy weight of `id` at row (b, t): the heads' mean attention on the source
// positions holding it.
float copy_weight(const PointerGeneratorCache& c, usize b, usize bt, std::int64_t id) {
  const DecoderShape& s = c.shape.dec;
  const usize S = static_cast<usize>(s.S);
  const float* probs = c.dec.probs.data() + bt * s.heads * S;
  const std::int64_t* src = c.source_ids.data() + b * S;
  const int len = source_length(c, b);
  float sum = 0.0f;
  for (int k = 0; k < len; ++k)
    if (src[k] == id)
      for (int h = 0; h < s.heads; ++h) sum += probs[h * S + k];
  return sum / static_cast<float>(s.heads);
}

float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

// row += bias (unless null) in one pass; returns the row's largest value.
float add_bias_max(float* row, const float* bias, int n) {
  fbatch acc(-std::numeric_limits<float>::infinity());
  int j = 0;
  for (; j + kW <= n; j += kW) {
    fbatch v = fbatch::load_unaligned(row + j);
    if (bias) {
      v += fbatch::load_unaligned(bias + j);
      v.store_unaligned(row + j);
    }
    acc = xsimd::max(acc, v);
  }
  float m = simd::lane_max(acc);
  for (; j < n; ++j) {
    if (bias) row[j] += bias[j];
    m = std::max(m, row[j]);
  }
  return m;
}

// log sum_j exp(row[j]) given the row's max m (read only; the row stays the logits).
float log_sum_exp(const float* row, int n, float m) {
  if (m == -std::numeric_limits<float>::infinity()) return m;
  const fbatch mb(m);
  fbatch acc(0.0f);
  int j = 0;
  for (; j + kW <= n; j += kW) acc += xsimd::exp(fbatch::load_unaligned(row + j) - mb);
  float sum = xsimd::hadd(acc);
  for (; j < n; ++j) sum += std::exp(row[j] - m);
  return m + std::log(sum);
}

}  // namespace

float pointer_generator_forward(const PointerGeneratorShape& shape, const DecoderWeights& w,
                                const float* w_gen, const float* b_gen, const float* inputs,
                                const float* h0, const float* c0, const float* memory,
                                const std::int64_t* memory_lengths, const std::int64_t* source_ids,
                                const std::int64_t* target_ids, const std::uint8_t* target_mask,
                                PointerGeneratorCache& c) {
  // The head's GEMMs split over the pool, each part one single-threaded OpenBLAS call:
  // OpenBLAS's own threads spin for a while after each call and would take the second
  // core from the pool's next loop (the gather, the softmax rows, the decoder's steps).
  const SerialBlas serial;
  const DecoderShape& s = shape.dec;
  const usize B = static_cast<usize>(s.B), T = static_cast<usize>(s.T), BT = B * T;
  const int V = s.O, Z = 2 * s.H, E = s.E;
  c.shape = shape;
  c.w_out = w.w_out;
  c.b_out = w.b_out;
  c.w_gen = w_gen;
  c.b_gen = b_gen ? *b_gen : 0.0f;
  c.source_ids.assign(source_ids, source_ids + B * s.S);
  c.target_ids.assign(target_ids, target_ids + BT);
  c.mask.assign(target_mask, target_mask + BT);
  c.rows.clear();
  for (usize r = 0; r < BT; ++r)
    if (c.mask[r]) c.rows.push_back(r);
  const usize n = c.count = c.rows.size();
  ensure_shape(c.p_gen, BT);
  ensure_shape(c.p_vocab, BT);
  ensure_shape(c.p_copy, BT);
  std::fill(c.p_gen.begin(), c.p_gen.end(), 0.0f);
  std::fill(c.p_vocab.begin(), c.p_vocab.end(), 0.0f);
  std::fill(c.p_copy.begin(), c.p_copy.end(), 0.0f);
  // The decoder's recurrent core, every step teacher-forced, without its output head:
  // the head below projects the counted rows only.
  DecoderWeights core = w;
  core.w_out = nullptr;
  core.b_out = nullptr;
  const std::vector<std::uint8_t> teacher(BT, 1);
  decoder_forward(CellKind::Lstm, s, core, inputs, teacher.data(), h0, c0, memory, memory_lengths, nullptr,
                  nullptr, c.dec);
  if (n == 0) return 0.0f;

  // Logits of the counted rows: their features gathered, one GEMM.
  const float* feat = c.dec.features.data();
  const float* U = c.dec.inputs.data();
  ensure_shape(c.head_features, n, static_cast<usize>(Z));
  ensure_shape(c.logits, n, static_cast<usize>(V));
  ensure_shape(c.log_norm, n);
  float* hf = c.head_features.data();
  parallel_for(n, row_grain(static_cast<usize>(Z)), [&](usize i0, usize i1) {
    for (usize i = i0; i < i1; ++i) std::memcpy(hf + i * Z, feat + c.rows[i] * Z, Z * sizeof(float));
  });
  float* logits = c.logits.data();
  sgemm_rows_parallel(false, true, static_cast<int>(n), V, Z, 1.0f, hf, Z, w.w_out, Z, 0.0f, logits, V);

  std::vector<double> row_loss(n, 0.0);
  parallel_for(n, row_grain(static_cast<usize>(V)), [&](usize i0, usize i1) {
    for (usize i = i0; i < i1; ++i) {
      const usize r = c.rows[i], b = r / T;
      const std::int64_t y = c.target_ids[r];
      float* row = logits + i * V;
      const float lse = log_sum_exp(row, V, add_bias_max(row, w.b_out, V));
      c.log_norm[i] = lse;
      const float z = simd::row_dot(w_gen, feat + r * Z, Z) + simd::row_dot(w_gen + Z, U + r * E, E) + c.b_gen;
      const float pg = sigmoid(z);
      const float pv = y < V ? std::exp(row[y] - lse) : 0.0f;
      const float pc = copy_weight(c, b, r, y);
      c.p_gen[r] = pg;
      c.p_vocab[r] = pv;
      c.p_copy[r] = pc;
      row_loss[i] = -std::log(static_cast<double>(pg * pv + (1.0f - pg) * pc + kPointerGeneratorEps));
    }
  });
  double total = 0.0;
  for (double l : row_loss) total += l;
  return static_cast<float>(total / static_cast<double>(n));
}

void pointer_generator_backward(PointerGeneratorCache& c, float d_loss, const DecoderGrads& grads,
                                float* d_w_gen, float* d_b_gen, float* d_inputs, float* dh0,
                                float* dc0, float* d_memory) {
  const SerialBlas serial;  // as in the forward: the head's GEMMs split over the pool
  const DecoderShape& s = c.shape.dec;
  const usize B = static_cast<usize>(s.B), T = static_cast<usize>(s.T), BT = B * T;
  const usize S = static_cast<usize>(s.S);
  const int V = s.O, Z = 2 * s.H, E = s.E, heads = s.heads;
  const usize n = c.count;
  ensure_shape(c.d_features, BT, static_cast<usize>(Z));
  ensure_shape(c.d_probs, BT * heads, S);
  ensure_shape(c.d_inputs, BT, static_cast<usize>(E));
  ensure_shape(c.d_gate, BT);
  const float scale = n ? d_loss / static_cast<float>(n) : 0.0f;
  // d P(y) of a counted row.
  const auto d_prob = [&](usize r) {
    return -scale / (c.p_gen[r] * c.p_vocab[r] + (1.0f - c.p_gen[r]) * c.p_copy[r] + kPointerGeneratorEps);
  };
  // The copy's and the gate's gradients, every row.
  parallel_for(BT, row_grain(static_cast<usize>(heads) * S + Z), [&](usize r0, usize r1) {
    for (usize r = r0; r < r1; ++r) {
      float* dp = c.d_probs.data() + r * heads * S;
      float* dfeat = c.d_features.data() + r * Z;
      std::fill(dp, dp + heads * S, 0.0f);
      if (!c.mask[r]) {
        std::fill(dfeat, dfeat + Z, 0.0f);
        c.d_gate[r] = 0.0f;
        continue;
      }
      const usize b = r / T;
      const std::int64_t y = c.target_ids[r];
      const float pg = c.p_gen[r], pv = c.p_vocab[r], pc = c.p_copy[r];
      const float g = d_prob(r);
      // Copy part: every position holding y, every head, gets g (1 - pg) / heads.
      const float dcopy = g * (1.0f - pg) / static_cast<float>(heads);
      const std::int64_t* src = c.source_ids.data() + b * S;
      const int len = source_length(c, b);
      for (int k = 0; k < len; ++k)
        if (src[k] == y)
          for (int h = 0; h < heads; ++h) dp[h * S + k] = dcopy;
      // Gate: d z = g (pv - pc) pg (1 - pg).
      const float dz = g * (pv - pc) * pg * (1.0f - pg);
      c.d_gate[r] = dz;
      for (int j = 0; j < Z; ++j) dfeat[j] = dz * c.w_gen[j];
    }
  });
  if (n > 0) {
    // The vocabulary head: d logit_j = g pg pv (delta_jy - softmax_j), in place of the
    // logits, row chunk k summing its rows into d_bias[k] (summed in chunk order below,
    // so the bias's gradient depends on the thread count only).
    const usize chunks = std::min<usize>(n, static_cast<usize>(get_num_threads()));
    float* dl_all = c.logits.data();
    if (grads.b_out) {
      ensure_shape(c.d_bias, chunks, static_cast<usize>(V));
      std::fill(c.d_bias.begin(), c.d_bias.end(), 0.0f);
    }
    parallel_for(chunks, 1, [&](usize k0, usize k1) {
      for (usize k = k0; k < k1; ++k) {
        float* bias_sum = grads.b_out ? c.d_bias.data() + k * V : nullptr;
        for (usize i = k * n / chunks; i < (k + 1) * n / chunks; ++i) {
          const usize r = c.rows[i];
          const std::int64_t y = c.target_ids[r];
          const float coef = d_prob(r) * c.p_gen[r] * c.p_vocab[r];
          float* dl = dl_all + i * V;
          const float lse = c.log_norm[i];
          simd_for(V, [&](int j, auto v) {
            using Vt = decltype(v);
            store(dl + j, Vt(-coef) * recurrent::exp_(load<Vt>(dl + j) - Vt(lse)));
          });
          if (y < V) dl[y] += coef;
          if (bias_sum) add_row(bias_sum, dl, V);
        }
      }
    });
    // d [h; ctx] of the counted rows = d logits @ W_out, added to their gate part.
    ensure_shape(c.d_head, n, static_cast<usize>(Z));
    float* dh = c.d_head.data();
    sgemm_rows_parallel(false, false, static_cast<int>(n), Z, V, 1.0f, dl_all, V, c.w_out, Z, 0.0f, dh, Z);
    for (usize i = 0; i < n; ++i) add_row(c.d_features.data() + c.rows[i] * Z, dh + i * Z, Z);
    if (grads.w_out)
      sgemm_rows_parallel(true, false, V, Z, static_cast<int>(n), 1.0f, dl_all, V, c.head_features.data(), Z, 1.0f,
                          grads.w_out, Z);
    if (grads.b_out)
      for (usize k = 0; k < chunks; ++k) add_row(grads.b_out, c.d_bias.data() + k * V, V);
  }
  DecoderGrads dg = grads;
  dg.start = nullptr;  // the start's gradient is added below, with the gate's part
  dg.w_out = nullptr;  // the head's gradients are done above
  dg.b_out = nullptr;
  DecoderBackwardExtras ex;
  ex.d_features = c.d_features.data();
  ex.d_probs = c.d_probs.data();
  ex.d_inputs = c.d_inputs.data();
  decoder_backward(c.dec, nullptr, dg, dh0, dc0, d_memory, nullptr, ex);

  const float* feat = c.dec.features.data();
  const float* U = c.dec.inputs.data();
  float* dU = c.d_inputs.data();
  for (usize r = 0; r < BT; ++r) {
    const float dz = c.d_gate[r];
    if (dz == 0.0f) continue;
    axpy(dU + r * E, dz, c.w_gen + Z, E);
    if (d_w_gen) {
      axpy(d_w_gen, dz, feat + r * Z, Z);
      axpy(d_w_gen + Z, dz, U + r * E, E);
    }
    if (d_b_gen) *d_b_gen += dz;
  }
  // u_t is the start at t = 0, inputs[:, t-1] after.
  for (usize b = 0; b < B; ++b) {
    if (grads.start) add_row(grads.start, dU + b * T * E, E);
    if (!d_inputs) continue;
    float* di = d_inputs + b * T * E;
    std::memcpy(di, dU + (b * T + 1) * E, (T - 1) * E * sizeof(float));
    std::fill(di + (T - 1) * E, di + T * E, 0.0f);
  }
}

SEQLAB_LEVEL_END
}  // namespace seqlab

namespace seqlab {
SEQLAB_LEVEL_BEGIN

// Keeps the k largest (value, id) pairs of a row scanned in ascending id order, largest
// first, ties by the smaller id: a batch of values is looked at only when one beats the
// current k-th.
class TopK {
 public:
  TopK(int k, float* values, std::int64_t* ids) : k_(k), values_(values), ids_(ids) {}

  void scan(const float* row, int n) {
    int j = 0;
    for (; j + kW <= n; j += kW) {
      if (filled_ == k_ && !xsimd::any(fbatch::load_unaligned(row + j) > fbatch(values_[k_ - 1]))) continue;
      for (int l = j; l < j + kW; ++l) offer(row[l], l);
    }
    for (; j < n; ++j) offer(row[j], j);
  }

  // Offers one pair; offered in ascending id order, ties keep the smaller id first.
  void offer(float v, std::int64_t id) {
    if (filled_ == k_ && !(v > values_[k_ - 1])) return;
    int pos = filled_ < k_ ? filled_++ : k_ - 1;
    for (; pos > 0 && v > values_[pos - 1]; --pos) {
      values_[pos] = values_[pos - 1];
      ids_[pos] = ids_[pos - 1];
    }
    values_[pos] = v;
    ids_[pos] = id;
  }

 private:
  int k_, filled_ = 0;
  float* values_;
  std::int64_t* ids_;
};

// logits rows (n < N) x columns [v0, v1) = feat (N, Z) @ w^T for a row-major w (V, Z):
// streams w once, R of its rows at a time, each dotted with every feature row (which stay
// in L1). For the few rows of a decoding step this product is bound by reading w; a
// general GEMM first copies all of w into its panel layout on every call (OpenBLAS's
// packing took three times its kernel's time at N = 5, V = 50,000, Z = 512).
// Software prefetch distance of the streamed weight: the hardware prefetchers stop at
// each 4 kB page, and rows of 1 to 2 kB cross one every row or two.
constexpr usize kPrefetchBytes = 8192;

template <int N>
void few_rows_product(const float* feat, int Z, const float* w, usize v0, usize v1, float* logits, usize ldl) {
  constexpr int R = N >= 5 ? 1 : 8 / N;  // N*R accumulators, N feature and one weight register
  const int zb = Z / kW * kW;
  const usize ahead = kPrefetchBytes / sizeof(float);  // floats ahead of the one read
  usize v = v0;
  const auto rows = [&](auto r_count) {
    constexpr int Rc = decltype(r_count)::value;
    fbatch acc[N][Rc];
    for (int n = 0; n < N; ++n)
      for (int r = 0; r < Rc; ++r) acc[n][r] = fbatch(0.0f);
    for (int k = 0; k < zb; k += kW) {
      fbatch f[N];
      for (int n = 0; n < N; ++n) f[n] = fbatch::load_unaligned(feat + static_cast<usize>(n) * Z + k);
      for (int r = 0; r < Rc; ++r) {
        __builtin_prefetch(w + (v + r) * Z + k + ahead);
        const fbatch wr = fbatch::load_unaligned(w + (v + r) * Z + k);
        for (int n = 0; n < N; ++n) acc[n][r] = xsimd::fma(f[n], wr, acc[n][r]);
      }
    }
    for (int n = 0; n < N; ++n)
      for (int r = 0; r < Rc; ++r) {
        float sum = xsimd::hadd(acc[n][r]);
        for (int k = zb; k < Z; ++k) sum += feat[static_cast<usize>(n) * Z + k] * w[(v + r) * Z + k];
        logits[n * ldl + v + r] = sum;
      }
  };
  for (; v + R <= v1; v += R) rows(std::integral_constant<int, R>{});
  for (; v < v1; ++v) rows(std::integral_constant<int, 1>{});
}

// logits (N, V) = feat (N, ldf) @ w^T for any N, w streamed from memory once: the columns
// split over the pool, and within a thread's columns, blocks of `block` rows of w (~128
// kB, kept in L2) each serving every group of up to 8 feature rows through
// group(n, feat rows, v0, v1, logits rows). One GEMM would copy all of w into its panel
// layout on every call (OpenBLAS's packing took three times its kernel's time at N = 5,
// V = 50,000, Z = 512), and its threads would spin beside the pool's.
template <class Group>
void streamed_logits(int N, const float* feat, usize ldf, int V, usize block, float* logits, const Group& group) {
  parallel_for(static_cast<usize>(V), block, [&](usize c0, usize c1) {
    for (usize v0 = c0; v0 < c1; v0 += block) {
      const usize v1 = std::min(c1, v0 + block);
      for (int g = 0; g < N; g += 8)
        group(std::min(8, N - g), feat + static_cast<usize>(g) * ldf, v0, v1,
              logits + static_cast<usize>(g) * static_cast<usize>(V));
    }
  });
}

// Calls product(std::integral_constant<int, n>{}) for n in 1..8 (a group's rows), so each
// row count runs its own unrolled instantiation.
template <class Product>
void by_row_count(int n, const Product& product) {
  switch (n) {
    case 1: return product(std::integral_constant<int, 1>{});
    case 2: return product(std::integral_constant<int, 2>{});
    case 3: return product(std::integral_constant<int, 3>{});
    case 4: return product(std::integral_constant<int, 4>{});
    case 5: return product(std::integral_constant<int, 5>{});
    case 6: return product(std::integral_constant<int, 6>{});
    case 7: return product(std::integral_constant<int, 7>{});
    default: return product(std::integral_constant<int, 8>{});
  }
}

// Up to this many rows a step streams w_out (memory-bound); more rows make the product
// compute-bound, where OpenBLAS's kernel is faster than the streaming one.
constexpr int kStreamedRows = 32;

// logits (N, V) = feat (N, Z) @ w^T (fp32 w (V, Z)): streamed for up to kStreamedRows
// rows, else one GEMM split over the pool.
void step_logits(int N, const float* feat, int Z, const float* w, int V, float* logits) {
  if (N > kStreamedRows) {
    const SerialBlas serial;
    return sgemm_rows_parallel(false, true, N, V, Z, 1.0f, feat, Z, w, Z, 0.0f, logits, V);
  }
  const usize ldl = static_cast<usize>(V);
  const auto group = [&](int n, const float* f, usize v0, usize v1, float* out) {
    by_row_count(n, [&](auto rows) { few_rows_product<decltype(rows)::value>(f, Z, w, v0, v1, out, ldl); });
  };
  streamed_logits(N, feat, static_cast<usize>(Z), V, std::max<usize>(1, (usize{1} << 15) / static_cast<usize>(Z)),
                  logits, group);
}

// One logit as few_rows_product computes it (same lanes, same order: bit-identical), for
// re-scoring a candidate of the bf16 path in fp32.
float exact_logit(const float* feat, int Z, const float* w_row) {
  const int zb = Z / kW * kW;
  fbatch acc(0.0f);
  for (int k = 0; k < zb; k += kW)
    acc = xsimd::fma(fbatch::load_unaligned(feat + k), fbatch::load_unaligned(w_row + k), acc);
  float sum = xsimd::hadd(acc);
  for (int k = zb; k < Z; ++k) sum += feat[k] * w_row[k];
  return sum;
}

// A bf16 copy of a row-major (V, Z) weight for decoding steps, made once per stepper: each
// row padded with zeros to Zp = Z rounded up to 2 kW and stored as Zp / 2 32-bit words;
// word i of a block of 2 kW weights holds weight i of the block in its low half and
// weight kW + i in its high half, so one load and a shift or a mask give two fp32
// batches (the bf16 value is the top half of an fp32). Streams half the bytes of the
// fp32 weight. col_max[j] = max_v |w[v, j]| bounds the rounding error of a logit:
// |f . w_v - f . bf16(w_v)| <= 2^-8 sum_j |f_j| col_max[j] (round to nearest even).
struct Bf16Weight {
  std::vector<std::uint32_t> words;  // (V, Zp / 2)
  std::vector<float> col_max;        // (Z)
  int Zp = 0;

  Bf16Weight() = default;
  Bf16Weight(const float* w, int V, int Z)
      : col_max(static_cast<usize>(Z), 0.0f), Zp((Z + 2 * kW - 1) / (2 * kW) * (2 * kW)) {
    const usize half = static_cast<usize>(Zp / 2);
    words.assign(static_cast<usize>(V) * half, 0u);
    constexpr usize kChunks = 64;
    std::vector<float> partial(kChunks * static_cast<usize>(Z), 0.0f);
    const usize per = (static_cast<usize>(V) + kChunks - 1) / kChunks;
    parallel_for(kChunks, 1, [&](usize c0, usize c1) {
      for (usize ch = c0; ch < c1; ++ch) {
        float* mx = partial.data() + ch * static_cast<usize>(Z);
        for (usize v = ch * per; v < std::min<usize>(static_cast<usize>(V), (ch + 1) * per); ++v) {
          const float* row = w + v * static_cast<usize>(Z);
          std::uint32_t* out = words.data() + v * half;
          for (int j = 0; j < Z; ++j) {
            mx[j] = std::max(mx[j], std::abs(row[j]));
            const int block = j / (2 * kW), in = j % (2 * kW);
            const usize word = static_cast<usize>(block * kW + in % kW);
            const std::uint32_t bits = gemm::to_bf16(row[j]);
            out[word] |= in < kW ? bits : bits << 16;
          }
        }
      }
    });
    for (usize ch = 0; ch < kChunks; ++ch)
      for (usize j = 0; j < static_cast<usize>(Z); ++j)
        col_max[j] = std::max(col_max[j], partial[ch * static_cast<usize>(Z) + j]);
  }
};

using ubatch = xsimd::batch<std::uint32_t, fbatch::arch_type>;

// logits rows (n < N) x columns [v0, v1) = feat (N, Zp, zero-padded) @ bf16(w)^T: as
// few_rows_product, reading the bf16 words (two fp32 batches per load, one accumulator
// each).
template <int N>
void few_rows_product_bf16(const float* feat, int Zp, const std::uint32_t* w, usize v0, usize v1, float* logits,
                           usize ldl) {
  constexpr int R = N >= 3 ? 1 : 4 / N;
  const usize half = static_cast<usize>(Zp / 2);
  const usize ahead = kPrefetchBytes / sizeof(std::uint32_t);
  const ubatch high_mask(0xffff0000u);
  usize v = v0;
  const auto rows = [&](auto r_count) {
    constexpr int Rc = decltype(r_count)::value;
    fbatch lo[N][Rc], hi[N][Rc];
    for (int n = 0; n < N; ++n)
      for (int r = 0; r < Rc; ++r) lo[n][r] = hi[n][r] = fbatch(0.0f);
    for (int k = 0; k < Zp; k += 2 * kW) {
      for (int r = 0; r < Rc; ++r) {
        const std::uint32_t* words = w + (v + r) * half + static_cast<usize>(k / 2);
        __builtin_prefetch(words + ahead);
        const ubatch u = ubatch::load_unaligned(words);
        const fbatch wl = xsimd::bitwise_cast<fbatch>(u << 16);
        const fbatch wh = xsimd::bitwise_cast<fbatch>(u & high_mask);
        for (int n = 0; n < N; ++n) {
          const float* f = feat + static_cast<usize>(n) * static_cast<usize>(Zp) + k;
          lo[n][r] = xsimd::fma(fbatch::load_unaligned(f), wl, lo[n][r]);
          hi[n][r] = xsimd::fma(fbatch::load_unaligned(f + kW), wh, hi[n][r]);
        }
      }
    }
    for (int n = 0; n < N; ++n)
      for (int r = 0; r < Rc; ++r) logits[static_cast<usize>(n) * ldl + v + r] = xsimd::hadd(lo[n][r] + hi[n][r]);
  };
  for (; v + R <= v1; v += R) rows(std::integral_constant<int, R>{});
  for (; v < v1; ++v) rows(std::integral_constant<int, 1>{});
}

// logits (N, V) = feat (N, Zp, zero-padded) @ bf16(w)^T.
void bf16_step_logits(int N, const float* feat, const Bf16Weight& w, int V, float* logits) {
  const usize ldl = static_cast<usize>(V);
  const int Zp = w.Zp;
  const std::uint32_t* words = w.words.data();
  const auto group = [&](int n, const float* f, usize v0, usize v1, float* out) {
    by_row_count(n, [&](auto rows) { few_rows_product_bf16<decltype(rows)::value>(f, Zp, words, v0, v1, out, ldl); });
  };
  streamed_logits(N, feat, static_cast<usize>(Zp), V, std::max<usize>(1, (usize{1} << 16) / static_cast<usize>(Zp)),
                  logits, group);
}

// The stepper of this level: the step's weights packed once (recurrent_gemm.hpp), and
// per example the distinct extended ids of its source, the only ids whose
// log-probability needs the copy mixture.
class PackedPointerGeneratorStepper final : public PointerGeneratorStepper {
 public:
  PackedPointerGeneratorStepper(const PointerGeneratorShape& shape, const DecoderWeights& w, const float* w_gen,
                                const float* b_gen, const float* memory,
                                const std::int64_t* memory_lengths, const std::int64_t* source_ids, bool bf16);
  void step(int N, const std::int64_t* rows, const float* x, const float* h, const float* c, float* h_new,
            float* c_new, float* log_probs, float* attention, int top_k, float* top_values,
            std::int64_t* top_ids) override;
  const PointerGeneratorShape& shape() const override { return shape_; }

 private:
  PointerGeneratorShape shape_;
  DecoderWeights w_;
  const float* w_gen_;
  float b_gen_;
  std::vector<std::int64_t> lengths_;
  // Example b's distinct source ids are distinct_[first_[b] .. first_[b + 1]); slot_[b*S + k]
  // is position k's index among them.
  std::vector<std::int64_t> distinct_;
  std::vector<std::size_t> first_;
  std::vector<int> slot_;
  recurrent::PackedMatrix w_ih_t_, w_hh_t_, w_q_t_, w_o_t_;
  std::vector<float> bias_;  // b_ih + b_hh (4H)
  xt::xtensor<float, 2> keys_t_, values_, values_t_;  // (B*H, S), (B*S, H), (B*H, S)
  bool bf16_;
  Bf16Weight w_out_bf16_;  // the bf16 path's copy of w_out (empty in fp32)
  // Step workspaces.
  xt::xtensor<float, 2> gates_, gh_, q_, ctx_, feat_, probs_, logits_, out_, mass_, feat_pad_, near_values_;
  std::vector<std::int64_t> near_ids_, candidates_;

  // The bf16 path's row n: out (X) holds log-probabilities from bf16 logits lg (V, biased);
  // re-scores in fp32 every id that can be among the row's max(top_k, 1) best and returns
  // false when they are more than the candidate buffer holds.
  bool rescore_row(usize n, usize b, int top_k, const float* z, float* lg, float* out, float pg, float lse,
                   const float* mass);
  // out (X): the log-probabilities of example b's row from its biased logits lg (V), their
  // log-sum-exp, the gate and the copy mass of each distinct source id.
  void fill_log_probs(const float* lg, float lse, float pg, usize b, const float* mass, float* out) const;
  static constexpr usize kRescoreCandidates = 2048;
};

PackedPointerGeneratorStepper::PackedPointerGeneratorStepper(const PointerGeneratorShape& shape,
                                                             const DecoderWeights& w, const float* w_gen,
                                                             const float* b_gen, const float* memory,
                                                             const std::int64_t* memory_lengths,
                                                             const std::int64_t* source_ids, bool bf16)
    : shape_(shape),
      w_(w),
      w_gen_(w_gen),
      b_gen_(b_gen ? *b_gen : 0.0f),
      w_ih_t_(recurrent::PackedMatrix::from_transposed(w.w_ih, 4 * shape.dec.H, shape.dec.E)),
      w_hh_t_(recurrent::PackedMatrix::from_transposed(w.w_hh, 4 * shape.dec.H, shape.dec.H)),
      w_q_t_(recurrent::PackedMatrix::from_transposed(w.w_q, shape.dec.H, shape.dec.H)),
      w_o_t_(recurrent::PackedMatrix::from_transposed(w.w_o, shape.dec.H, shape.dec.H)),
      bf16_(bf16) {
  if (bf16_) w_out_bf16_ = Bf16Weight(w.w_out, shape.dec.O, 2 * shape.dec.H);
  const DecoderShape& s = shape.dec;
  const usize B = static_cast<usize>(s.B), S = static_cast<usize>(s.S), H = static_cast<usize>(s.H);
  const int GH = 4 * s.H;
  if (memory_lengths) lengths_.assign(memory_lengths, memory_lengths + B); else lengths_.assign(B, s.S);
  first_.assign(1, 0);
  slot_.assign(B * S, 0);
  for (usize b = 0; b < B; ++b) {
    const std::int64_t* src = source_ids + b * S;
    for (int k = 0; k < lengths_[b]; ++k) {
      const auto begin = distinct_.begin() + static_cast<std::ptrdiff_t>(first_.back());
      const auto at = std::find(begin, distinct_.end(), src[k]);
      slot_[b * S + k] = static_cast<int>(at - begin);
      if (at == distinct_.end()) distinct_.push_back(src[k]);
    }
    first_.push_back(distinct_.size());
  }
  bias_.assign(static_cast<usize>(GH), 0.0f);
  if (w.b_ih) add_row(bias_.data(), w.b_ih, GH);
  if (w.b_hh) add_row(bias_.data(), w.b_hh, GH);
  // Keys and values of every source once: (B*S, H), then transposed per example.
  xt::xtensor<float, 2> keys;
  ensure_shape(keys, B * S, H);
  ensure_shape(values_, B * S, H);
  ensure_shape(keys_t_, B * H, S);
  ensure_shape(values_t_, B * H, S);
  const int BS = static_cast<int>(B * S);
  const SerialBlas serial;  // no OpenBLAS threads left spinning beside the pool's steps
  sgemm_rows_parallel(false, true, BS, s.H, s.A, 1.0f, memory, s.A, w.w_k, s.A, 0.0f, keys.data(), s.H);
  sgemm_rows_parallel(false, true, BS, s.H, s.A, 1.0f, memory, s.A, w.w_v, s.A, 0.0f, values_.data(), s.H);
  for (usize r = 0; r < B * S; ++r) {
    if (w.b_k) add_row(keys.data() + r * H, w.b_k, s.H);
    if (w.b_v) add_row(values_.data() + r * H, w.b_v, s.H);
  }
  for (usize b = 0; b < B; ++b)
    for (usize k = 0; k < S; ++k)
      for (usize j = 0; j < H; ++j) {
        keys_t_.data()[(b * H + j) * S + k] = keys.data()[(b * S + k) * H + j];
        values_t_.data()[(b * H + j) * S + k] = values_.data()[(b * S + k) * H + j];
      }
}

void PackedPointerGeneratorStepper::step(int N, const std::int64_t* rows, const float* x, const float* h,
                                         const float* c, float* h_new, float* c_new, float* log_probs,
                                         float* attention, int top_k, float* top_values,
                                         std::int64_t* top_ids) {
  const DecoderShape& s = shape_.dec;
  const int H = s.H, E = s.E, V = s.O, GH = 4 * H, Z = 2 * H, heads = s.heads;
  const usize uN = static_cast<usize>(N), S = static_cast<usize>(s.S), X = static_cast<usize>(shape_.extended);
  const float scale = 1.0f / std::sqrt(static_cast<float>(H / heads));
  ensure_shape(gates_, uN, static_cast<usize>(GH));
  ensure_shape(gh_, uN, static_cast<usize>(GH));
  ensure_shape(q_, uN, static_cast<usize>(H));
  ensure_shape(ctx_, uN, static_cast<usize>(H));
  ensure_shape(feat_, uN, static_cast<usize>(Z));
  ensure_shape(probs_, uN * heads, S);
  ensure_shape(logits_, uN, static_cast<usize>(V));
  ensure_shape(mass_, uN, S);
  if (!log_probs) ensure_shape(out_, uN, X);
  w_ih_t_.multiply(N, x, E, gates_.data(), GH, false);
  w_hh_t_.multiply(N, h, H, gh_.data(), GH, false);
  parallel_for(uN, row_grain(GH), [&](usize r0, usize r1) {
    for (usize n = r0; n < r1; ++n) {
      add_row(gates_.data() + n * GH, bias_.data(), GH);
      recurrent::FwdRow row{};
      row.gates = gates_.data() + n * GH;
      row.gh = gh_.data() + n * GH;
      row.h_prev = h + n * H;
      row.c_prev = c + n * H;
      row.h_new = h_new + n * H;
      row.c_new = c_new + n * H;
      row.y = feat_.data() + n * Z;
      recurrent::LstmCell::forward(row, H);
    }
  });
  w_q_t_.multiply(N, h_new, H, q_.data(), H, false);
  parallel_for(uN, row_grain(2 * S * H), [&](usize r0, usize r1) {
    for (usize n = r0; n < r1; ++n) {
      const usize b = static_cast<usize>(rows[n]);
      float* qn = q_.data() + n * H;
      if (w_.b_q) add_row(qn, w_.b_q, H);
      decoder_attention::attend_row(s, qn, keys_t_.data() + b * H * S, values_.data() + b * S * H,
                                    values_t_.data() + b * H * S, static_cast<int>(lengths_[b]), scale,
                                    probs_.data() + n * heads * S, ctx_.data() + n * H);
    }
  });
  w_o_t_.multiply(N, ctx_.data(), H, feat_.data() + H, Z, false);
  parallel_for(uN, row_grain(static_cast<usize>(Z)), [&](usize r0, usize r1) {
    for (usize n = r0; n < r1; ++n)
      if (w_.b_o) add_row(feat_.data() + n * Z + H, w_.b_o, H);
  });
  // The bf16 copy for the streamed (memory-bound) steps; a GEMM's rows are exact already.
  const bool bf16 = bf16_ && N <= kStreamedRows;
  if (bf16) {
    const usize Zp = static_cast<usize>(w_out_bf16_.Zp);
    ensure_shape(feat_pad_, uN, Zp);
    for (usize n = 0; n < uN; ++n) {
      std::copy(feat_.data() + n * Z, feat_.data() + (n + 1) * Z, feat_pad_.data() + n * Zp);
      std::fill(feat_pad_.data() + n * Zp + Z, feat_pad_.data() + (n + 1) * Zp, 0.0f);
    }
    bf16_step_logits(N, feat_pad_.data(), w_out_bf16_, V, logits_.data());
    const usize near = static_cast<usize>(std::max(top_k, 1));
    ensure_shape(near_values_, uN, near);
    near_ids_.resize(uN * near);
    candidates_.resize(uN * kRescoreCandidates);
  } else {
    step_logits(N, feat_.data(), Z, w_.w_out, V, logits_.data());
  }
  parallel_for(uN, row_grain(static_cast<usize>(V)), [&](usize r0, usize r1) {
    for (usize n = r0; n < r1; ++n) {
      const usize b = static_cast<usize>(rows[n]);
      const float* z = feat_.data() + n * Z;
      float* lg = logits_.data() + n * V;
      const float pg = sigmoid(simd::row_dot(w_gen_, z, Z) + simd::row_dot(w_gen_ + Z, x + n * E, E) + b_gen_);
      float* out = log_probs ? log_probs + n * X : out_.data() + n * X;
      // The copy mass of each distinct source id: the heads' summed attention.
      const float* p = probs_.data() + n * heads * S;
      const int len = static_cast<int>(lengths_[b]);
      const usize distinct = first_[b + 1] - first_[b];
      float* mass = mass_.data() + n * S;
      std::fill(mass, mass + distinct, 0.0f);
      float* att = attention ? attention + n * S : nullptr;
      if (att) std::fill(att, att + S, 0.0f);
      for (int k = 0; k < len; ++k) {
        float a = 0.0f;
        for (int hh = 0; hh < heads; ++hh) a += p[hh * S + k];
        mass[slot_[b * S + static_cast<usize>(k)]] += a;
        if (att) att[k] = a / static_cast<float>(heads);
      }
      float lse = log_sum_exp(lg, V, add_bias_max(lg, w_.b_out, V));
      fill_log_probs(lg, lse, pg, b, mass, out);
      if (bf16 && !rescore_row(n, b, top_k, z, lg, out, pg, lse, mass)) {
        // Too many ids within the rounding bound of the best (a nearly flat row): the
        // whole row in fp32, as the fp32 path computes it.
        few_rows_product<1>(z, Z, w_.w_out, 0, static_cast<usize>(V), lg, 0);
        lse = log_sum_exp(lg, V, add_bias_max(lg, w_.b_out, V));
        fill_log_probs(lg, lse, pg, b, mass, out);
      }
      if (top_k > 0) TopK(top_k, top_values + n * top_k, top_ids + n * top_k).scan(out, static_cast<int>(X));
    }
  });
}

void PackedPointerGeneratorStepper::fill_log_probs(const float* lg, float lse, float pg, usize b, const float* mass,
                                                   float* out) const {
  const int V = shape_.dec.O;
  const usize X = static_cast<usize>(shape_.extended);
  // Ids outside the source: log(pg softmax_w) = logits_w + log pg - lse; the
  // source-only slots -inf until their copy mass is added.
  const float shift = std::log(pg) - lse;
  simd_for(V, [&](int j, auto v) {
    using Vt = decltype(v);
    store(out + j, load<Vt>(lg + j) + Vt(shift));
  });
  std::fill(out + V, out + X, -std::numeric_limits<float>::infinity());
  const std::int64_t* ids = distinct_.data() + first_[b];
  const usize distinct = first_[b + 1] - first_[b];
  const float copy = (1.0f - pg) / static_cast<float>(shape_.dec.heads);
  for (usize u = 0; u < distinct; ++u) {
    const std::int64_t id = ids[u];
    const float vocab = id < V ? pg * std::exp(lg[id] - lse) : 0.0f;
    out[id] = std::log(vocab + copy * mass[u]);
  }
}

// Which ids to re-score: with t the k-th largest of the bf16 row (k = max(top_k, 1)) and
// d the bound on a logit's rounding error (Bf16Weight), an id's log-probability moves by
// at most d from the bf16 value to the fp32 one (the log-sum-exp is the bf16 row's for
// both), so the k-th largest re-scored value is at least t - d and an id among the k
// best after re-scoring has a bf16 value of at least t - 2 d. Re-scoring those in fp32
// (bit-identical to the fp32 path's logits) makes the row's k best ids the fp32
// ranking's. The log-sum-exp is then corrected with the candidates' exact terms (the
// largest), so the log-probabilities differ from the fp32 path's only through the other
// ids' bf16 share of the mass (a shift of at most d; ~1e-6 on peaked rows, up to ~1e-4 on
// flat rows of large logits). The shift moves every vocabulary id's log-probability by
// the same amount and a copied source id's by at most as much: it cannot lift a
// non-candidate into the k best, but a source id and a vocabulary id closer than it may
// swap.
bool PackedPointerGeneratorStepper::rescore_row(usize n, usize b, int top_k, const float* z, float* lg, float* out,
                                                float pg, float lse, const float* mass) {
  const int V = shape_.dec.O, Z = 2 * shape_.dec.H;
  const int X = shape_.extended;
  const int near = std::max(top_k, 1);
  float* nv = near_values_.data() + n * static_cast<usize>(near);
  std::int64_t* ni = near_ids_.data() + n * static_cast<usize>(near);
  TopK(near, nv, ni).scan(out, X);
  float bound = 0.0f, size = 0.0f;
  for (int j = 0; j < Z; ++j) {
    bound += std::abs(z[j]) * w_out_bf16_.col_max[static_cast<usize>(j)];
    size += std::abs(z[j]);
  }
  // 2^-8 relative rounding, the two sums' fp32 rounding (Z 2^-23 of the same sum),
  // denormal weights flushed to zero, and the few roundings after the sum.
  const float d = bound * (0x1p-8f + static_cast<float>(Z) * 0x1p-22f) + size * std::numeric_limits<float>::min();
  const float t = nv[near - 1];
  if (!std::isfinite(t)) return true;  // fewer than `near` reachable ids: nothing to re-rank
  const float threshold = t - 2.0f * d - 1e-6f * (1.0f + std::abs(t));
  std::int64_t* cand = candidates_.data() + n * kRescoreCandidates;
  usize count = 0;
  int j = 0;
  const fbatch th(threshold);
  for (; j < V; j += kW) {
    if (j + kW <= V && !xsimd::any(fbatch::load_unaligned(out + j) >= th)) continue;
    for (int l = j; l < std::min(j + kW, V); ++l)
      if (out[l] >= threshold) {
        if (count == kRescoreCandidates) return false;
        cand[count++] = l;
      }
  }
  // The candidates' exact logits, and the log-sum-exp with their terms exact: the
  // largest terms, so only the other ids' small share of the mass keeps bf16 error.
  double total = 1.0;
  for (usize i = 0; i < count; ++i) {
    const usize id = static_cast<usize>(cand[i]);
    const float exact = exact_logit(z, Z, w_.w_out + id * static_cast<usize>(Z)) + (w_.b_out ? w_.b_out[id] : 0.0f);
    total += std::exp(static_cast<double>(exact) - lse) - std::exp(static_cast<double>(lg[id]) - lse);
    lg[id] = exact;
  }
  if (count) fill_log_probs(lg, lse + static_cast<float>(std::log(total)), pg, b, mass, out);
  return true;
}

std::unique_ptr<PointerGeneratorStepper> make_pointer_generator_stepper(
    const PointerGeneratorShape& shape, const DecoderWeights& w, const float* w_gen, const float* b_gen,
    const float* memory, const std::int64_t* memory_lengths, const std::int64_t* source_ids, bool bf16_logits) {
  return std::make_unique<PackedPointerGeneratorStepper>(shape, w, w_gen, b_gen, memory, memory_lengths,
                                                         source_ids, bf16_logits);
}

SEQLAB_LEVEL_END
}  // namespace seqlab
