// The ceilings of the bf16 GEMM engines on one core, in registers (no memory traffic):
// fp32 FMA (vfmadd231ps zmm, 32 flops), AVX512_BF16 (vdpbf16ps zmm, 64 flops: 32 products
// and their sums into 16 fp32 lanes) and AMX-BF16 (tdpbf16ps, a 16 x 32 by 32 x 16 tile
// product: 16,384 flops), each with enough independent accumulators to hide its latency.
// What a GEMM on each engine can reach at most; the linear layers' GFLOP/s
// (bench_linear_bf16.py) are read against these.
//
//   g++ -O2 -march=sapphirerapids benchmarks/bf16_tile_ceiling.cpp -o /tmp/bf16_tile_ceiling
//   /tmp/bf16_tile_ceiling
//
// Prints GFLOP per CPU-second of the process (robust to other processes taking the core).
// The AMX line needs the Linux kernel to grant the tile data state (arch_prctl
// ARCH_REQ_XCOMP_PERM); it says so when it does not.
#include <immintrin.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>

namespace {

double cpu_seconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

#define SEQLAB_R24(X) \
  X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15) X(16) X(17) X(18) X(19) X(20) X(21) X(22) X(23)

template <class Step>
double gflops(long iters, double flops_per_iter, Step&& step) {
  const double t0 = cpu_seconds();
  step(iters);
  return iters * flops_per_iter / (cpu_seconds() - t0) / 1e9;
}

struct alignas(64) TileConfig {
  std::uint8_t palette = 1, start_row = 0, reserved[14] = {};
  std::uint16_t colsb[16] = {64, 64, 64, 64, 64, 64, 64, 64};
  std::uint8_t rows[16] = {16, 16, 16, 16, 16, 16, 16, 16};
};

__attribute__((target("amx-tile,amx-bf16"))) double amx_gflops(long iters) {
  const TileConfig config;
  _tile_loadconfig(&config);
  alignas(64) static std::uint16_t ones[16 * 32];
  for (auto& v : ones) v = 0x3f80;  // bf16 1.0
  alignas(64) static float out[16 * 16];
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  _tile_loadd(4, ones, 64);
  _tile_loadd(5, ones, 64);
  _tile_loadd(6, ones, 64);
  _tile_loadd(7, ones, 64);
  const double g = gflops(iters, 4 * 16384.0, [](long n) {
    for (long i = 0; i < n; ++i) {
      _tile_dpbf16ps(0, 4, 6);
      _tile_dpbf16ps(1, 4, 7);
      _tile_dpbf16ps(2, 5, 6);
      _tile_dpbf16ps(3, 5, 7);
    }
  });
  _tile_stored(0, out, 64);
  _tile_release();
  return out[0] > 0 ? g : 0.0;
}

}  // namespace

int main() {
  constexpr long kIters = 50'000'000;
  for (int rep = 0; rep < 2; ++rep) {
    double fma = gflops(kIters, 24 * 32.0, [](long n) {
#define SEQLAB_DECL(i) __m512 c##i = _mm512_set1_ps(static_cast<float>(i));
      SEQLAB_R24(SEQLAB_DECL)
      const __m512 a = _mm512_set1_ps(1.0001f), b = _mm512_set1_ps(0.9999f);
      for (long it = 0; it < n; ++it) {
#define SEQLAB_FMA(i) c##i = _mm512_fmadd_ps(c##i, a, b);
        SEQLAB_R24(SEQLAB_FMA)
        __asm__ volatile("" ::"v"(a), "v"(b));
      }
      float s = 0;
#define SEQLAB_SUM(i) s += c##i[0];
      SEQLAB_R24(SEQLAB_SUM)
      __asm__ volatile("" ::"x"(s));
    });
    double dp = gflops(kIters, 24 * 64.0, [](long n) {
      SEQLAB_R24(SEQLAB_DECL)
      const auto a = reinterpret_cast<__m512bh>(_mm512_set1_epi32(0x3f803f80));
      for (long it = 0; it < n; ++it) {
#define SEQLAB_DP(i) c##i = _mm512_dpbf16_ps(c##i, a, a);
        SEQLAB_R24(SEQLAB_DP)
        __asm__ volatile("" ::"v"(a));
      }
      float s = 0;
      SEQLAB_R24(SEQLAB_SUM)
      __asm__ volatile("" ::"x"(s));
    });
    std::printf("fp32 FMA (vfmadd231ps zmm): %.0f GFLOP/s\n", fma);
    std::printf("AVX512_BF16 (vdpbf16ps zmm): %.0f GFLOP/s\n", dp);
    if (syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */) != 0)
      std::printf("AMX-BF16: the kernel does not grant the tile data state\n");
    else
      std::printf("AMX-BF16 (tdpbf16ps): %.0f GFLOP/s\n", amx_gflops(kIters / 10));
  }
}
