"""ROIAlign with Caffe2/Detectron ``RoIAlign`` semantics.

Shape letters: N images, C channels, H x W feature map, R ROIs (Rc in one
chunk), PH x PW bins, G samples per bin and axis, K taps in an ROI's window.

The sampling rule, for ROI ``(x1, y1, x2, y2)`` (y reads as x)::

    offset  = 0.5 if aligned else 0
    start_x = x1 * spatial_scale - offset
    roi_w   = x2 * spatial_scale - offset - start_x
    roi_w   = max(roi_w, 1)                  # only when not aligned
    bin_w   = roi_w / PW
    grid_w  = sampling_ratio if sampling_ratio > 0 else ceil(roi_w / PW)
    count   = max(grid_h * grid_w, 1)
    x       = start_x + pw * bin_w + (ix + 0.5) * bin_w / grid_w
                                             # ix = 0 .. grid_w - 1
    top[r, c, ph, pw] = sum over (iy, ix) of bilinear(y, x) / count

``bilinear`` is Caffe2's: a sample with ``y < -1 or y > H or x < -1 or
x > W`` reads 0 (and still counts in ``count``); otherwise, per axis,
``y = max(y, 0)``, ``y_low = int(y)``; if ``y_low >= H - 1`` then
``y_low = y_high = H - 1`` and ``y = y_low``, else ``y_high = y_low + 1``;
``ly = y - y_low``, ``hy = 1 - ly``; the value is ``hy*hx*v[y_low, x_low]
+ hy*lx*v[y_low, x_high] + ly*hx*v[y_high, x_low] + ly*lx*v[y_high,
x_high]``. ``aligned=True`` is detectron2's half-pixel variant, which also
skips the clamp to 1 (docs/conventions.md, "pixel model"); there an ROI with
``x2 < x1`` and adaptive sampling gets ``grid_w <= 0`` and pools 0.

The rule is separable: tap ``(y', x')`` has weight ``wy[ph, y'] *
wx[pw, x']`` in bin ``(ph, pw)`` (the out-of-range test is a per-axis mask
too). The NumPy path builds ``wy`` (PH, Kh) and ``wx`` (PW, Kw) over each
ROI's window of taps and pools with two batched products,
``top = wy @ window @ wx.T``; ROIs go in chunks to bound memory. The CUDA
kernels loop over the samples of one bin. ``_roi_geometry`` and
``_interp_1d`` mirror the CUDA ``roi_geometry`` and ``interp_1d`` line by
line, in the input's dtype.
"""
import numbers
import string

import numpy

import chainer
from chainer.backends import cuda
from chainer import function_node
from chainer.utils import type_check

# Working-array elements per chunk of ROIs on the NumPy path (32 MiB in
# float32, about the L3 cache: larger chunks were slower, not faster).
_CHUNK_ELEMENTS = 2 ** 23


def _roi_geometry(rois, spatial_scale, aligned, pooled_height, pooled_width,
                  sampling_ratio):
    """Sampling grid of each ROI.

    Args:
        rois (numpy.ndarray): (R, 4) (x1, y1, x2, y2), input pixels, in the
            dtype the arithmetic runs in.

    Returns:
        tuple: ``start_y, start_x, bin_h, bin_w, count`` (R,) in the dtype
        of ``rois`` and ``grid_h, grid_w`` (R,) int64 >= 0.
    """
    offset = 0.5 if aligned else 0.
    start_x = rois[:, 0] * spatial_scale - offset
    start_y = rois[:, 1] * spatial_scale - offset
    end_x = rois[:, 2] * spatial_scale - offset
    end_y = rois[:, 3] * spatial_scale - offset
    roi_w = end_x - start_x
    roi_h = end_y - start_y
    if not aligned:
        roi_w = numpy.maximum(roi_w, 1)
        roi_h = numpy.maximum(roi_h, 1)
    bin_h = roi_h / pooled_height
    bin_w = roi_w / pooled_width
    if sampling_ratio > 0:
        grid_h = numpy.full(len(rois), sampling_ratio)
        grid_w = numpy.full(len(rois), sampling_ratio)
    else:
        grid_h = numpy.maximum(numpy.ceil(roi_h / pooled_height), 0)
        grid_w = numpy.maximum(numpy.ceil(roi_w / pooled_width), 0)
    grid_h, grid_w = grid_h.astype(numpy.int64), grid_w.astype(numpy.int64)
    count = numpy.maximum(grid_h * grid_w, 1).astype(rois.dtype)
    return start_y, start_x, bin_h, bin_w, grid_h, grid_w, count


