// A fixed set of worker threads that split a loop into contiguous ranges. The
// calling thread takes the first range, so a pool of one runs inline.
//
// A decode step calls ParallelFor a few hundred times, each for well under a
// millisecond, so waking a sleeping thread each time (tens of microseconds in
// a VM) would cost more than it saves: workers spin for a while after each
// task and only then sleep, so an idle process does not keep the cores busy.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace hymba {

class ThreadPool {
 public:
  explicit ThreadPool(size_t threads);  // threads in all, the caller included; 0 = one per core
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  size_t size() const { return workers_.size() + 1; }

  // Calls fn(begin, end) on disjoint ranges covering [0, count), in parallel,
  // and returns when all are done. Threads claim ranges as they finish the
  // previous one, so a thread slowed by the memory system or the OS does not
  // hold the others up. A claim takes half a thread's even share of what is
  // left, but at least `grain` indices: long ranges first, then shorter ones,
  // so that the threads finish close together. grain 0 means one range per
  // thread. fn must not throw.
  void ParallelFor(size_t count, const std::function<void(size_t, size_t)>& fn, size_t grain = 0);

 private:
  void Work();
  void RunRanges();

  std::vector<std::thread> workers_;
  std::mutex mutex_;  // guards sleeping only; tasks are handed over through the atomics
  std::condition_variable wake_;
  const std::function<void(size_t, size_t)>* task_ = nullptr;
  size_t count_ = 0;
  size_t grain_ = 1;
  std::atomic<size_t> next_{0};
  std::atomic<uint64_t> generation_{0};
  std::atomic<size_t> pending_{0};
  std::atomic<bool> stopping_{false};
};

// Below this many values, a loop stays on the caller: waking the workers
// (microseconds in a VM) would cost more than it saves, so a decode step's
// rows of a few thousand values are not split.
inline constexpr size_t kMinParallelValues = size_t{1} << 15;

// pool.ParallelFor(count, fn, grain) for a loop that touches `values` values
// in all, or fn(0, count) on the caller when they are too few.
template <typename Fn>
void ParallelForValues(ThreadPool& pool, size_t count, size_t values, const Fn& fn, size_t grain = 0) {
  if (values < kMinParallelValues) {
    if (count > 0) fn(0, count);
    return;
  }
  pool.ParallelFor(count, fn, grain);
}

}  // namespace hymba
