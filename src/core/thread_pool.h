// A fixed set of worker threads that split a loop into contiguous ranges. The
// calling thread takes the first range, so a pool of one runs inline.
#pragma once

#include <condition_variable>
#include <cstddef>
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
  // and returns when all are done. fn must not throw.
  void ParallelFor(size_t count, const std::function<void(size_t, size_t)>& fn);

 private:
  void Work(size_t index);

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable start_, done_;
  const std::function<void(size_t, size_t)>* task_ = nullptr;
  size_t count_ = 0;
  size_t generation_ = 0;
  size_t pending_ = 0;
  bool stopping_ = false;
};

}  // namespace hymba
