// A CPU allocator for libtorch that either passes every request to PyTorch's own (posix_memalign:
// what users get) or keeps every freed block and hands it out again for a request of the same
// size (warm memory: no page faults and, for small tensors, cache-hot lines). bnorm_bench times
// PyTorch both ways, since its eager kernels allocate their outputs on every call.
#pragma once

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <vector>

namespace bnorm_bench {

class ReusingCpuAllocator final : public c10::Allocator {
 public:
  // Installs the allocator for every CPU tensor from now on, passing requests through until
  // set_reuse(true).
  static ReusingCpuAllocator& install() {
    static ReusingCpuAllocator allocator;
    c10::SetCPUAllocator(&allocator, /*priority=*/1);
    return allocator;
  }

  // Whether a freed block is kept for the next request of its size (true) or goes back to the
  // system at once, and new requests go to PyTorch's own allocator (false).
  void set_reuse(bool reuse) {
    std::lock_guard<std::mutex> lock(mutex_);
    reuse_ = reuse;
  }

  // Returns every kept block to the system.
  void release() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [size, blocks] : free_)
      for (Block* b : blocks) {
        std::free(b->data);
        delete b;
      }
    free_.clear();
  }

  c10::DataPtr allocate(std::size_t n) const override {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!reuse_) return c10::GetDefaultCPUAllocator()->allocate(n);
    std::vector<Block*>& free_blocks = free_[n];
    Block* block = nullptr;
    if (!free_blocks.empty()) {
      block = free_blocks.back();
      free_blocks.pop_back();
    } else {
      // 64 bytes, as PyTorch aligns; aligned_alloc wants a nonzero multiple of the alignment.
      void* p = std::aligned_alloc(64, ((n > 0 ? n : 1) + 63) / 64 * 64);
      if (!p) throw std::bad_alloc();
      block = new Block{p, n, const_cast<ReusingCpuAllocator*>(this)};
    }
    return {block->data, block, &give_back, c10::Device(c10::DeviceType::CPU)};
  }

 private:
  struct Block {
    void* data;
    std::size_t size;
    ReusingCpuAllocator* owner;
  };

  static void give_back(void* ctx) {
    Block* block = static_cast<Block*>(ctx);
    std::lock_guard<std::mutex> lock(block->owner->mutex_);
    if (block->owner->reuse_) {
      block->owner->free_[block->size].push_back(block);
    } else {
      std::free(block->data);
      delete block;
    }
  }

  mutable std::mutex mutex_;
  bool reuse_ = false;
  mutable std::map<std::size_t, std::vector<Block*>> free_;
};

}  // namespace bnorm_bench
