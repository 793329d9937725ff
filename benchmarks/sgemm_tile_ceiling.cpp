// The ceiling of the retrieval GEMM path: bare single-threaded OpenBLAS sgemm at the
// path's tile shape (a block of Q queries x a chunk of bank rows, scores written to a
// per-thread tile), streaming through a bank, with no selection at all. Run with 1 and
// with T threads, each thread taking its own chunks (what the fused path does).
//
// Against the OpenBLAS seqlab uses (the scipy-openblas32 wheel; its symbols are prefixed scipy_):
//   lib=$(.venv/bin/python -c "import scipy_openblas32 as s; print(s.get_lib_dir())")
//   inc=$(.venv/bin/python -c "import scipy_openblas32 as s; print(s.get_include_dir())")
//   g++ -O2 -I"$inc" benchmarks/sgemm_tile_ceiling.cpp -o /tmp/sgemm_tile_ceiling
//       -L"$lib" -lscipy_openblas -Wl,-rpath,"$lib" -lpthread       (one command line)
//   OPENBLAS_NUM_THREADS=1 /tmp/sgemm_tile_ceiling D N Q QBLOCK CHUNK THREADS
//   e.g. OPENBLAS_NUM_THREADS=1 /tmp/sgemm_tile_ceiling 384 200000 1000 1024 512 2
//
// Prints wall-clock GFLOP/s and GFLOP per CPU-second (the latter is robust to other
// processes taking the cores).
#include <cblas.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <thread>
#include <vector>

namespace {

double now(clockid_t clock) {
  timespec t;
  clock_gettime(clock, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 7) {
    std::fprintf(stderr, "usage: %s D N Q QBLOCK CHUNK THREADS\n", argv[0]);
    return 2;
  }
  const int D = std::atoi(argv[1]), N = std::atoi(argv[2]), Q = std::atoi(argv[3]);
  const int qblock = std::atoi(argv[4]), chunk = std::atoi(argv[5]), threads = std::atoi(argv[6]);
  std::vector<float> bank(static_cast<std::size_t>(N) * D);
  std::vector<float> queries(static_cast<std::size_t>(Q) * D);
  std::mt19937 gen(0);
  std::normal_distribution<float> normal;
  for (float& x : bank) x = normal(gen);
  for (float& x : queries) x = normal(gen);
  const int nchunks = (N + chunk - 1) / chunk;
  for (int rep = 0; rep < 3; ++rep) {
    std::atomic<int> next{0};
    std::vector<double> cpu(threads, 0.0);
    const double t0 = now(CLOCK_MONOTONIC);
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&, t] {
        const double c0 = now(CLOCK_THREAD_CPUTIME_ID);
        std::vector<float> tile(static_cast<std::size_t>(qblock) * chunk);
        for (int c; (c = next.fetch_add(1)) < nchunks;) {
          const int j0 = c * chunk, nb = std::min(chunk, N - j0);
          for (int q0 = 0; q0 < Q; q0 += qblock) {
            const int nq = std::min(qblock, Q - q0);
            scipy_cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nb, D, 1.0f,
                              queries.data() + static_cast<std::size_t>(q0) * D, D,
                              bank.data() + static_cast<std::size_t>(j0) * D, D, 0.0f, tile.data(), nb);
          }
        }
        cpu[t] = now(CLOCK_THREAD_CPUTIME_ID) - c0;
      });
    for (auto& th : pool) th.join();
    const double wall = now(CLOCK_MONOTONIC) - t0;
    double cpu_total = 0.0;
    for (double c : cpu) cpu_total += c;
    const double gflop = 2.0 * Q * static_cast<double>(N) * D / 1e9;
    std::printf("D=%d N=%d Q=%d tile %dx%d threads=%d: %.1f GFLOP/s wall, %.1f GFLOP per CPU-s\n",
                D, N, Q, qblock, chunk, threads, gflop / wall, gflop / cpu_total);
  }
  return 0;
}
