// Where the time of a bf16 AMX linear-layer product goes, by part, against fp32 OpenBLAS:
// the three products of a layer (y = x W^T, dx = dz W, dW^T = x^T dz) at the code LM's
// shapes (M = 2,048 rows; preset `small`), each split into what cpp/src/linear.cpp does per
// call: packing B (the weight, or dz for dW), packing A (x, dz, or x^T), the AMX tile loop
// alone (its 32 x 32 blocks only summed, not written) and the tile loop with its output
// writes (row-major vector stores; dW's transposed through 16 x 16 register transposes).
// One thread, median CPU milliseconds per call.
//
//   lib=$(.venv/bin/python -c "import scipy_openblas32 as s; print(s.get_lib_dir())")
//   inc=$(.venv/bin/python -c "import scipy_openblas32 as s; print(s.get_include_dir())")
//   g++ -O3 -march=sapphirerapids -DSEQLAB_LEVEL=v4bf16 -DBLAS_SYMBOL_PREFIX=scipy_ -Icpp/include -I"$inc"
//       benchmarks/amx_gemm_parts.cpp -o /tmp/amx_gemm_parts -L"$lib" -lscipy_openblas
//       -Wl,-rpath,"$lib"                                          (one command line)
//   OPENBLAS_NUM_THREADS=1 taskset -c 0 /tmp/amx_gemm_parts [REPEATS]
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <vector>

#include "seqlab/blas.hpp"
#include "seqlab/gemm_amx.hpp"

#include "cpu_timer.hpp"

namespace {
using seqlab::gemm::I64;
namespace gemm = seqlab::gemm;


// Median CPU milliseconds of fn over `repeats` calls after one untimed call.
double median_ms(const std::function<void()>& fn, int repeats) {
  return 1e3 * seqlab_bench::median_seconds(fn, repeats);
}

using seqlab::sgemm;

struct Parts {
  double pack_b, pack_a, tiles, tiles_out, fp32;
};

// One product C (M x N) = A (M x K) B (K x N) on AMX, by part. a/b: element (i, k) at
// a[i*asi + k*ask], (k, j) at b[k*bsk + j*bsn]; transposed: C written as C^T.
Parts product(I64 M, I64 N, I64 K, const float* a, I64 asi, I64 ask, const float* b, I64 bsk, I64 bsn,
              float* c, bool transposed, const std::function<void()>& fp32, int repeats) {
  constexpr I64 R = gemm::kAmxRows;
  const I64 padded = (M + R - 1) / R * R, np = gemm::amx_panels(N), lda = gemm::amx_lda(K);
  std::vector<std::uint16_t> ap(static_cast<std::size_t>(padded * lda)), bp(gemm::amx_packed_b_size(K, N));
  Parts p{};
  p.pack_b = median_ms([&] { gemm::pack_panels_amx(b, bsk, bsn, K, N, 0, np, bp.data()); }, repeats);
  p.pack_a = median_ms([&] { gemm::pack_rows_amx(a, asi, ask, M, padded, K, ap.data()); }, repeats);
  float sink = 0.0f;
  p.tiles = median_ms([&] {
    gemm::amx_block(padded, K, ap.data(), bp.data(), np, [&](const float* tile, I64, I64) { sink += tile[0]; });
  }, repeats);
  p.tiles_out = median_ms([&] {
    gemm::amx_block(padded, K, ap.data(), bp.data(), np, [&](const float* tile, I64 r, I64 j0) {
      const I64 nr = std::min(R, M - r), nc = std::min<I64>(32, N - j0);
      if (nr <= 0 || nc <= 0) return;
      if (transposed) {
        gemm::store_block_transposed(tile, nr, nc, c + j0 * M + r, M, false);
        return;
      }
      for (I64 i = 0; i < nr; ++i)
        for (I64 v = 0; v < 2 && 16 * v < nc; ++v) {
          const I64 left = nc - 16 * v;
          const auto m = left >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << left) - 1u);
          _mm512_mask_storeu_ps(c + (r + i) * N + j0 + 16 * v, m, _mm512_load_ps(tile + i * 32 + 16 * v));
        }
    });
  }, repeats);
  p.fp32 = median_ms(fp32, repeats);
  if (sink == 12345.0f) std::printf(" ");
  return p;
}
}  // namespace

int main(int argc, char** argv) {
  const int repeats = argc > 1 ? std::atoi(argv[1]) : 15;
  if (!gemm::amx_bf16_usable()) {
    std::printf("AMX is not usable in this process\n");
    return 1;
  }
  constexpr I64 M = 2048;
  const I64 shapes[][2] = {{128, 384}, {128, 128}, {128, 512}, {512, 128}, {128, 4096}};
  std::mt19937 gen(0);
  std::normal_distribution<float> normal;
  std::printf("| K -> N | product | pack B | pack A | tiles | tiles + output | AMX total | fp32 sgemm |\n");
  std::printf("|---|---|---|---|---|---|---|---|\n");
  for (const auto& s : shapes) {
    const I64 K = s[0], N = s[1];
    std::vector<float> x(M * K), w(N * K), dz(M * N), y(M * N), dx(M * K), dw(N * K);
    for (auto* v : {&x, &w, &dz})
      for (float& e : *v) e = normal(gen);
    const int m = static_cast<int>(M), n = static_cast<int>(N), k = static_cast<int>(K);
    const Parts fwd = product(M, N, K, x.data(), K, 1, w.data(), 1, K, y.data(), false, [&] {
      sgemm(false, true, m, n, k, 1.0f, x.data(), k, w.data(), k, 0.0f, y.data(), n);
    }, repeats);
    const Parts gx = product(M, K, N, dz.data(), N, 1, w.data(), K, 1, dx.data(), false, [&] {
      sgemm(false, false, m, k, n, 1.0f, dz.data(), n, w.data(), k, 0.0f, dx.data(), k);
    }, repeats);
    // dW^T (K x N) = x^T (K x M) dz (M x N), written transposed into dW (N x K)
    const Parts gw = product(K, N, M, x.data(), 1, K, dz.data(), N, 1, dw.data(), true, [&] {
      sgemm(true, false, n, k, m, 1.0f, dz.data(), n, x.data(), k, 1.0f, dw.data(), k);
    }, repeats);
    const char* names[] = {"y = x W^T", "dx = dz W", "dW = dz^T x"};
    const Parts* parts[] = {&fwd, &gx, &gw};
    for (int i = 0; i < 3; ++i) {
      const Parts& p = *parts[i];
      std::printf("| %lld -> %lld | %s | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f |\n", static_cast<long long>(K),
                  static_cast<long long>(N), names[i], p.pack_b, p.pack_a, p.tiles, p.tiles_out,
                  p.pack_b + p.pack_a + p.tiles_out, p.fp32);
    }
  }
}
