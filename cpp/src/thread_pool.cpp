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

extern "C" {
void openblas_set_num_threads(int);
int openblas_get_num_threads(void);
}

namespace seqlab {
namespace {

thread_local bool t_in_worker = false;

class ThreadPool {
 public:
  explicit ThreadPool(int n) { resize(n); }
  ~ThreadPool() { stop_workers(); }

  int size() const { return size_; }

  void resize(int n) {
    stop_workers();
    size_ = std::max(1, n);
    std::size_t generation = 0;
    {
      std::lock_guard<std::mutex> lk(mutex_);
      stopping_ = false;
      generation = generation_;
    }
    // New workers start at the current generation: a finished earlier run must not wake them.
    for (int i = 1; i < size_; ++i)
      workers_.emplace_back([this, i, generation] { worker_loop(i, generation); });
  }

  // Runs task(i) for i in [0, ntasks) with ntasks <= size(); task 0 on the caller.
  void run(int ntasks, const std::function<void(int)>& task) {
    std::lock_guard<std::mutex> run_guard(run_mutex_);  // one parallel region at a time
    {
      std::lock_guard<std::mutex> lk(mutex_);
      task_ = &task;
      ntasks_ = ntasks;
      pending_ = ntasks - 1;
      error_ = nullptr;
      ++generation_;
    }
    cv_start_.notify_all();
    std::exception_ptr caller_error;
    try {
      t_in_worker = true;
      task(0);
    } catch (...) {
      caller_error = std::current_exception();
    }
    t_in_worker = false;
    std::unique_lock<std::mutex> lk(mutex_);
    cv_done_.wait(lk, [this] { return pending_ == 0; });
    task_ = nullptr;
    if (caller_error) std::rethrow_exception(caller_error);
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void worker_loop(int index, std::size_t seen) {
    t_in_worker = true;
    for (;;) {
      const std::function<void(int)>* task = nullptr;
      {
        std::unique_lock<std::mutex> lk(mutex_);
        cv_start_.wait(lk, [&] { return stopping_ || generation_ != seen; });
        if (stopping_) return;
        seen = generation_;
        if (index >= ntasks_) continue;
        task = task_;
      }
      std::exception_ptr err;
      try {
        (*task)(index);
      } catch (...) {
        err = std::current_exception();
      }
      {
        std::lock_guard<std::mutex> lk(mutex_);
        if (err && !error_) error_ = err;
        if (--pending_ == 0) cv_done_.notify_all();
      }
    }
  }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lk(mutex_);
      stopping_ = true;
    }
    cv_start_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
  }

  int size_ = 1;
  std::vector<std::thread> workers_;
  std::mutex run_mutex_;
  std::mutex mutex_;
  std::condition_variable cv_start_, cv_done_;
  const std::function<void(int)>* task_ = nullptr;
  int ntasks_ = 0;
  int pending_ = 0;
  std::size_t generation_ = 0;
  bool stopping_ = false;
  std::exception_ptr error_;
};

ThreadPool& pool() {
  static ThreadPool instance(hardware_threads());
  return instance;
}

}  // namespace

int hardware_threads() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

void set_num_threads(int n) {
  n = std::max(1, n);
  pool().resize(n);
  openblas_set_num_threads(n);
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

SerialBlas::SerialBlas() : previous_(openblas_get_num_threads()) { openblas_set_num_threads(1); }
SerialBlas::~SerialBlas() { openblas_set_num_threads(previous_); }

}  // namespace seqlab
