#include "core/thread_pool.h"

#include <algorithm>

namespace hymba {
namespace {

std::pair<size_t, size_t> Range(size_t count, size_t parts, size_t index) {
  return {count * index / parts, count * (index + 1) / parts};
}

}  // namespace

ThreadPool::ThreadPool(size_t threads) {
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  for (size_t i = 1; i < threads; ++i) workers_.emplace_back([this, i] { Work(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  start_.notify_all();
  for (std::thread& worker : workers_) worker.join();
}

void ThreadPool::Work(size_t index) {
  size_t seen = 0;
  while (true) {
    std::unique_lock lock(mutex_);
    start_.wait(lock, [&] { return stopping_ || generation_ != seen; });
    if (stopping_) return;
    seen = generation_;
    const auto* task = task_;
    const size_t count = count_;
    lock.unlock();
    const auto [begin, end] = Range(count, size(), index);
    if (begin < end) (*task)(begin, end);
    lock.lock();
    if (--pending_ == 0) done_.notify_one();
  }
}

void ThreadPool::ParallelFor(size_t count, const std::function<void(size_t, size_t)>& fn) {
  if (workers_.empty() || count < 2) {
    if (count > 0) fn(0, count);
    return;
  }
  {
    std::lock_guard lock(mutex_);
    task_ = &fn;
    count_ = count;
    pending_ = workers_.size();
    ++generation_;
  }
  start_.notify_all();
  const auto [begin, end] = Range(count, size(), 0);
  if (begin < end) fn(begin, end);
  std::unique_lock lock(mutex_);
  done_.wait(lock, [&] { return pending_ == 0; });
}

}  // namespace hymba
