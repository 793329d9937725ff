#include "seqlab/thread_pool.hpp"

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "seqlab/blas.hpp"  // the OpenBLAS thread-count calls

namespace seqlab {
namespace {

thread_local bool t_in_worker = false;

// A waiting thread first spins this many pause iterations (tens of microseconds)
// before it sleeps on a condition variable. Kernels with time loops (recurrent layers,
// decoders) enter the pool once per step with ~10-100 us of work; a futex wake-up per
// step costs a sizeable share of that, where a spinning worker starts at once.
constexpr int kSpinIterations = 4000;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  std::this_thread::yield();
#endif
}

class ThreadPool {
 public:
  explicit ThreadPool(int n) { resize(n); }
  ~ThreadPool() { stop_workers(); }

  int size() const { return size_.load(std::memory_order_acquire); }

  // Waits for the parallel region under way (another Python thread may be in one): the
  // workers stop only between regions, and two resizes never interleave.
  void resize(int n) {
    std::lock_guard<std::mutex> run_guard(run_mutex_);
    stop_workers();
    size_.store(std::max(1, n), std::memory_order_release);
    stopping_.store(false, std::memory_order_relaxed);
    // New workers start at the current generation: a finished earlier run must not wake them.
    const std::size_t generation = generation_.load(std::memory_order_acquire);
    for (int i = 1; i < size(); ++i)
      workers_.emplace_back([this, i, generation] { worker_loop(i, generation); });
  }

  // Runs task(i) for i in [0, ntasks); task 0 on the caller, task i on worker i. Every
  // worker (also those with index >= ntasks) acknowledges every run before it completes,
  // so no worker still reads this run's task when the next run replaces it. ntasks was
  // chosen from size() before the region began; when the pool shrank since (a resize
  // from another thread), the caller runs the tasks no worker has.
  void run(int ntasks, const std::function<void(int)>& task) {
    std::lock_guard<std::mutex> run_guard(run_mutex_);  // one parallel region at a time
    const int workers = size();
    task_ = &task;
    ntasks_ = ntasks;
    error_ = nullptr;
    pending_.store(workers - 1, std::memory_order_relaxed);
    {
      // Under the mutex: a worker about to sleep checks the generation under it too.
      std::lock_guard<std::mutex> lk(mutex_);
      generation_.fetch_add(1, std::memory_order_release);
    }
    cv_start_.notify_all();
    std::exception_ptr caller_error;
    try {
      t_in_worker = true;
      task(0);
      for (int i = workers; i < ntasks; ++i) task(i);
    } catch (...) {
      caller_error = std::current_exception();
    }
    t_in_worker = false;
    for (int spin = 0; spin < kSpinIterations && pending_.load(std::memory_order_acquire) != 0; ++spin)
      cpu_relax();
    {
      std::unique_lock<std::mutex> lk(mutex_);
      cv_done_.wait(lk, [this] { return pending_.load(std::memory_order_acquire) == 0; });
    }
    task_ = nullptr;
    if (caller_error) std::rethrow_exception(caller_error);
    if (error_) std::rethrow_exception(error_);
  }

 private:
  bool changed(std::size_t seen) const {
    return stopping_.load(std::memory_order_acquire) ||
           generation_.load(std::memory_order_acquire) != seen;
  }

  void worker_loop(int index, std::size_t seen) {
    t_in_worker = true;
    for (;;) {
      for (int spin = 0; spin < kSpinIterations && !changed(seen); ++spin) cpu_relax();
      if (!changed(seen)) {
        std::unique_lock<std::mutex> lk(mutex_);
        cv_start_.wait(lk, [&] { return changed(seen); });
      }
      if (stopping_.load(std::memory_order_acquire)) return;
      seen = generation_.load(std::memory_order_acquire);
      // task_ and ntasks_ stay fixed until this worker's acknowledgement below.
      std::exception_ptr err;
      if (index < ntasks_) {
        try {
          (*task_)(index);
        } catch (...) {
          err = std::current_exception();
        }
      }
      if (err) {
        std::lock_guard<std::mutex> lk(mutex_);
        if (!error_) error_ = err;
      }
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lk(mutex_);  // the caller checks pending_ under it
        cv_done_.notify_all();
      }
    }
  }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lk(mutex_);
      stopping_.store(true, std::memory_order_release);
    }
    cv_start_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
  }

  std::atomic<int> size_{1};
  std::vector<std::thread> workers_;
  std::mutex run_mutex_;
  std::mutex mutex_;
  std::condition_variable cv_start_, cv_done_;
  const std::function<void(int)>* task_ = nullptr;
  int ntasks_ = 0;
  std::atomic<int> pending_{0};
  std::atomic<std::size_t> generation_{0};
  std::atomic<bool> stopping_{false};
  std::exception_ptr error_;
};

ThreadPool& pool() {
  static ThreadPool instance(hardware_threads());
  return instance;
}

}  // namespace

std::string blas_kernel_family() { return SEQLAB_BLAS(openblas_get_corename)(); }

int hardware_threads() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

void set_num_threads(int n) {
  n = std::max(1, n);
  pool().resize(n);
  SEQLAB_BLAS(openblas_set_num_threads)(n);
}

int get_num_threads() { return pool().size(); }

void parallel_for(std::size_t n, std::size_t grain,
                  const std::function<void(std::size_t, std::size_t)>& fn) {
  if (n == 0) return;
  grain = std::max<std::size_t>(1, grain);
  const std::size_t max_chunks = (n + grain - 1) / grain;
  const int nthreads = static_cast<int>(std::min<std::size_t>(pool().size(), max_chunks));
  if (nthreads <= 1 || t_in_worker) {
    fn(0, n);
    return;
  }
  const std::size_t chunk = (n + nthreads - 1) / nthreads;
  pool().run(nthreads, [&](int i) {
    const std::size_t begin = static_cast<std::size_t>(i) * chunk;
    const std::size_t end = std::min(n, begin + chunk);
    if (begin < end) fn(begin, end);
  });
}

void parallel_claim(std::size_t n, const std::function<void(const ClaimFn& next)>& body) {
  if (n == 0) return;
  std::atomic<std::size_t> counter{0};
  const ClaimFn next = [&](std::size_t& i) {
    i = counter.fetch_add(1, std::memory_order_relaxed);
    return i < n;
  };
  const int nthreads = static_cast<int>(std::min<std::size_t>(pool().size(), n));
  if (nthreads <= 1 || t_in_worker) {
    body(next);
    return;
  }
  pool().run(nthreads, [&](int) { body(next); });
}

SerialBlas::SerialBlas() : previous_(SEQLAB_BLAS(openblas_get_num_threads)()) {
  SEQLAB_BLAS(openblas_set_num_threads)(1);
}
SerialBlas::~SerialBlas() { SEQLAB_BLAS(openblas_set_num_threads)(previous_); }

}  // namespace seqlab
