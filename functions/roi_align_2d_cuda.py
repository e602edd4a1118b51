"""The CuPy path of ``roi_align_2d`` (sampling rule: the docstring of
``functions/roi_align_2d.py``): one thread per bin (n, c, ph, pw) of top /
gy, looping over the bin's samples. The preamble's ``roi_geometry`` and
``interp_1d`` mirror the NumPy functions of the same names
(``roi_align_2d_cpu.py``) line by line.

The kernels are ``cupy.RawKernel``s whose whole source is built here, by
``cuda_module``, for the GPU path and for the tests that compile it with
NVRTC and run it on the CPU (tests/helpers/cuda_shim) without a GPU.
"""
import functools
import string

import numpy

import chainer

KERNEL_NAMES = ('roi_align_2d_fwd', 'roi_align_2d_bwd')
_C_TYPES = {numpy.dtype(numpy.float32): 'float',
            numpy.dtype(numpy.float64): 'double'}
_THREADS = 256          # threads per block
_MAX_BLOCKS = 2 ** 16   # more bins than blocks * threads: grid-stride loop

# The CUDA twins of `roi_geometry` and `interp_1d`; T is float or double.
_CUDA_PREAMBLE = r'''
__device__ void roi_geometry(
        const T x1, const T y1, const T x2, const T y2,
        const T spatial_scale, const int aligned,
        const int pooled_height, const int pooled_width,
        const int sampling_ratio,
        T &start_y, T &start_x, T &bin_h, T &bin_w,
        int &grid_h, int &grid_w, T &count) {
    const T offset = aligned ? (T)0.5 : (T)0.;
    start_x = x1 * spatial_scale - offset;
    start_y = y1 * spatial_scale - offset;
    T end_x = x2 * spatial_scale - offset;
    T end_y = y2 * spatial_scale - offset;
    T roi_w = end_x - start_x;
    T roi_h = end_y - start_y;
    if (!aligned) {
        // Not max(): CUDA's is fmax, which turns a NaN side into 1 where
        // numpy.maximum keeps the NaN (and the ROI then samples nothing).
        roi_w = roi_w < (T)1. ? (T)1. : roi_w;
        roi_h = roi_h < (T)1. ? (T)1. : roi_h;
    }
    bin_h = roi_h / (T)pooled_height;
    bin_w = roi_w / (T)pooled_width;
    if (sampling_ratio > 0) {
        grid_h = sampling_ratio;
        grid_w = sampling_ratio;
    } else {
        grid_h = max((int)ceil(roi_h / (T)pooled_height), 0);
        grid_w = max((int)ceil(roi_w / (T)pooled_width), 0);
    }
    count = (T)max(grid_h * grid_w, 1);
}

__device__ bool interp_1d(
        T p, const int size, int &low, int &high, T &l, T &h) {
    // Written as !(inside) so that a NaN sample is outside, as in NumPy.
    if (!(p >= (T)-1. && p <= (T)size)) {
        return false;
    }
    p = max(p, (T)0.);
    low = (int)p;
    if (low >= size - 1) {
        low = size - 1;
        high = size - 1;
        p = (T)low;
    } else {
        high = low + 1;
    }
    l = p - (T)low;
    h = (T)1. - l;
    return true;
}
'''

# Both kernels: bins i = ((n * C + c) * PH + ph) * PW + pw of top / gy.
_CUDA_KERNEL = string.Template(r'''
extern "C" __global__ void $name(
        const long long size, const T* $data, const T* rois,
        const int* roi_indices, const T spatial_scale, const int aligned,
        const int channels, const int height, const int width,
        const int pooled_height, const int pooled_width,
        const int sampling_ratio, T* $out) {
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
       i < size; i += (long long)gridDim.x * blockDim.x) {
    int pw = i % pooled_width;
    int ph = (i / pooled_width) % pooled_height;
    int c = (i / pooled_width / pooled_height) % channels;
    int n = i / pooled_width / pooled_height / channels;
    T start_y, start_x, bin_h, bin_w, count;
    int grid_h, grid_w;
    roi_geometry(rois[n * 4 + 0], rois[n * 4 + 1],
                 rois[n * 4 + 2], rois[n * 4 + 3],
                 spatial_scale, aligned, pooled_height, pooled_width,
                 sampling_ratio,
                 start_y, start_x, bin_h, bin_w, grid_h, grid_w, count);
    // 64-bit: N C H W passes 2^31 for large batches of feature maps.
    long long plane = ((long long)roi_indices[n] * channels + c) *
                      height * width;
    int y_low = 0, y_high = 0, x_low = 0, x_high = 0;
    T ly = 0, hy = 0, lx = 0, hx = 0;
    $init
    for (int iy = 0; iy < grid_h; iy++) {
      T y = start_y + ph * bin_h + (T)(iy + .5) * bin_h / (T)grid_h;
      bool y_valid = interp_1d(y, height, y_low, y_high, ly, hy);
      for (int ix = 0; ix < grid_w; ix++) {
        T x = start_x + pw * bin_w + (T)(ix + .5) * bin_w / (T)grid_w;
        bool x_valid = interp_1d(x, width, x_low, x_high, lx, hx);
        if (!(y_valid && x_valid)) {
          continue;
        }
        $sample
      }
    }
    $finish
  }
}
''')