def _interp_1d(p, size):
    """Bilinear taps of samples ``p`` (any shape) on an axis of ``size``.

    Returns:
        tuple: ``valid`` (bool); ``low, high`` (int64 in ``[0, size - 1]``,
        also where not valid); ``l, h`` (weights of ``high`` and ``low``,
        dtype of ``p``), all of the shape of ``p``.
    """
    valid = (p >= -1) & (p <= size)
    # Invalid samples are masked by `valid`; put them in range for the cast.
    p = numpy.where(valid, numpy.maximum(p, 0), 0).astype(p.dtype, copy=False)
    low = p.astype(numpy.int64)
    edge = low >= size - 1
    low = numpy.where(edge, size - 1, low)
    high = numpy.where(edge, size - 1, low + 1)
    p = numpy.where(edge, low.astype(p.dtype), p)
    l = p - low.astype(p.dtype)
    h = 1 - l
    return valid, low, high, l, h


# The CUDA twins of `_roi_geometry` and `_interp_1d`; T is float or double.
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
    if (p < (T)-1. || p > (T)size) {
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


# ---------------------------------------------------------------------------
# NumPy

def _axis_weights(start, bin_size, grid, pooled, size):
    """Interpolation matrices of one axis over each ROI's window of taps.

    Args:
        start, bin_size (numpy.ndarray): (Rc,) float; grid: (Rc,) int64.
        pooled (int): PH or PW. size (int): H or W.

    Returns:
        tuple: ``w`` (Rc, pooled, K), the summed weight of tap
        ``first + k`` in each bin, and ``first`` (Rc,) int64 in
        ``[0, size - K]``.
    """
    dtype = start.dtype
    g_max = max(int(grid.max()), 1)
    p = numpy.arange(pooled, dtype=dtype)[:, None]            # (P, 1)
    i = numpy.arange(g_max, dtype=dtype)                      # (G,)
    start, bin_size = start[:, None, None], bin_size[:, None, None]
    grid_f = numpy.maximum(grid, 1).astype(dtype)[:, None, None]
    # (Rc, P, G); CUDA: y = start_y + ph * bin_h + (iy + .5) * bin_h / grid_h
    y = start + p * bin_size + (i + 0.5) * bin_size / grid_f
    valid, low, high, l, h = _interp_1d(y, size)
    valid &= numpy.arange(g_max) < grid[:, None, None]
    first = numpy.where(valid, low, size).min(axis=(1, 2))
    last = numpy.where(valid, high, -1).max(axis=(1, 2))
    k = max(int((last - first).max()) + 1, 1)
    first = numpy.minimum(first, size - k)
    taps = numpy.arange(k)
    low = (low - first[:, None, None])[..., None] == taps     # (Rc, P, G, K)
    high = (high - first[:, None, None])[..., None] == taps
    h = numpy.where(valid, h, 0)[..., None]
    l = numpy.where(valid, l, 0)[..., None]
    return (h * low + l * high).sum(axis=2, dtype=dtype), first


def _chunks(kh, kw, grid, outh, outw, channels):
    """ROI indices in chunks whose working arrays fit ``_CHUNK_ELEMENTS``.

    A chunk pads windows to its largest ``kh`` and ``kw`` (R,), so ROIs go
    by window height (buckets 25% apart), then width.
    """
    order = numpy.lexsort((kw, numpy.floor(numpy.log(kh) / numpy.log(1.25))))
    start = 0
    while start < len(order):
        idx = order[start:]
        mkh = numpy.maximum.accumulate(kh[idx])
        mkw = numpy.maximum.accumulate(kw[idx])
        mg = numpy.maximum.accumulate(grid[idx]) + 1
        per_roi = (channels * (mkh * mkw + outh * mkw + 2 * outh * outw)
                   + mg * (outh * mkh + outw * mkw))
        fits = numpy.arange(1, len(idx) + 1) * per_roi <= _CHUNK_ELEMENTS
        stop = start + max(int(numpy.count_nonzero(fits)), 1)
        yield order[start:stop]
        start = stop


def _windows(x_shape, rois, roi_indices, params):
    """Per chunk: ``idx`` (Rc,), ``wy`` (Rc, PH, Kh) (divided by
    ``count``), ``wx`` (Rc, PW, Kw) and ``pixel`` (Rc, Kh, Kw), the row of
    each window tap in ``x`` viewed as (N*H*W, C)."""
    outh, outw, spatial_scale, sampling_ratio, aligned = params
    channels, height, width = x_shape[1:]
    start_y, start_x, bin_h, bin_w, grid_h, grid_w, count = _roi_geometry(
        rois, spatial_scale, aligned, outh, outw, sampling_ratio)
    # Samples span |roi length| = |bin| * P, so taps span at most that + 3.
    kh = numpy.clip(numpy.abs(bin_h * outh) // 1 + 3, 1, height)
    kw = numpy.clip(numpy.abs(bin_w * outw) // 1 + 3, 1, width)
    for idx in _chunks(kh.astype(numpy.int64), kw.astype(numpy.int64),
                       numpy.maximum(grid_h, grid_w), outh, outw, channels):
        wy, y0 = _axis_weights(start_y[idx], bin_h[idx], grid_h[idx], outh,
                               height)
        wx, x0 = _axis_weights(start_x[idx], bin_w[idx], grid_w[idx], outw,
                               width)
        wy /= count[idx][:, None, None]
        yy = y0[:, None] + numpy.arange(wy.shape[2])              # (Rc, Kh)
        xx = x0[:, None] + numpy.arange(wx.shape[2])              # (Rc, Kw)
        b = roi_indices[idx].astype(numpy.int64)[:, None, None]
        pixel = (b * height + yy[:, :, None]) * width + xx[:, None, :]
        yield idx, wy, wx, pixel


def _forward_cpu(x, rois, roi_indices, params):
    outh, outw = params[:2]
    n_rois, c = len(rois), x.shape[1]
    if x.size == 0 or n_rois == 0:
        return numpy.zeros((n_rois, c, outh, outw), x.dtype)
    top = numpy.empty((n_rois, c, outh, outw), x.dtype)
    # (N, C, H, W) -> (N*H*W, C): a window tap is a contiguous row.
    x_rows = numpy.ascontiguousarray(x.transpose(0, 2, 3, 1)).reshape(-1, c)
    rois = rois.astype(x.dtype, copy=False)
    for idx, wy, wx, pixel in _windows(x.shape, rois, roi_indices, params):
        rc, kh, kw = pixel.shape
        window = numpy.take(x_rows, pixel, axis=0)        # (Rc, Kh, Kw, C)
        # (Rc, PH, Kh) @ (Rc, Kh, Kw*C) -> (Rc, PH, Kw*C)
        t = numpy.matmul(wy, window.reshape(rc, kh, kw * c))
        # (Rc, PH, C, Kw) @ (Rc, 1, Kw, PW) -> (Rc, PH, C, PW)
        t = numpy.matmul(t.reshape(rc, outh, kw, c).transpose(0, 1, 3, 2),
                         wx.transpose(0, 2, 1)[:, None])
        top[idx] = t.transpose(0, 2, 1, 3)
    return top


def _scatter_add(target, index, values):
    """``target[index] += values`` (rows) where ``index`` repeats.

    A fancy assignment keeps one of repeated rows, so rows go in rounds:
    round k adds the k-th occurrence of each index (rounds = the most
    windows overlapping one pixel). Faster than ``numpy.add.at``.

    Args:
        target (numpy.ndarray): (P, C), updated in place.
        index (numpy.ndarray): (M,) int rows of ``target``.
        values (numpy.ndarray): (M, C).
    """
    order = numpy.argsort(index, kind='stable')
    sorted_index = index[order]
    first = numpy.ones(len(index), bool)
    first[1:] = sorted_index[1:] != sorted_index[:-1]
    starts = numpy.flatnonzero(first)
    repeat = numpy.arange(len(index)) - starts[numpy.cumsum(first) - 1]
    rows = order[numpy.argsort(repeat, kind='stable')]
    bounds = numpy.cumsum(numpy.bincount(repeat))
    for lo, hi in zip(numpy.r_[0, bounds[:-1]], bounds):
        r = rows[lo:hi]
        i = index[r]
        rows_sum = numpy.take(target, i, axis=0)
        rows_sum += numpy.take(values, r, axis=0)
        target[i] = rows_sum


def _backward_cpu(x_shape, rois, roi_indices, gy, params):
    outh, outw = params[:2]
    n, c, height, width = x_shape
    gx_rows = numpy.zeros((n * height * width, c), gy.dtype)  # (N*H*W, C)
    if gx_rows.size and gy.size:
        rois = rois.astype(gy.dtype, copy=False)
        for idx, wy, wx, pixel in _windows(x_shape, rois, roi_indices,
                                           params):
            rc, kh, kw = pixel.shape
            # (Rc, C, PH, PW) -> (Rc, PH, PW, C), a view: BLAS reads each
            # (PW, C) matrix transposed.
            g = gy[idx].transpose(0, 2, 3, 1)
            # (Rc, 1, Kw, PW) @ (Rc, PH, PW, C) -> (Rc, PH, Kw, C)
            t = numpy.matmul(wx.transpose(0, 2, 1)[:, None], g)
            # (Rc, Kh, PH) @ (Rc, PH, Kw*C) -> (Rc, Kh, Kw*C)
            t = numpy.matmul(wy.transpose(0, 2, 1),
                             t.reshape(rc, outh, kw * c))
            _scatter_add(gx_rows, pixel.ravel(), t.reshape(-1, c))
    # (N*H*W, C) -> (N, C, H, W)
    return numpy.ascontiguousarray(
        gx_rows.reshape(n, height, width, c).transpose(0, 3, 1, 2))


# ---------------------------------------------------------------------------
# CUDA: one thread per bin (n, c, ph, pw) of top / gy.

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
    int plane = (roi_indices[n] * channels + c) * height * width;
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


def _forward_gpu(x, rois, roi_indices, params):
    xp = chainer.backend.get_array_module(x)
    top = xp.zeros((len(rois), x.shape[1]) + params[:2], x.dtype)
    if top.size and x.size:
        cuda.elementwise(
            'raw T bottom_data,' + _CUDA_PARAMS, 'T top_data', _CUDA_FORWARD,
            'roi_align_2d_fwd', preamble=_CUDA_PREAMBLE,
        )(xp.ascontiguousarray(x),
          *_cuda_args(xp, x.shape, rois, roi_indices, x.dtype, params), top)
    return top


def _backward_gpu(x_shape, rois, roi_indices, gy, params):
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


# ---------------------------------------------------------------------------
# FunctionNodes

def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


class ROIAlign2D(function_node.FunctionNode):
    """ROIAlign (Caffe2 ``RoIAlign``); see :func:`roi_align_2d`."""

    def __init__(self, outsize, spatial_scale, sampling_ratio=0,
                 aligned=False):
        pair = tuple(outsize) if isinstance(outsize, (tuple, list)) \
            else (outsize, outsize)
        if len(pair) != 2 or not all(_is_int(v) and v > 0 for v in pair):
            raise ValueError('outsize must be a positive int or a pair of '
                             'them, got {!r}'.format(outsize))
        if not (isinstance(spatial_scale, numbers.Real)
                and not isinstance(spatial_scale, bool)
                and spatial_scale > 0):
            raise ValueError('spatial_scale must be a positive number, got '
                             '{!r}'.format(spatial_scale))
        if not (_is_int(sampling_ratio) and sampling_ratio >= 0):
            raise ValueError('sampling_ratio must be an int >= 0 (0: '
                             'adaptive), got {!r}'.format(sampling_ratio))
        if not isinstance(aligned, (bool, numpy.bool_)):
            raise ValueError('aligned must be a bool, got {!r}'
                             .format(aligned))
        self.outh, self.outw = int(pair[0]), int(pair[1])
        self.spatial_scale = float(spatial_scale)
        self.sampling_ratio = int(sampling_ratio)
        self.aligned = bool(aligned)
        self.params = (self.outh, self.outw, self.spatial_scale,
                       self.sampling_ratio, self.aligned)

    def check_type_forward(self, in_types):
        type_check._argname(in_types, ('x', 'rois', 'roi_indices'))
        x_type, roi_type, index_type = in_types
        type_check.expect(
            x_type.dtype.kind == 'f',
            x_type.dtype.itemsize >= 4,  # float32 or float64
            x_type.dtype.itemsize <= 8,
            x_type.ndim == 4,
            roi_type.dtype.kind == 'f',
            roi_type.ndim == 2,
            roi_type.shape[1] == 4,
            index_type.dtype == numpy.int32,
            index_type.ndim == 1,
            roi_type.shape[0] == index_type.shape[0],
        )

    def forward_cpu(self, inputs):
        self.retain_inputs((1, 2))
        self._x_shape = inputs[0].shape
        return _forward_cpu(*inputs, self.params),

    def forward_gpu(self, inputs):
        self.retain_inputs((1, 2))
        self._x_shape = inputs[0].shape
        return _forward_gpu(*inputs, self.params),

    def backward(self, indexes, grad_outputs):
        rois, roi_indices = self.get_retained_inputs()
        gx, = ROIAlign2DGrad(self.params, self._x_shape).apply(
            (rois, roi_indices, grad_outputs[0]))
        return gx, None, None


class ROIAlign2DGrad(function_node.FunctionNode):
    """Gradient of :class:`ROIAlign2D` w.r.t. ``x``: gy (R, C, PH, PW) ->
    gx (N, C, H, W). ROIAlign is linear in ``x``, so this node's own
    gradient is ROIAlign again."""

    def __init__(self, params, x_shape):
        self.params = params
        self.x_shape = x_shape

    def forward_cpu(self, inputs):
        self.retain_inputs((0, 1))
        return _backward_cpu(self.x_shape, *inputs, self.params),

    def forward_gpu(self, inputs):
        self.retain_inputs((0, 1))
        return _backward_gpu(self.x_shape, *inputs, self.params),

    def backward(self, indexes, grad_outputs):
        rois, roi_indices = self.get_retained_inputs()
        outh, outw, spatial_scale, sampling_ratio, aligned = self.params
        ggy, = ROIAlign2D((outh, outw), spatial_scale, sampling_ratio,
                          aligned).apply((grad_outputs[0], rois, roi_indices))
        return None, None, ggy


def roi_align_2d(x, rois, roi_indices, outsize, spatial_scale,
                 sampling_ratio=0, aligned=False):
    """ROIAlign as Caffe2/Detectron ``RoIAlign`` (rule: module docstring).

    Args:
        x (~chainer.Variable or array): (N, C, H, W) float32 or float64
            feature map.
        rois (array): (R, 4) float ``(x1, y1, x2, y2)`` in input-image
            pixels; ``spatial_scale`` maps them onto ``x``. Cast to the
            dtype of ``x``.
        roi_indices (array): (R,) int32 image of each ROI, in ``[0, N)``.
        outsize (int or (int, int)): ``(PH, PW)``; an int means square.
        spatial_scale (float): feature pixels per input pixel (C4: 1/16;
            FPN: 1/4 .. 1/32).
        sampling_ratio (int): samples per bin along each axis; 0 is
            adaptive, ``ceil(roi_h / PH)`` x ``ceil(roi_w / PW)`` per ROI.
        aligned (bool): ``False`` is Detectron (no half-pixel shift, ROI
            sides clamped to >= 1 feature pixel); ``True`` is detectron2
            (coordinates shifted by -0.5, no clamp).

    Returns:
        ~chainer.Variable: (R, C, PH, PW) in the dtype of ``x``;
        differentiable w.r.t. ``x`` only.
    """
    return ROIAlign2D(outsize, spatial_scale, sampling_ratio,
                      aligned).apply((x, rois, roi_indices))[0]
