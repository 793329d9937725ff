// The GEMMs of the code LM's linear layers (M = batch x sequence rows, K and N of 128 to
// 512) on one core: OpenBLAS sgemm, as cpp/src/linear.cpp calls it, against the shared
// register-tile micro-kernel (cpp/include/seqlab/gemm_microkernel.hpp), for the three
// products of a layer: y = x W^T (W packed once into panels, as attention and top-k do),
// dx = dy W and dW += dy^T x (both operands read in place, dy^T through strides).
//
//   lib=$(.venv/bin/python -c "import scipy_openblas32 as s; print(s.get_lib_dir())")
//   inc=$(.venv/bin/python -c "import scipy_openblas32 as s; print(s.get_include_dir())")
//   g++ -O3 -march=x86-64-v4 -DSEQLAB_LEVEL=v4 -DBLAS_SYMBOL_PREFIX=scipy_ -Icpp/include -I"$inc"
//       benchmarks/small_k_gemm.cpp -o /tmp/small_k_gemm -L"$lib" -lscipy_openblas
//       -Wl,-rpath,"$lib"                                          (one command line)
//   OPENBLAS_NUM_THREADS=1 /tmp/small_k_gemm [M] [REPEATS]
//
// Prints GFLOP per CPU-second (robust to other processes taking the core) of each product
// for the layer shapes of preset `small` (d_model 128, feed-forward 512, vocabulary 4096),
// and the largest difference between the two results.
#include <time.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <vector>

#include "seqlab/blas.hpp"
#include "seqlab/gemm_microkernel.hpp"

#include "cpu_timer.hpp"

namespace {
using seqlab::gemm::I64;

using seqlab_bench::median_seconds;

float max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  float d = 0.0f;
  for (std::size_t i = 0; i < a.size(); ++i) d = std::max(d, std::abs(a[i] - b[i]));
  return d;
}

void sgemm(bool ta, bool tb, I64 M, I64 N, I64 K, const float* A, I64 lda, const float* B, I64 ldb, float beta,
           float* C, I64 ldc) {
  seqlab::v4::sgemm(ta, tb, static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), 1.0f, A,
                    static_cast<int>(lda), B, static_cast<int>(ldb), beta, C, static_cast<int>(ldc));
}
}  // namespace

int main(int argc, char** argv) {
  namespace g = seqlab::v4::gemm;
  const I64 M = argc > 1 ? std::atoll(argv[1]) : 2048;
  const int repeats = argc > 2 ? std::atoi(argv[2]) : 15;
  std::mt19937 gen(0);
  std::normal_distribution<float> normal;
  std::printf("| product | M | N | K | OpenBLAS GFLOP/s | micro-kernel GFLOP/s | max |diff| |\n|---|---|---|---|---|---|---|\n");
  // (in, out) of the small preset's layers: q/k/v projection, attention output, MLP up and down.
  const I64 shapes[][2] = {{128, 384}, {128, 128}, {128, 512}, {512, 128}};
  for (const auto& s : shapes) {
    const I64 K = s[0], N = s[1];
    std::vector<float> x(M * K), w(N * K), dy(M * N);
    for (float* v : {x.data(), w.data(), dy.data()}) {
      const std::size_t n = v == x.data() ? x.size() : v == w.data() ? w.size() : dy.size();
      for (std::size_t i = 0; i < n; ++i) v[i] = normal(gen);
    }
    const double flops = 2.0 * static_cast<double>(M * N * K);
    std::vector<float> c1, c2, packed(g::packed_bt_size(N, K));
    const auto row = [&](const char* name, I64 m, I64 n, I64 k, const std::function<void()>& blas,
                         const std::function<void()>& tile) {
      const double tb = median_seconds(blas, repeats), tt = median_seconds(tile, repeats);
      std::printf("| %s | %lld | %lld | %lld | %.1f | %.1f | %.2g |\n", name, static_cast<long long>(m),
                  static_cast<long long>(n), static_cast<long long>(k), flops / tb * 1e-9, flops / tt * 1e-9,
                  static_cast<double>(max_diff(c1, c2)));
    };
    // y (M, N) = x (M, K) W^T
    c1.assign(M * N, 0.0f);
    c2.assign(M * N, 0.0f);
    row("y = x W^T", M, N, K, [&] { sgemm(false, true, M, N, K, x.data(), K, w.data(), K, 0.0f, c1.data(), N); },
        [&] {
          g::pack_bt(w.data(), K, N, K, packed.data());
          g::gemm(false, M, N, K, 1.0f, x.data(), K, 1, packed.data(), g::kNR, K * g::kNR, c2.data(), N);
        });
    // dx (M, K) = dy (M, N) W (N, K)
    c1.assign(M * K, 0.0f);
    c2.assign(M * K, 0.0f);
    row("dx = dy W", M, K, N, [&] { sgemm(false, false, M, K, N, dy.data(), N, w.data(), K, 0.0f, c1.data(), K); },
        [&] { g::gemm(false, M, K, N, 1.0f, dy.data(), N, 1, w.data(), K, g::kNR, c2.data(), K); });
    // dW (N, K) = dy^T (N, M) x (M, K) (written, not accumulated, so repeats agree)
    c1.assign(N * K, 0.0f);
    c2.assign(N * K, 0.0f);
    row("dW = dy^T x", N, K, M, [&] { sgemm(true, false, N, K, M, dy.data(), N, x.data(), K, 0.0f, c1.data(), K); },
        [&] { g::gemm(false, N, K, M, 1.0f, dy.data(), 1, N, x.data(), K, g::kNR, c2.data(), K); });
  }
  return 0;
}
