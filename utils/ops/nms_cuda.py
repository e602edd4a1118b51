"""The CuPy path of ``utils/ops/nms.py``: the bitmask algorithm of its
module docstring as two ``cupy.RawKernel``s whose whole source is here
(``cuda_module``, also compiled and run on the CPU by the tests), and
their launches.
"""
import functools

import numpy

_BLOCK = 64          # boxes per mask word: bits in unsigned long long
_REDUCE_THREADS = 256
KERNEL_NAMES = ('nms_mask', 'nms_reduce')


def greedy_gpu(bbox, label, thresh, n_max, box_offset):
    """Same positions as ``nms._greedy_cpu``, computed on the device."""
    import cupy

    with bbox.device:
        return greedy_launch(cupy, _kernels(), bbox, label, thresh, n_max,
                             box_offset)


def launch_config(n):
    """``(grid, block)`` of ``nms_mask`` and of ``nms_reduce`` for n boxes."""
    n_blocks = -(-n // _BLOCK)
    return ((n_blocks, n_blocks), (_BLOCK,)), ((1,), (_REDUCE_THREADS,))


def greedy_launch(xp, kernels, bbox, label, thresh, n_max, box_offset):
    """The two launches of ``greedy_gpu`` on ``xp``'s arrays (CuPy; the
    tests pass NumPy and kernels run on the CPU or recorded)."""
    mask_kernel, reduce_kernel = kernels
    n = len(bbox)
    mask_launch, reduce_launch = launch_config(n)
    bbox = xp.ascontiguousarray(bbox)
    if label is None:
        label = xp.zeros(n, dtype=numpy.int32)
    label = xp.ascontiguousarray(label, dtype=numpy.int32)
    # (n, n_blocks): word [r, b] holds the bits of block b's boxes that
    # box r suppresses. Only b >= r // 64 is written and read.
    mask = xp.zeros((n, mask_launch[0][0]), dtype=numpy.uint64)
    removed = xp.zeros(mask_launch[0][0], dtype=numpy.uint64)
    keep = xp.zeros(n, dtype=numpy.bool_)
    mask_kernel(*mask_launch,
                (numpy.int32(n), numpy.float32(thresh),
                 numpy.float32(box_offset), bbox, label, mask))
    reduce_kernel(*reduce_launch,
                  (numpy.int32(n), numpy.int32(n_max), mask, removed, keep))
    return xp.nonzero(keep)[0]  # syncs for the count, copies no mask


_CUDA_SOURCE = r'''
#define BLOCK 64

// Detectron's cython max/min, with its argument order below.
__device__ inline float max_f(float a, float b) { return a >= b ? a : b; }
__device__ inline float min_f(float a, float b) { return a <= b ? a : b; }

// IoU of kept box a and later box b, operation for operation as
// _greedy_cpu (compiled with --fmad=false so no multiply-add is fused).
__device__ inline float box_iou(const float* a, const float* b,
                                float box_offset) {
  float area_a = (a[2] - a[0] + box_offset) * (a[3] - a[1] + box_offset);
  float area_b = (b[2] - b[0] + box_offset) * (b[3] - b[1] + box_offset);
  float w = max_f(0.f, min_f(a[2], b[2]) - max_f(a[0], b[0]) + box_offset);
  float h = max_f(0.f, min_f(a[3], b[3]) - max_f(a[1], b[1]) + box_offset);
  float inter = w * h;
  return inter / (area_a + area_b - inter);
}

// grid (n_blocks, n_blocks), block BLOCK: blockIdx.y is the row block
// (the suppressing boxes), blockIdx.x the column block (the suppressed).
extern "C" __global__
void nms_mask(const int n, const float thresh, const float box_offset,
              const float* bbox, const int* label,
              unsigned long long* mask) {
  const int row_block = blockIdx.y;
  const int col_block = blockIdx.x;
  if (col_block < row_block) return;  // never read: whole block leaves
  const int n_blocks = (n + BLOCK - 1) / BLOCK;
  const int row_size = min(n - row_block * BLOCK, BLOCK);
  const int col_size = min(n - col_block * BLOCK, BLOCK);

  __shared__ float col_bbox[BLOCK * 4];
  __shared__ int col_label[BLOCK];
  if (threadIdx.x < col_size) {
    const int c = col_block * BLOCK + threadIdx.x;
    for (int k = 0; k < 4; ++k) {
      col_bbox[threadIdx.x * 4 + k] = bbox[c * 4 + k];
    }
    col_label[threadIdx.x] = label[c];
  }
  __syncthreads();

  if (threadIdx.x < row_size) {
    const int r = row_block * BLOCK + threadIdx.x;
    const int start = row_block == col_block ? threadIdx.x + 1 : 0;
    unsigned long long bits = 0;
    for (int t = start; t < col_size; ++t) {
      if (col_label[t] == label[r] &&
          box_iou(bbox + r * 4, col_bbox + t * 4, box_offset) >= thresh) {
        bits |= 1ULL << t;
      }
    }
    mask[(size_t)r * n_blocks + col_block] = bits;
  }
}

// One block. Thread k owns removed[b] for b % blockDim.x == k, so each
// word has a single writer; every thread runs the same serial walk over a
// block's 64 boxes (identical values, so the branches stay uniform).
extern "C" __global__
void nms_reduce(const int n, const int n_max,
                const unsigned long long* mask,
                unsigned long long* removed, bool* keep) {
  const int n_blocks = (n + BLOCK - 1) / BLOCK;
  int n_kept = 0;
  for (int b = 0; b < n_blocks && n_kept < n_max; ++b) {
    __syncthreads();  // removed[b] now has the rows of all earlier keeps
    unsigned long long cur = removed[b];
    const int size = min(n - b * BLOCK, BLOCK);
    for (int t = 0; t < size && n_kept < n_max; ++t) {
      if (cur & (1ULL << t)) continue;
      const int i = b * BLOCK + t;
      const unsigned long long* row = mask + (size_t)i * n_blocks;
      cur |= row[b];
      for (int c = threadIdx.x; c < n_blocks; c += blockDim.x) {
        if (c > b) removed[c] |= row[c];
      }
      if (threadIdx.x == 0) keep[i] = true;
      ++n_kept;
    }
  }
}
'''


def cuda_module():
    """The CUDA source of both kernels (``KERNEL_NAMES``) and the options
    given to ``cupy.RawKernel``: ``(source, options)``."""
    return _CUDA_SOURCE, ('--fmad=false',)


@functools.lru_cache(maxsize=None)
def _kernels():
    """The two RawKernels (compiled lazily, cached per device by CuPy)."""
    import cupy
    source, options = cuda_module()
    return tuple(cupy.RawKernel(source, name, options=options)
                 for name in KERNEL_NAMES)