_CUDA_FORWARD = _CUDA_KERNEL.substitute(
    name='roi_align_2d_fwd', data='bottom_data', out='top_data',
    init='T sum = 0;',
    sample=r'''
        sum += hy * hx * bottom_data[plane + y_low * width + x_low]
             + hy * lx * bottom_data[plane + y_low * width + x_high]
             + ly * hx * bottom_data[plane + y_high * width + x_low]
             + ly * lx * bottom_data[plane + y_high * width + x_high];''',
    finish='top_data[i] = sum / count;')

_CUDA_BACKWARD = _CUDA_KERNEL.substitute(
    name='roi_align_2d_bwd', data='top_diff', out='bottom_diff',
    init='T g = top_diff[i] / count;',
    sample=r'''
        atomicAdd(&bottom_diff[plane + y_low * width + x_low], hy * hx * g);
        atomicAdd(&bottom_diff[plane + y_low * width + x_high], hy * lx * g);
        atomicAdd(&bottom_diff[plane + y_high * width + x_low], ly * hx * g);
        atomicAdd(&bottom_diff[plane + y_high * width + x_high],
                  ly * lx * g);''',
    finish='')


def cuda_module(dtype):
    """The CUDA source of both kernels (``KERNEL_NAMES``) for ``dtype``
    (float32 or float64; float16 maps are cast to float32 by the poolers)
    and the options given to ``cupy.RawKernel``: ``(source, options)``."""
    source = ('typedef {} T;\n'.format(_C_TYPES[numpy.dtype(dtype)])
              + _CUDA_PREAMBLE + _CUDA_FORWARD + _CUDA_BACKWARD)
    return source, ()


@functools.lru_cache(maxsize=None)
def _kernels(dtype_name):
    """``(forward, backward)`` RawKernels (compiled on first launch, cached
    per device by CuPy)."""
    import cupy
    source, options = cuda_module(dtype_name)
    return tuple(cupy.RawKernel(source, name, options=options)
                 for name in KERNEL_NAMES)


def launch_config(size):
    """``(grid, block)`` of a launch over ``size`` bins."""
    return (min(-(-size // _THREADS), _MAX_BLOCKS),), (_THREADS,)


def _launch(kernel, data, x_shape, rois, roi_indices, out, params, size):
    xp = chainer.backend.get_array_module(data)
    outh, outw, spatial_scale, sampling_ratio, aligned = params
    ints = [numpy.int32(v) for v in (aligned, *x_shape[1:], outh, outw,
                                     sampling_ratio)]
    kernel(*launch_config(size),
           (numpy.int64(size), xp.ascontiguousarray(data),
            xp.ascontiguousarray(rois.astype(data.dtype, copy=False)),
            xp.ascontiguousarray(roi_indices, dtype=numpy.int32),
            data.dtype.type(spatial_scale), *ints, out))


def forward_gpu(x, rois, roi_indices, params):
    xp = chainer.backend.get_array_module(x)
    top = xp.zeros((len(rois), x.shape[1]) + params[:2], x.dtype)
    if top.size and x.size:
        _launch(_kernels(x.dtype.name)[0], x, x.shape, rois, roi_indices,
                top, params, top.size)
    return top


def backward_gpu(x_shape, rois, roi_indices, gy, params):
    xp = chainer.backend.get_array_module(gy)
    gx = xp.zeros(x_shape, gy.dtype)
    if gx.size and gy.size:
        chainer.utils.nondeterministic('atomicAdd')
        _launch(_kernels(gy.dtype.name)[1], gy, x_shape, rois, roi_indices,
                gx, params, gy.size)
    return gx
