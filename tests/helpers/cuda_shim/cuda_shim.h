// The CUDA execution model on the CPU, for running the project's kernel
// text unchanged under g++ -std=c++20 (tests/helpers/cuda_shim/__init__.py
// includes this header, then the kernel source, then one launcher per
// kernel).
//
// - Blocks run one after another; a block's threads share its __shared__
//   arrays (static: one copy, reused by the next block).
// - Schedule THREADS runs a block's threads as OS threads (created once per
//   launch, not per block), __syncthreads() is a std::barrier and atomicAdd
//   a std::atomic_ref; a thread that returns leaves the barrier.
// - Schedules FORWARD, REVERSED and SHUFFLED run the threads one at a time
//   as fibers (ucontext), each up to its next __syncthreads() or its end,
//   in thread order, in reverse, or in a new random order at every
//   barrier: a result that depends on the order between two barriers (a
//   race) comes out different.
// - The math is CUDA's where it differs from C++'s: max/min of floats are
//   fmax/fmin (a NaN argument loses). Not modelled: float -> int casts of
//   NaN or out-of-range values (PTX saturates, x86 gives INT_MIN), CuPy's
//   -ftz=true (float32 subnormals flushed to 0), contracted multiply-adds
//   (NVRTC fuses them unless --fmad=false), warps.
#pragma once
#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <thread>
#include <vector>
#include <ucontext.h>

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
};

inline thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

inline int max(int a, int b) { return a > b ? a : b; }
inline int min(int a, int b) { return a < b ? a : b; }
inline float max(float a, float b) { return std::fmax(a, b); }
inline float min(float a, float b) { return std::fmin(a, b); }
inline double max(double a, double b) { return std::fmax(a, b); }
inline double min(double a, double b) { return std::fmin(a, b); }
using std::ceil;
using std::floor;

template <class T>
inline T atomicAdd(T* address, T value) {
  return std::atomic_ref<T>(*address).fetch_add(value);
}

namespace cuda_shim {

enum Schedule { THREADS = 0, FORWARD = 1, REVERSED = 2, SHUFFLED = 3 };

inline thread_local std::function<void()> sync_threads;

inline dim3 unflatten(unsigned i, dim3 d) {
  return {i % d.x, i / d.x % d.y, i / d.x / d.y};
}

template <class Kernel>
void run_threads(dim3 grid, dim3 block, Kernel kernel) {
  const unsigned n = block.x * block.y * block.z;
  const unsigned blocks = grid.x * grid.y * grid.z;
  std::optional<std::barrier<>> in_block;  // one per block: returns drop
  in_block.emplace(n);
  auto next_block = [&]() noexcept { in_block.emplace(n); };
  std::barrier<decltype(next_block)> between(n, next_block);
  std::vector<std::jthread> pool;
  for (unsigned t = 0; t < n; ++t) {
    pool.emplace_back([&, t] {
      gridDim = grid;
      blockDim = block;
      threadIdx = unflatten(t, block);
      sync_threads = [&] { in_block->arrive_and_wait(); };
      for (unsigned b = 0; b < blocks; ++b) {
        blockIdx = unflatten(b, grid);
        kernel();
        in_block->arrive_and_drop();
        between.arrive_and_wait();
      }
    });
  }
}

struct Fibers {
  ucontext_t main;
  std::vector<ucontext_t> ctx;
  std::vector<std::unique_ptr<char[]>> stacks;
  std::vector<char> done;
  unsigned current = 0;
  std::function<void()> body;
};

inline thread_local Fibers* fibers = nullptr;

inline void fiber_entry() {
  Fibers& f = *fibers;
  f.body();
  f.done[f.current] = 1;
  swapcontext(&f.ctx[f.current], &f.main);
}

template <class Kernel>
void run_fibers(dim3 grid, dim3 block, int schedule, unsigned seed,
                Kernel kernel) {
  const unsigned n = block.x * block.y * block.z;
  const unsigned blocks = grid.x * grid.y * grid.z;
  const size_t stack = 1 << 16;
  Fibers f;
  f.ctx.resize(n);
  f.done.resize(n);
  for (unsigned t = 0; t < n; ++t) {
    f.stacks.emplace_back(new char[stack]);
  }
  f.body = [&] { kernel(); };
  fibers = &f;
  gridDim = grid;
  blockDim = block;
  sync_threads = [&f] { swapcontext(&f.ctx[f.current], &f.main); };
  std::mt19937 rng(seed);
  std::vector<unsigned> order(n);
  for (unsigned b = 0; b < blocks; ++b) {
    blockIdx = unflatten(b, grid);
    for (unsigned t = 0; t < n; ++t) {
      getcontext(&f.ctx[t]);
      f.ctx[t].uc_stack.ss_sp = f.stacks[t].get();
      f.ctx[t].uc_stack.ss_size = stack;
      f.ctx[t].uc_link = nullptr;
      makecontext(&f.ctx[t], fiber_entry, 0);
      f.done[t] = 0;
    }
    unsigned alive = n;
    while (alive > 0) {  // one pass: every live thread to its next barrier
      for (unsigned t = 0; t < n; ++t) {
        order[t] = schedule == REVERSED ? n - 1 - t : t;
      }
      if (schedule == SHUFFLED) {
        std::shuffle(order.begin(), order.end(), rng);
      }
      for (unsigned t : order) {
        if (f.done[t]) continue;
        f.current = t;
        threadIdx = unflatten(t, block);
        swapcontext(&f.main, &f.ctx[t]);
        alive -= f.done[t];
      }
    }
  }
  fibers = nullptr;
}

template <class Kernel>
void launch(dim3 grid, dim3 block, int schedule, unsigned seed,
            Kernel kernel) {
  if (schedule == THREADS) {
    run_threads(grid, block, kernel);
  } else {
    run_fibers(grid, block, schedule, seed, kernel);
  }
}

}  // namespace cuda_shim

inline void __syncthreads() { cuda_shim::sync_threads(); }
