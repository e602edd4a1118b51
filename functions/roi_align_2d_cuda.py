"""The CuPy path of ``roi_align_2d`` (sampling rule: the docstring of
``functions/roi_align_2d.py``): one thread per bin (n, c, ph, pw) of top /
gy, looping over the bin's samples. The preamble's ``roi_geometry`` and
``interp_1d`` mirror the NumPy functions of the same names
(``roi_align_2d_cpu.py``) line by line.
"""
import string

import chainer
from chainer.backends import cuda

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
        roi_w = max(roi_w, (T)1.);
        roi_h = max(roi_h, (T)1.);
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

_CUDA_PARAMS = '''
    raw T rois, raw int32 roi_indices, T spatial_scale, int32 aligned,
    int32 channels, int32 height, int32 width,
    int32 pooled_height, int32 pooled_width, int32 sampling_ratio'''

_CUDA_LOOP = string.Template(r'''
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
    ptrdiff_t plane = ((ptrdiff_t)roi_indices[n] * channels + c) *
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
''')

_CUDA_FORWARD = _CUDA_LOOP.substitute(
    init='T sum = 0;',
    sample=r'''
            sum += hy * hx * bottom_data[plane + y_low * width + x_low]
                 + hy * lx * bottom_data[plane + y_low * width + x_high]
                 + ly * hx * bottom_data[plane + y_high * width + x_low]
                 + ly * lx * bottom_data[plane + y_high * width + x_high];
''',
    finish='top_data = sum / count;')

_CUDA_BACKWARD = _CUDA_LOOP.substitute(
    init='T g = top_diff / count;',
    sample=r'''
            atomicAdd(&bottom_diff[plane + y_low * width + x_low],
                      hy * hx * g);
            atomicAdd(&bottom_diff[plane + y_low * width + x_high],
                      hy * lx * g);
            atomicAdd(&bottom_diff[plane + y_high * width + x_low],
                      ly * hx * g);
            atomicAdd(&bottom_diff[plane + y_high * width + x_high],
                      ly * lx * g);
''',
    finish='')


def _cuda_args(xp, x_shape, rois, roi_indices, dtype, params):
    outh, outw, spatial_scale, sampling_ratio, aligned = params
    return (xp.ascontiguousarray(rois.astype(dtype, copy=False)),
            xp.ascontiguousarray(roi_indices), spatial_scale, int(aligned),
            *x_shape[1:], outh, outw, sampling_ratio)


def forward_gpu(x, rois, roi_indices, params):
    xp = chainer.backend.get_array_module(x)
    top = xp.zeros((len(rois), x.shape[1]) + params[:2], x.dtype)
    if top.size and x.size:
        cuda.elementwise(
            'raw T bottom_data,' + _CUDA_PARAMS, 'T top_data', _CUDA_FORWARD,
            'roi_align_2d_fwd', preamble=_CUDA_PREAMBLE,
        )(xp.ascontiguousarray(x),
          *_cuda_args(xp, x.shape, rois, roi_indices, x.dtype, params), top)
    return top


def backward_gpu(x_shape, rois, roi_indices, gy, params):
    xp = chainer.backend.get_array_module(gy)
    gx = xp.zeros(x_shape, gy.dtype)
    if gx.size and gy.size:
        chainer.utils.nondeterministic('atomicAdd')
        cuda.elementwise(
            'T top_diff,' + _CUDA_PARAMS, 'raw T bottom_diff',
            _CUDA_BACKWARD, 'roi_align_2d_bwd', preamble=_CUDA_PREAMBLE,
        )(gy, *_cuda_args(xp, x_shape, rois, roi_indices, gy.dtype, params),
          gx)
    return gx
