// The recurrent cells' fused pointwise passes: gate non-linearities and the state
// update for one batch row, forward and backward, written once over a value type V
// that is either an xsimd batch (the body of the row) or a float (its tail).
//
// Gate layouts follow PyTorch: RNN (1 gate), LSTM (i, f, g, o), GRU (r, z, n) with
// the recurrent bias of n inside the reset product:
//   n = tanh(W_in x + b_in + r * (W_hn h + b_hn)),  h' = (1 - z) * n + z * h.
#pragma once
#include "seqlab/level.hpp"
#include <xsimd/xsimd.hpp>

#include <cmath>
#include <type_traits>

namespace seqlab {
SEQLAB_LEVEL_BEGIN
namespace recurrent {

using fbatch = xsimd::batch<float>;

template <class V>
inline V load(const float* p) {
  if constexpr (std::is_same_v<V, float>)
    return *p;
  else
    return V::load_unaligned(p);
}
inline void store(float* p, float v) { *p = v; }
inline void store(float* p, const fbatch& v) { v.store_unaligned(p); }

inline float exp_(float x) { return std::exp(x); }
inline fbatch exp_(const fbatch& x) { return xsimd::exp(x); }
inline float tanh_(float x) { return std::tanh(x); }
inline fbatch tanh_(const fbatch& x) { return xsimd::tanh(x); }
template <class V>
inline V sigmoid(const V& x) {
  return V(1.0f) / (V(1.0f) + exp_(-x));
}
inline float relu_(float x) { return x > 0.0f ? x : 0.0f; }
inline fbatch relu_(const fbatch& x) { return xsimd::max(x, fbatch(0.0f)); }
// dh where h > 0, else 0 (ReLU's gradient expressed through its output).
inline float relu_grad(float dh, float h) { return h > 0.0f ? dh : 0.0f; }
inline fbatch relu_grad(const fbatch& dh, const fbatch& h) {
  return xsimd::select(h > fbatch(0.0f), dh, fbatch(0.0f));
}

// Calls f(j, V{}) for j in [0, n): SIMD batches first, then scalar tail elements.
template <class F>
inline void simd_for(int n, F&& f) {
  constexpr int W = static_cast<int>(fbatch::size);
  int j = 0;
  for (; j + W <= n; j += W) f(j, fbatch{});
  for (; j < n; ++j) f(j, 0.0f);
}

// One batch row of one forward step.
struct FwdRow {
  float* gates;          // (G*H) in: x W_ih^T + biases; out: activated gates, kept for backward
  const float* gh;       // (G*H) h_prev W_hh^T (no bias)
  const float* b_hn;     // (H) GRU: recurrent bias of n (zeros without bias)
  const float* h_prev;   // (H)
  const float* c_prev;   // (H) LSTM
  float* h_new;          // (H)
  float* c_new;          // (H) LSTM
  float* y;              // (H) output row
  float* aux;            // (H) GRU: W_hn h + b_hn, kept for backward
};

// One batch row of one backward step.
struct BwdRow {
  const float* gates;   // (G*H) activated gates from the forward
  const float* aux;     // (H) GRU: W_hn h + b_hn
  const float* h_prev;  // (H)
  const float* c_prev;  // (H) LSTM
  const float* c_new;   // (H) LSTM
  const float* dh;      // (H) d loss / d h_new (recurrent and output parts)
  const float* dc;      // (H) LSTM: d loss / d c_new
  float* dgx;           // (G*H) d loss / d (input pre-activations)
  float* dgh;           // (G*H) d loss / d (h_prev W_hh^T + b_hh)
  float* dh_prev;       // (H) the part of d loss / d h_prev that bypasses W_hh
  float* dc_prev;       // (H) LSTM: d loss / d c_prev
};

struct RnnTanhCell {
  static constexpr int gates = 1;
  static void forward(const FwdRow& r, int H) {
    simd_for(H, [&](int j, auto v) {
      using V = decltype(v);
      V h = tanh_(load<V>(r.gates + j) + load<V>(r.gh + j));
      store(r.gates + j, h);
      store(r.h_new + j, h);
      store(r.y + j, h);
    });
  }
  static void backward(const BwdRow& r, int H) {
    simd_for(H, [&](int j, auto v) {
      using V = decltype(v);
      V h = load<V>(r.gates + j);
      V d = load<V>(r.dh + j) * (V(1.0f) - h * h);
      store(r.dgx + j, d);
      store(r.dgh + j, d);
      store(r.dh_prev + j, V(0.0f));
    });
  }
};

struct RnnReluCell {
  static constexpr int gates = 1;
  static void forward(const FwdRow& r, int H) {
    simd_for(H, [&](int j, auto v) {
      using V = decltype(v);
      V h = relu_(load<V>(r.gates + j) + load<V>(r.gh + j));
      store(r.gates + j, h);
      store(r.h_new + j, h);
      store(r.y + j, h);
    });
  }
  static void backward(const BwdRow& r, int H) {
    simd_for(H, [&](int j, auto v) {
      using V = decltype(v);
      V d = relu_grad(load<V>(r.dh + j), load<V>(r.gates + j));
      store(r.dgx + j, d);
      store(r.dgh + j, d);
      store(r.dh_prev + j, V(0.0f));
    });
  }
};

struct LstmCell {
  static constexpr int gates = 4;
  static void forward(const FwdRow& r, int H) {
    float* g = r.gates;
    const float* gh = r.gh;
    simd_for(H, [&](int j, auto v) {
      using V = decltype(v);
      V i = sigmoid(load<V>(g + j) + load<V>(gh + j));
      V f = sigmoid(load<V>(g + H + j) + load<V>(gh + H + j));
      V c_hat = tanh_(load<V>(g + 2 * H + j) + load<V>(gh + 2 * H + j));
      V o = sigmoid(load<V>(g + 3 * H + j) + load<V>(gh + 3 * H + j));
      V c = f * load<V>(r.c_prev + j) + i * c_hat;
      V h = o * tanh_(c);
      store(g + j, i);
      store(g + H + j, f);
      store(g + 2 * H + j, c_hat);
      store(g + 3 * H + j, o);
      store(r.c_new + j, c);
      store(r.h_new + j, h);
      store(r.y + j, h);
    });
  }
  static void backward(const BwdRow& r, int H) {
    const float* g = r.gates;
    simd_for(H, [&](int j, auto v) {
      using V = decltype(v);
      const V one(1.0f);
      V i = load<V>(g + j), f = load<V>(g + H + j);
      V c_hat = load<V>(g + 2 * H + j), o = load<V>(g + 3 * H + j);
      V tc = tanh_(load<V>(r.c_new + j));
      V dh = load<V>(r.dh + j);
      V dc = load<V>(r.dc + j) + dh * o * (one - tc * tc);
      V di = dc * c_hat * i * (one - i);
      V df = dc * load<V>(r.c_prev + j) * f * (one - f);
      V dg = dc * i * (one - c_hat * c_hat);
      V d_o = dh * tc * o * (one - o);
      store(r.dgx + j, di);
      store(r.dgx + H + j, df);
      store(r.dgx + 2 * H + j, dg);
      store(r.dgx + 3 * H + j, d_o);
      store(r.dgh + j, di);
      store(r.dgh + H + j, df);
      store(r.dgh + 2 * H + j, dg);
      store(r.dgh + 3 * H + j, d_o);
      store(r.dc_prev + j, dc * f);
      store(r.dh_prev + j, V(0.0f));
    });
  }
};

struct GruCell {
  static constexpr int gates = 3;
  static void forward(const FwdRow& r, int H) {
    float* g = r.gates;
    const float* gh = r.gh;
    simd_for(H, [&](int j, auto v) {
      using V = decltype(v);
      V rg = sigmoid(load<V>(g + j) + load<V>(gh + j));
      V z = sigmoid(load<V>(g + H + j) + load<V>(gh + H + j));
      V ghn = load<V>(gh + 2 * H + j) + load<V>(r.b_hn + j);
      V n = tanh_(load<V>(g + 2 * H + j) + rg * ghn);
      V hp = load<V>(r.h_prev + j);
      V h = n + z * (hp - n);
      store(g + j, rg);
      store(g + H + j, z);
      store(g + 2 * H + j, n);
      store(r.aux + j, ghn);
      store(r.h_new + j, h);
      store(r.y + j, h);
    });
  }
  static void backward(const BwdRow& r, int H) {
    const float* g = r.gates;
    simd_for(H, [&](int j, auto v) {
      using V = decltype(v);
      const V one(1.0f);
      V rg = load<V>(g + j), z = load<V>(g + H + j), n = load<V>(g + 2 * H + j);
      V dh = load<V>(r.dh + j);
      V hp = load<V>(r.h_prev + j);
      V dpn = dh * (one - z) * (one - n * n);
      V dpr = dpn * load<V>(r.aux + j) * rg * (one - rg);
      V dpz = dh * (hp - n) * z * (one - z);
      store(r.dgx + j, dpr);
      store(r.dgx + H + j, dpz);
      store(r.dgx + 2 * H + j, dpn);
      store(r.dgh + j, dpr);
      store(r.dgh + H + j, dpz);
      store(r.dgh + 2 * H + j, dpn * rg);
      store(r.dh_prev + j, dh * z);
    });
  }
};

}  // namespace recurrent
SEQLAB_LEVEL_END
}  // namespace seqlab
