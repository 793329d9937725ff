// The time-loop driver of the recurrent layers, generic over the cell
// (recurrent_cells.hpp supplies each cell's gate count and fused pointwise passes).
#include "seqlab/recurrent.hpp"

#include <algorithm>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <utility>

#include "seqlab/blas.hpp"
#include "seqlab/recurrent_cells.hpp"
#include "seqlab/recurrent_gemm.hpp"
#include "seqlab/recurrent_rows.hpp"
#include "seqlab/thread_pool.hpp"

namespace seqlab {
SEQLAB_LEVEL_BEGIN
namespace {

using recurrent::add_column_sums;
using recurrent::add_row;
using recurrent::batch_split_grain;
using recurrent::BwdRow;
using recurrent::ensure_shape;
using recurrent::row_grain;
using recurrent::fbatch;
using recurrent::FwdRow;
using recurrent::load;
using recurrent::simd_for;
using recurrent::store;

bool active(const std::int64_t* lengths, int b, int t) { return !lengths || t < lengths[b]; }

template <class Cell>
void forward_direction(const RecurrentShape& s, int d, const float* x, const DirectionWeights& w,
                       const float* h0, const float* c0, const std::int64_t* lengths, float* y,
                       DirectionCache& cache) {
  constexpr int G = Cell::gates;
  constexpr bool lstm = std::is_same_v<Cell, recurrent::LstmCell>;
  constexpr bool gru = std::is_same_v<Cell, recurrent::GruCell>;
  const int B = s.B, T = s.T, C = s.C, H = s.H, GH = G * H, DH = s.D * H;
  const bool reverse = d == 1;
  const std::size_t BT = static_cast<std::size_t>(B) * T;

  // All workspaces before the time loop.
  const std::size_t uB = static_cast<std::size_t>(B), uH = static_cast<std::size_t>(H);
  ensure_shape(cache.gates, BT, static_cast<std::size_t>(GH));
  ensure_shape(cache.h_prev, BT, uH);
  ensure_shape(cache.h_last, uB, uH);
  if (lstm) {
    ensure_shape(cache.c_prev, BT, uH);
    ensure_shape(cache.c_last, uB, uH);
  }
  if (gru) ensure_shape(cache.aux, BT, uH);
  std::vector<float> gh(static_cast<std::size_t>(B) * GH);
  // Packing W_hh is one extra pass over it; it pays back from the second step on. A single
  // step (streaming inference) multiplies the plain matrix instead.
  std::optional<recurrent::PackedMatrix> w_hh_t;
  if (T > 1) w_hh_t = recurrent::PackedMatrix::from_transposed(w.w_hh, GH, H);
  std::vector<float> bias_x(GH, 0.0f);  // b_ih + b_hh, except b_hn for the GRU
  std::vector<float> b_hn(H, 0.0f);
  if (w.b_ih)
    for (int j = 0; j < GH; ++j) bias_x[j] += w.b_ih[j];
  if (w.b_hh) {
    const int folded = gru ? 2 * H : GH;
    for (int j = 0; j < folded; ++j) bias_x[j] += w.b_hh[j];
    if (gru)
      for (int j = 0; j < H; ++j) b_hn[j] = w.b_hh[2 * H + j];
  }
  float* gates = cache.gates.data();
  float* hs = cache.h_prev.data();
  float* cs = lstm ? cache.c_prev.data() : nullptr;
  float* aux = gru ? cache.aux.data() : nullptr;
  const std::size_t BH = static_cast<std::size_t>(B) * H;

  // Input projection of the whole sequence: gates = x @ W_ih^T + biases.
  sgemm_rows_parallel(false, true, static_cast<int>(BT), GH, C, 1.0f, x, C, w.w_ih, C, 0.0f, gates, GH);
  parallel_for(BT, row_grain(GH), [&](std::size_t r0, std::size_t r1) {
    for (std::size_t r = r0; r < r1; ++r) add_row(gates + r * GH, bias_x.data(), GH);
  });

  const int t_first = reverse ? T - 1 : 0;
  float* h_start = hs + t_first * BH;
  if (h0) std::memcpy(h_start, h0, BH * sizeof(float)); else std::fill(h_start, h_start + BH, 0.0f);
  if (lstm) {
    float* c_start = cs + t_first * BH;
    if (c0) std::memcpy(c_start, c0, BH * sizeof(float)); else std::fill(c_start, c_start + BH, 0.0f);
  }

  // One step for batch rows [b0, b1): gh = h_prev @ W_hh^T, then the cell's pointwise pass.
  const auto step = [&](int k, std::size_t b0, std::size_t b1) {
    const int t = reverse ? T - 1 - k : k;
    const int t_next = reverse ? t - 1 : t + 1;
    const bool last = k == T - 1;
    const float* hp = hs + t * BH;
    float* hn = last ? cache.h_last.data() : hs + t_next * BH;
    const float* cp = lstm ? cs + t * BH : nullptr;
    float* cn = lstm ? (last ? cache.c_last.data() : cs + t_next * BH) : nullptr;
    const int rows = static_cast<int>(b1 - b0);
    float* gh_rows = gh.data() + b0 * GH;
    if (w_hh_t)
      w_hh_t->multiply(rows, hp + b0 * H, H, gh_rows, GH, false);
    else
      sgemm(false, true, rows, GH, H, 1.0f, hp + b0 * H, H, w.w_hh, H, 0.0f, gh_rows, GH);
    parallel_for(b1 - b0, row_grain(GH), [&](std::size_t i0, std::size_t i1) {
      for (std::size_t b = b0 + i0; b < b0 + i1; ++b) {
        const std::size_t bt = b * T + t;
        float* yr = y + bt * DH + d * H;
        if (!active(lengths, static_cast<int>(b), t)) {
          std::memcpy(hn + b * H, hp + b * H, H * sizeof(float));
          if (lstm) std::memcpy(cn + b * H, cp + b * H, H * sizeof(float));
          std::fill(yr, yr + H, 0.0f);
          continue;
        }
        FwdRow row;
        row.gates = gates + bt * GH;
        row.gh = gh.data() + b * GH;
        row.b_hn = b_hn.data();
        row.h_prev = hp + b * H;
        row.c_prev = lstm ? cp + b * H : nullptr;
        row.h_new = hn + b * H;
        row.c_new = lstm ? cn + b * H : nullptr;
        row.y = yr;
        row.aux = gru ? aux + bt * H : nullptr;
        Cell::forward(row, H);
      }
    });
  };
  const auto steps = [&](std::size_t b0, std::size_t b1) {
    for (int k = 0; k < T; ++k) step(k, b0, b1);
  };
  if (const std::size_t grain = w_hh_t ? batch_split_grain(B, w_hh_t->bytes()) : 0)
    parallel_for(uB, grain, steps);  // inside, the product and the row pass run inline
  else
    steps(0, uB);
}

template <class Cell>
void backward_direction(RecurrentCache& cache, int d, const float* dy, const float* dh_n,
                        const float* dc_n, const DirectionGrads& grad, float* dx, float* dh0,
                        float* dc0) {
  constexpr int G = Cell::gates;
  constexpr bool lstm = std::is_same_v<Cell, recurrent::LstmCell>;
  constexpr bool gru = std::is_same_v<Cell, recurrent::GruCell>;
  const RecurrentShape& s = cache.shape;
  const int B = s.B, T = s.T, C = s.C, H = s.H, GH = G * H, DH = s.D * H;
  const bool reverse = d == 1;
  const std::size_t BT = static_cast<std::size_t>(B) * T, BH = static_cast<std::size_t>(B) * H;
  DirectionCache& dc = cache.dirs[d];
  const DirectionWeights& w = cache.weights[d];
  const std::int64_t* lengths = cache.lengths.empty() ? nullptr : cache.lengths.data();

  // All workspaces before the time loop.
  // Not cleared: every row is written by the time loop before it is read.
  ensure_shape(dc.dgx, BT * GH);
  ensure_shape(dc.dgh, BT * GH);
  auto& dgx = dc.dgx;
  auto& dgh = dc.dgh;
  std::vector<float> dh_a(BH), dh_b(BH), dc_a(lstm ? BH : 0), dc_b(lstm ? BH : 0);
  if (dh_n) std::memcpy(dh_a.data(), dh_n, BH * sizeof(float)); else std::fill(dh_a.begin(), dh_a.end(), 0.0f);
  if (lstm) {
    if (dc_n) std::memcpy(dc_a.data(), dc_n, BH * sizeof(float)); else std::fill(dc_a.begin(), dc_a.end(), 0.0f);
  }
  const auto w_hh_p = recurrent::PackedMatrix::from_plain(w.w_hh, GH, H);
  const float* gates = dc.gates.data();
  const float* hs = dc.h_prev.data();
  const float* cs = lstm ? dc.c_prev.data() : nullptr;
  const float* aux = gru ? dc.aux.data() : nullptr;

  // One step back for batch rows [b0, b1): the cell's backward pass reads dh_cur (dc_cur)
  // and writes dh_nxt (dc_nxt), then dh_nxt += dgates_hh @ W_hh.
  const auto step = [&](int k, std::size_t b0, std::size_t b1, float* dh_cur, float* dh_nxt,
                        float* dc_cur, float* dc_nxt) {
    const int t = reverse ? T - 1 - k : k;
    const int t_next = reverse ? t - 1 : t + 1;
    const bool last = k == T - 1;
    const float* hp = hs + t * BH;
    const float* cp = lstm ? cs + t * BH : nullptr;
    const float* cn = lstm ? (last ? dc.c_last.data() : cs + t_next * BH) : nullptr;
    float* dgh_t = dgh.data() + t * BH * G;
    parallel_for(b1 - b0, row_grain(GH), [&](std::size_t i0, std::size_t i1) {
      for (std::size_t b = b0 + i0; b < b0 + i1; ++b) {
        const std::size_t bt = b * T + t;
        float* dgx_r = dgx.data() + bt * GH;
        float* dgh_r = dgh_t + b * GH;
        if (!active(lengths, static_cast<int>(b), t)) {
          std::fill(dgx_r, dgx_r + GH, 0.0f);
          std::fill(dgh_r, dgh_r + GH, 0.0f);
          std::memcpy(dh_nxt + b * H, dh_cur + b * H, H * sizeof(float));
          if (lstm) std::memcpy(dc_nxt + b * H, dc_cur + b * H, H * sizeof(float));
          continue;
        }
        if (dy) add_row(dh_cur + b * H, dy + bt * DH + d * H, H);
        BwdRow row;
        row.gates = gates + bt * GH;
        row.aux = gru ? aux + bt * H : nullptr;
        row.h_prev = hp + b * H;
        row.c_prev = lstm ? cp + b * H : nullptr;
        row.c_new = lstm ? cn + b * H : nullptr;
        row.dh = dh_cur + b * H;
        row.dc = lstm ? dc_cur + b * H : nullptr;
        row.dgx = dgx_r;
        row.dgh = dgh_r;
        row.dh_prev = dh_nxt + b * H;
        row.dc_prev = lstm ? dc_nxt + b * H : nullptr;
        Cell::backward(row, H);
      }
    });
    w_hh_p.multiply(static_cast<int>(b1 - b0), dgh_t + b0 * GH, GH, dh_nxt + b0 * H, H, true);
  };
  const auto steps = [&](std::size_t b0, std::size_t b1) {
    float* dh_cur = dh_a.data();
    float* dh_nxt = dh_b.data();
    float* dc_cur = lstm ? dc_a.data() : nullptr;
    float* dc_nxt = lstm ? dc_b.data() : nullptr;
    for (int k = T - 1; k >= 0; --k) {
      step(k, b0, b1, dh_cur, dh_nxt, dc_cur, dc_nxt);
      std::swap(dh_cur, dh_nxt);
      std::swap(dc_cur, dc_nxt);
    }
  };
  if (const std::size_t grain = batch_split_grain(B, w_hh_p.bytes()))
    parallel_for(static_cast<std::size_t>(B), grain, steps);  // the step's passes run inline
  else
    steps(0, static_cast<std::size_t>(B));
  // After T swaps the gradients at the sequence start are in the a buffers when T is even.
  const float* dh_start = T % 2 == 0 ? dh_a.data() : dh_b.data();
  std::memcpy(dh0 + d * BH, dh_start, BH * sizeof(float));
  if (lstm && dc0) std::memcpy(dc0 + d * BH, T % 2 == 0 ? dc_a.data() : dc_b.data(), BH * sizeof(float));

  const int M = static_cast<int>(BT);
  // dW_hh += dgates_hh^T @ h_prev over all steps; dW_ih += dgates_x^T @ x; dx (+)= dgates_x @ W_ih.
  if (grad.w_hh) sgemm_rows_parallel(true, false, GH, H, M, 1.0f, dgh.data(), GH, hs, H, 1.0f, grad.w_hh, H);
  if (grad.w_ih) sgemm_rows_parallel(true, false, GH, C, M, 1.0f, dgx.data(), GH, cache.x, C, 1.0f, grad.w_ih, C);
  if (dx) sgemm_rows_parallel(false, false, M, C, GH, 1.0f, dgx.data(), GH, w.w_ih, C, d == 0 ? 0.0f : 1.0f, dx, C);
  if (grad.b_ih) add_column_sums(grad.b_ih, dgx.data(), BT, GH, static_cast<std::size_t>(GH));
  if (grad.b_hh) add_column_sums(grad.b_hh, dgh.data(), BT, GH, static_cast<std::size_t>(GH));
}

template <class Cell>
void forward_layer(const RecurrentShape& s, const float* x, const DirectionWeights* w,
                   const float* h0, const float* c0, const std::int64_t* lengths, float* y,
                   float* h_n, float* c_n, RecurrentCache& cache) {
  const std::size_t BH = static_cast<std::size_t>(s.B) * s.H;
  for (int d = 0; d < s.D; ++d) {
    DirectionCache& dc = cache.dirs[d];
    forward_direction<Cell>(s, d, x, w[d], h0 ? h0 + d * BH : nullptr, c0 ? c0 + d * BH : nullptr,
                            lengths, y, dc);
    std::memcpy(h_n + d * BH, dc.h_last.data(), BH * sizeof(float));
    if (c_n && std::is_same_v<Cell, recurrent::LstmCell>)
      std::memcpy(c_n + d * BH, dc.c_last.data(), BH * sizeof(float));
  }
}

template <class Cell>
void backward_layer(RecurrentCache& cache, const float* dy, const float* dh_n,
                    const float* dc_n, const DirectionGrads* grads, float* dx, float* dh0,
                    float* dc0) {
  const std::size_t BH = static_cast<std::size_t>(cache.shape.B) * cache.shape.H;
  for (int d = 0; d < cache.shape.D; ++d)
    backward_direction<Cell>(cache, d, dy, dh_n ? dh_n + d * BH : nullptr,
                             dc_n ? dc_n + d * BH : nullptr, grads[d], dx, dh0, dc0);
}

}  // namespace

void recurrent_forward(CellKind kind, const RecurrentShape& shape, const float* x,
                       const DirectionWeights* weights, const float* h0, const float* c0,
                       const std::int64_t* lengths, float* y, float* h_n, float* c_n,
                       RecurrentCache& cache) {
  const SerialBlas serial;  // the large GEMMs split over the pool (sgemm_rows_parallel)
  cache.kind = kind;
  cache.shape = shape;
  cache.x = x;
  cache.weights.assign(weights, weights + shape.D);
  cache.lengths.clear();
  if (lengths) cache.lengths.assign(lengths, lengths + shape.B);
  cache.dirs.resize(shape.D);
  switch (kind) {
    case CellKind::RnnTanh:
      return forward_layer<recurrent::RnnTanhCell>(shape, x, weights, h0, c0, lengths, y, h_n, c_n, cache);
    case CellKind::RnnRelu:
      return forward_layer<recurrent::RnnReluCell>(shape, x, weights, h0, c0, lengths, y, h_n, c_n, cache);
    case CellKind::Lstm:
      return forward_layer<recurrent::LstmCell>(shape, x, weights, h0, c0, lengths, y, h_n, c_n, cache);
    case CellKind::Gru:
      return forward_layer<recurrent::GruCell>(shape, x, weights, h0, c0, lengths, y, h_n, c_n, cache);
  }
  throw std::invalid_argument("recurrent_forward: unknown cell kind");
}

void recurrent_backward(RecurrentCache& cache, const float* dy, const float* dh_n,
                        const float* dc_n, const DirectionGrads* grads, float* dx, float* dh0,
                        float* dc0) {
  const SerialBlas serial;
  switch (cache.kind) {
    case CellKind::RnnTanh:
      return backward_layer<recurrent::RnnTanhCell>(cache, dy, dh_n, dc_n, grads, dx, dh0, dc0);
    case CellKind::RnnRelu:
      return backward_layer<recurrent::RnnReluCell>(cache, dy, dh_n, dc_n, grads, dx, dh0, dc0);
    case CellKind::Lstm:
      return backward_layer<recurrent::LstmCell>(cache, dy, dh_n, dc_n, grads, dx, dh0, dc0);
    case CellKind::Gru:
      return backward_layer<recurrent::GruCell>(cache, dy, dh_n, dc_n, grads, dx, dh0, dc0);
  }
  throw std::invalid_argument("recurrent_backward: unknown cell kind");
}

SEQLAB_LEVEL_END
}  // namespace seqlab
