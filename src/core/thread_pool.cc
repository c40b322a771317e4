#include "core/thread_pool.h"

#include <algorithm>
#include <chrono>

namespace hymba {
namespace {

void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  std::this_thread::yield();
#endif
}

// Long enough to span the gaps between the products of one decode step.
constexpr auto kSpinBeforeSleep = std::chrono::milliseconds(2);

}  // namespace

ThreadPool::ThreadPool(size_t threads) {
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  for (size_t i = 1; i < threads; ++i) workers_.emplace_back([this] { Work(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(mutex_);
    stopping_.store(true);
  }
  wake_.notify_all();
  for (std::thread& worker : workers_) worker.join();
}

void ThreadPool::RunRanges() {
  const size_t shares = 2 * size();
  size_t begin = next_.load(std::memory_order_relaxed);
  while (begin < count_) {
    const size_t end = std::min(count_, begin + std::max(grain_, (count_ - begin) / shares));
    if (next_.compare_exchange_weak(begin, end, std::memory_order_relaxed)) {
      (*task_)(begin, end);
      begin = next_.load(std::memory_order_relaxed);
    }
  }
}

void ThreadPool::Work() {
  uint64_t seen = 0;
  while (true) {
    auto idle_since = std::chrono::steady_clock::now();
    size_t spins = 0;
    while (generation_.load(std::memory_order_acquire) == seen && !stopping_.load(std::memory_order_acquire)) {
      CpuRelax();
      if (++spins % 1024 == 0 && std::chrono::steady_clock::now() - idle_since > kSpinBeforeSleep) {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, [&] { return generation_.load() != seen || stopping_.load(); });
        idle_since = std::chrono::steady_clock::now();
      }
    }
    if (stopping_.load()) return;
    seen = generation_.load(std::memory_order_acquire);
    RunRanges();
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::ParallelFor(size_t count, const std::function<void(size_t, size_t)>& fn, size_t grain) {
  if (workers_.empty() || count < 2) {
    if (count > 0) fn(0, count);
    return;
  }
  task_ = &fn;
  count_ = count;
  grain_ = grain > 0 ? grain : (count + size() - 1) / size();
  next_.store(0, std::memory_order_relaxed);
  pending_.store(workers_.size(), std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_release);
  { std::lock_guard lock(mutex_); }  // a worker between its check and its wait is now waiting
  wake_.notify_all();
  RunRanges();
  while (pending_.load(std::memory_order_acquire) != 0) CpuRelax();
}

}  // namespace hymba
