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

The NumPy path (``roi_align_2d_cpu.py``) pools with two batched products
over each ROI's window of taps; the CUDA kernels (``roi_align_2d_cuda.py``)
loop over the samples of one bin. Both spell the geometry and the
interpolation as ``roi_geometry`` and ``interp_1d``, line for line alike.
"""
import numbers

import numpy

import chainer
from chainer import function_node
from chainer.utils import type_check

from functions.roi_align_2d_cpu import backward_cpu, forward_cpu
from functions.roi_align_2d_cuda import backward_gpu, forward_gpu


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_roi_indices(roi_indices, n_images):
    """ValueError unless ``roi_indices`` (R,) are integers in
    ``[0, n_images)``.

    ``check_type_forward`` sees only dtypes and shapes. Unchecked, the
    CUDA kernels read (and the backward writes) outside ``x`` for an index
    out of range, and NumPy silently pools the last image for -1 (it raises
    only for ``>= N``). On CuPy, min and max come back in one transfer:
    one sync per call (tens of microseconds). It costs little overlap: the
    ROIs come out of NMS and the FPN level grouping, which sync already.
    """
    if roi_indices.dtype.kind not in 'iu':  # also when type_check is off
        raise ValueError('roi_indices must be integers (int32), got {}'
                         .format(roi_indices.dtype))
    if len(roi_indices) == 0:
        return
    xp = chainer.backend.get_array_module(roi_indices)
    lo, hi = xp.stack((roi_indices.min(), roi_indices.max())).tolist()
    if lo < 0 or hi >= n_images:
        raise ValueError(
            'roi_indices must be in [0, {}) (the batch size of x), got '
            'values from {} to {}'.format(n_images, lo, hi))


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

    def forward(self, inputs):
        _check_roi_indices(inputs[2], len(inputs[0]))
        return super().forward(inputs)  # forward_cpu or forward_gpu

    def forward_cpu(self, inputs):
        self.retain_inputs((1, 2))
        self._x_shape = inputs[0].shape
        return forward_cpu(*inputs, self.params),

    def forward_gpu(self, inputs):
        self.retain_inputs((1, 2))
        self._x_shape = inputs[0].shape
        return forward_gpu(*inputs, self.params),

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
        return backward_cpu(self.x_shape, *inputs, self.params),

    def forward_gpu(self, inputs):
        self.retain_inputs((0, 1))
        return backward_gpu(self.x_shape, *inputs, self.params),

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
