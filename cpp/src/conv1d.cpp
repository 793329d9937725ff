#include "seqlab/conv1d.hpp"

#include <algorithm>
#include <cstring>

#include "seqlab/activations.hpp"
#include "seqlab/blas.hpp"
#include "seqlab/linear.hpp"
#include "seqlab/recurrent_rows.hpp"
#include "seqlab/simd.hpp"
#include "seqlab/thread_pool.hpp"

namespace seqlab {
SEQLAB_LEVEL_BEGIN

namespace {

// Gather tile sizes (floats): forward tiles of ~256 KiB (measured best for the forward's one
// GEMM per tile), backward tiles of ~64 KiB (its two GEMMs per tile share the tile's rows).
constexpr std::size_t kForwardTileFloats = 1 << 16;
constexpr std::size_t kBackwardTileFloats = 1 << 14;
constexpr std::size_t kMinTileRows = 16;
constexpr std::size_t kMinPartFlops = 1 << 22;   // ~4 MFLOP: below that one thread does it all

// How a call splits its rows: `parts` contiguous row ranges (one per thread), each walked
// in tiles of `tile_rows` unfolded rows; per part the workspace holds one tile, a tile of
// masked grad_y rows (fused ReLU) and a partial weight and bias gradient.
struct Plan {
  std::size_t parts = 1, tile_rows = 0, part_floats = 0;
};

Plan make_plan(const Conv1dShape& s, std::size_t tile_floats) {
  const std::size_t To = s.out_len(), KC = s.K * s.Cin;
  const std::size_t width = std::max(KC, s.K * s.Cout);  // forward / grad-input tile widths
  const std::size_t rows = std::max(s.B * To, s.B * s.T);
  Plan p;
  const std::size_t flops = 2 * s.B * To * KC * s.Cout;
  p.parts = std::clamp<std::size_t>(flops / kMinPartFlops, 1, static_cast<std::size_t>(get_num_threads()));
  p.parts = std::min(p.parts, std::max<std::size_t>(rows, 1));
  p.tile_rows = std::max(kMinTileRows, tile_floats / std::max<std::size_t>(width, 1));
  p.part_floats = p.tile_rows * (width + s.Cout) + s.Cout * KC + s.Cout;
  return p;
}

// Rows [begin, end) of part i of `parts` over `rows` rows.
std::pair<std::size_t, std::size_t> part_range(std::size_t rows, std::size_t parts, std::size_t i) {
  return {rows * i / parts, rows * (i + 1) / parts};
}

// out[i] = y[i] > 0 ? g[i] : 0 for i < n (ReLU's backward, as relu_backward but serial).
void relu_mask(const float* g, const float* y, float* out, std::size_t n) {
  simd::map2(g, y, out, n, [](simd::Batch gv, simd::Batch yv) {
    return xsimd::select(yv > simd::Batch(0.0f), gv, simd::Batch(0.0f));
  });
}

void grow(xt::xtensor<float, 1>& a, std::size_t n) {
  if (a.size() < n) a.resize({n});
}

// Rows [r0, r1) of the unfolded matrix of `src` (sequences of src_len steps of C channels)
// with out_len rows per sequence: row (b, t) holds, for each tap k, src[b, t + offset + step*k, :]
// or zeros where that step falls outside [0, src_len). Rows of K*C values into `out`. With
// `relu_of` (an array shaped like src), each copied value is kept only where relu_of > 0:
// the fused ReLU's backward applied on the fly.
void gather_taps(const float* src, std::size_t src_len, std::size_t C, std::size_t out_len,
                 std::size_t K, std::ptrdiff_t offset, std::ptrdiff_t step, std::size_t r0,
                 std::size_t r1, float* out, const float* relu_of = nullptr) {
  const auto len = static_cast<std::ptrdiff_t>(src_len);
  std::size_t b = r0 / out_len, t = r0 % out_len;
  for (std::size_t r = r0; r < r1; ++r) {
    const float* seq = src + b * src_len * C;
    for (std::size_t k = 0; k < K; ++k, out += C) {
      const std::ptrdiff_t p = static_cast<std::ptrdiff_t>(t) + offset + step * static_cast<std::ptrdiff_t>(k);
      if (p < 0 || p >= len)
        std::fill(out, out + C, 0.0f);
      else if (relu_of != nullptr)
        relu_mask(seq + static_cast<std::size_t>(p) * C, relu_of + (b * src_len + static_cast<std::size_t>(p)) * C,
                  out, C);
      else
        std::memcpy(out, seq + static_cast<std::size_t>(p) * C, C * sizeof(float));
    }
    if (++t == out_len) {
      t = 0;
      ++b;
    }
  }
}

}  // namespace

void conv1d_forward(const Conv1dShape& s, const float* x, const float* w, const float* b, float* y,
                    Conv1dCache& cache) {
  const std::size_t To = s.out_len(), KC = s.K * s.Cin, rows = s.B * To;
  cache.shape = s;
  cache.x = x;
  cache.y = y;
  recurrent::ensure_shape(cache.weight, s.Cout, KC);
  // Wr[co, k, ci] = w[co, ci, k]
  float* wr = cache.weight.data();
  for (std::size_t co = 0; co < s.Cout; ++co)
    for (std::size_t ci = 0; ci < s.Cin; ++ci)
      for (std::size_t k = 0; k < s.K; ++k) wr[(co * s.K + k) * s.Cin + ci] = w[(co * s.Cin + ci) * s.K + k];
  if (rows == 0) return;
  const Plan plan = make_plan(s, kForwardTileFloats);
  grow(cache.work, plan.parts * plan.part_floats);
  float* work = cache.work.data();
  const auto pad = static_cast<std::ptrdiff_t>(s.pad_left), dil = static_cast<std::ptrdiff_t>(s.dilation);
  const SerialBlas serial;
  parallel_for(plan.parts, 1, [&](std::size_t p0, std::size_t p1) {
    for (std::size_t part = p0; part < p1; ++part) {
      float* tile = work + part * plan.part_floats;
      const auto [begin, end] = part_range(rows, plan.parts, part);
      for (std::size_t r = begin; r < end; r += plan.tile_rows) {
        const std::size_t n = std::min(plan.tile_rows, end - r);
        // tile (n, K*Cin): the unfolded rows; y rows = bias + tile @ Wr^T
        gather_taps(x, s.T, s.Cin, To, s.K, -pad, dil, r, r + n, tile);
        float* yr = y + r * s.Cout;
        if (b != nullptr)
          for (std::size_t i = 0; i < n; ++i) std::memcpy(yr + i * s.Cout, b, s.Cout * sizeof(float));
        sgemm(false, true, static_cast<int>(n), static_cast<int>(s.Cout), static_cast<int>(KC), 1.0f, tile,
              static_cast<int>(KC), wr, static_cast<int>(KC), b != nullptr ? 1.0f : 0.0f, yr,
              static_cast<int>(s.Cout));
        if (s.relu)
          simd::map1(yr, yr, n * s.Cout, [](simd::Batch v) { return xsimd::max(v, simd::Batch(0.0f)); });
      }
    }
  });
}

void conv1d_backward(Conv1dCache& cache, const float* grad_y, float* dx, float* dw, float* db,
                     bool accumulate_dx) {
  const Conv1dShape& s = cache.shape;
  const std::size_t To = s.out_len(), KC = s.K * s.Cin, KCo = s.K * s.Cout, rows = s.B * To;
  const float* wr = cache.weight.data();
  if (dx != nullptr) {
    // Wb[k, co, ci] = Wr[co, k, ci]
    recurrent::ensure_shape(cache.mirrored, KCo, s.Cin);
    float* wb = cache.mirrored.data();
    for (std::size_t co = 0; co < s.Cout; ++co)
      for (std::size_t k = 0; k < s.K; ++k)
        std::memcpy(wb + (k * s.Cout + co) * s.Cin, wr + (co * s.K + k) * s.Cin, s.Cin * sizeof(float));
  }
  if (rows == 0) {
    if (dx != nullptr && !accumulate_dx) std::fill(dx, dx + s.B * s.T * s.Cin, 0.0f);
    return;
  }
  // The fused ReLU's backward, grad_y * (y > 0), is applied where grad_y rows are read:
  // in the grad-input gather and into a per-tile copy for the weight and bias gradients.
  const float* relu_of = s.relu ? cache.y : nullptr;
  const Plan plan = make_plan(s, kBackwardTileFloats);
  grow(cache.work, plan.parts * plan.part_floats);
  float* work = cache.work.data();
  const std::size_t tile_floats = plan.tile_rows * std::max(KC, KCo);
  const auto pad = static_cast<std::ptrdiff_t>(s.pad_left), dil = static_cast<std::ptrdiff_t>(s.dilation);
  const SerialBlas serial;
  parallel_for(plan.parts, 1, [&](std::size_t p0, std::size_t p1) {
    for (std::size_t part = p0; part < p1; ++part) {
      float* tile = work + part * plan.part_floats;
      if (dx != nullptr) {
        // dx[b, t] = sum_k W_k^T dy[b, t + pad_left - d*k]: a gather of dy rows, mirrored taps.
        const auto [begin, end] = part_range(s.B * s.T, plan.parts, part);
        for (std::size_t r = begin; r < end; r += plan.tile_rows) {
          const std::size_t n = std::min(plan.tile_rows, end - r);
          gather_taps(grad_y, To, s.Cout, s.T, s.K, pad, -dil, r, r + n, tile, relu_of);
          sgemm(false, false, static_cast<int>(n), static_cast<int>(s.Cin), static_cast<int>(KCo), 1.0f, tile,
                static_cast<int>(KCo), cache.mirrored.data(), static_cast<int>(s.Cin), accumulate_dx ? 1.0f : 0.0f,
                dx + r * s.Cin,
                static_cast<int>(s.Cin));
        }
      }
      if (dw == nullptr && db == nullptr) continue;
      float* gw = tile + tile_floats;  // partial dWr (Cout, K*Cin) of this part
      float* gb = gw + s.Cout * KC;    // partial db (Cout,)
      float* gmask = gb + s.Cout;      // (tile_rows, Cout) masked grad_y rows
      std::fill(gw, gb + s.Cout, 0.0f);
      const auto [begin, end] = part_range(rows, plan.parts, part);
      for (std::size_t r = begin; r < end; r += plan.tile_rows) {
        const std::size_t n = std::min(plan.tile_rows, end - r);
        const float* gy = grad_y + r * s.Cout;
        if (relu_of != nullptr) {
          relu_mask(gy, relu_of + r * s.Cout, gmask, n * s.Cout);
          gy = gmask;
        }
        if (dw != nullptr) {
          gather_taps(cache.x, s.T, s.Cin, To, s.K, -pad, dil, r, r + n, tile);
          sgemm(true, false, static_cast<int>(s.Cout), static_cast<int>(KC), static_cast<int>(n), 1.0f, gy,
                static_cast<int>(s.Cout), tile, static_cast<int>(KC), 1.0f, gw, static_cast<int>(KC));
        }
        if (db != nullptr) recurrent::add_column_sums(gb, gy, n, static_cast<int>(s.Cout), s.Cout);
      }
    }
  });
  // Add the parts' partial gradients in part order (deterministic for a thread count).
  const float* part0 = work + tile_floats;
  if (dw != nullptr)
    for (std::size_t co = 0; co < s.Cout; ++co)
      for (std::size_t k = 0; k < s.K; ++k)
        for (std::size_t ci = 0; ci < s.Cin; ++ci) {
          const std::size_t j = (co * s.K + k) * s.Cin + ci;
          float sum = part0[j];
          for (std::size_t p = 1; p < plan.parts; ++p) sum += part0[p * plan.part_floats + j];
          dw[(co * s.Cin + ci) * s.K + k] += sum;
        }
  if (db != nullptr)
    for (std::size_t co = 0; co < s.Cout; ++co) {
      const std::size_t j = s.Cout * KC + co;
      float sum = part0[j];
      for (std::size_t p = 1; p < plan.parts; ++p) sum += part0[p * plan.part_floats + j];
      db[co] += sum;
    }
}

// ------------------------------------------------------------------ TCN temporal block

void temporal_block_forward(const Conv1dShape& shape, const TemporalBlockWeights& w, const float* x,
                            float* y, TemporalBlockCache& cache) {
  Conv1dShape s1 = shape;
  s1.pad_left = s1.dilation * (s1.K - 1);
  s1.pad_right = 0;
  s1.relu = true;
  Conv1dShape s2 = s1;
  s2.Cin = s1.Cout;
  const std::size_t n = s1.B * s1.T * s1.Cout;
  cache.x = x;
  cache.y = y;
  cache.wd = w.wd;
  grow(cache.h1, n);
  grow(cache.h2, n);
  float* h1 = cache.h1.data();
  float* h2 = cache.h2.data();
  conv1d_forward(s1, x, w.w1, w.b1, h1, cache.conv1);
  conv1d_forward(s2, h1, w.w2, w.b2, h2, cache.conv2);
  if (w.wd != nullptr) {  // y = relu(h2 + x @ Wd^T + bd)
    {
      // A thin product (K = Cin): single-threaded, so no OpenBLAS threads wake up and then
      // spin on the core the pool needs next.
      const SerialBlas serial;
      linear_forward(x, w.wd, w.bd, y, s1.B * s1.T, s1.Cin, s1.Cout);
    }
    add_relu_forward(h2, y, y, n);
  } else {
    add_relu_forward(h2, x, y, n);
  }
}

void temporal_block_backward(TemporalBlockCache& cache, const float* grad_y, float* dx,
                             const TemporalBlockGrads& grads) {
  const Conv1dShape& s1 = cache.conv1.shape;
  const std::size_t rows = s1.B * s1.T, n = rows * s1.Cout;
  grow(cache.g, n);
  grow(cache.dh1, n);
  float* g = cache.g.data();
  relu_backward(grad_y, cache.y, g, n);  // the gradient of h2 and of the residual
  if (cache.wd != nullptr) {
    const SerialBlas serial;  // thin products, as in the forward
    linear_backward(g, cache.x, cache.wd, dx, grads.wd, grads.bd, rows, s1.Cin, s1.Cout);
  } else if (dx != nullptr) {
    std::copy(g, g + n, dx);
  }
  conv1d_backward(cache.conv2, g, cache.dh1.data(), grads.w2, grads.b2);
  conv1d_backward(cache.conv1, cache.dh1.data(), dx, grads.w1, grads.b1, /*accumulate_dx=*/true);
}

SEQLAB_LEVEL_END
}  // namespace seqlab
