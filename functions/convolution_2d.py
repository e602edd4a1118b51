"""2D convolution as one matrix product per image, in NCHW order.

Without cuDNN (CuPy 14) and on the CPU, chainer's ``convolution_2d``
unrolls the input with im2col into ``col`` (N, C, kh, kw, H', W') and calls
``tensordot(col, W)``: that transposes the whole ``col`` (kh * kw times the
input) to (N, H', W', C*kh*kw) before the GEMM and returns an (N, H', W',
C_out) result that is transposed back. Written the other way round, with
the weights on the left, both copies disappear::

    col[n]  = im2col(x[n])                      (C*kh*kw, H'*W'), contiguous
    y[n]    = W.reshape(C_out, C*kh*kw) @ col[n] + b     (C_out, H'*W') = NCHW
    gW      = sum_n gy[n] @ col[n].T
    gcol[n] = W.reshape(C_out, C*kh*kw).T @ gy[n];  gx = col2im(gcol)

The columns are laid out per image or, for many small images (the heads'
ROIs), side by side for one GEMM (``functions/conv_columns.py``). Only
2-D GEMMs are used.

On NumPy, wide 3x3 stride-1 convolutions run by Winograd's F(2x2, 3x3)
instead (``functions/winograd.py``: 2.25x fewer multiplications): forward,
and backward for gx, the correlation of gy with the flipped kernel. gW of
a stride-1 convolution is summed over strips of wide columns
(``conv_columns.weight_gradient_wide``), never a whole image's im2col.

A 1x1 kernel without padding needs no im2col at all: ``col`` is the
(strided) input itself. ``col`` is recomputed in the backward pass rather
than kept, as chainer does, so training memory does not grow.

Shape letters: N images, C input and O output channels, (H, W) input and
(P, Q) output sizes, K = C * kh * kw, L = P * Q.
"""
from chainer import function_node
from chainer.backend import get_array_module
from chainer.utils import type_check

from functions import conv_columns as cc
from functions import winograd


def check_conv_types(in_types, w_in_axis, w_out_axis):
    """(x, W[, b]) of a 2D (de)convolution: float x (N, C, H, W), W of the
    same dtype with C on ``w_in_axis`` and the outputs on ``w_out_axis``
    ((O, C, kh, kw) convolution, (C, O, kh, kw) deconvolution), b (O,)."""
    n_in = in_types.size()
    type_check.expect(2 <= n_in, n_in <= 3)
    x_type, w_type = in_types[:2]
    type_check.expect(
        x_type.dtype.kind == 'f', w_type.dtype == x_type.dtype,
        x_type.ndim == 4, w_type.ndim == 4,
        x_type.shape[1] == w_type.shape[w_in_axis])
    if type_check.eval(n_in) == 3:
        b_type = in_types[2]
        type_check.expect(b_type.dtype == x_type.dtype, b_type.ndim == 1,
                          b_type.shape[0] == w_type.shape[w_out_axis])


class Convolution2DGEMM(function_node.FunctionNode):
    """y = conv(x, W) + b with stride and zero padding (no dilation, no
    groups, no ``cover_all``), then ``max(y, 0)`` in place if ``relu``."""

    def __init__(self, stride=1, pad=0, relu=False):
        self.sy, self.sx = _pair(stride)
        self.ph, self.pw = _pair(pad)
        self.relu = relu

    def check_type_forward(self, in_types):
        check_conv_types(in_types, w_in_axis=1, w_out_axis=0)
        # At least one output pixel: the kernel fits in the padded input.
        x_type, w_type = in_types[:2]
        type_check.expect(x_type.shape[2] + 2 * self.ph >= w_type.shape[2],
                          x_type.shape[3] + 2 * self.pw >= w_type.shape[3])

    def forward(self, inputs):
        self.retain_inputs((0, 1))
        x, W = inputs[:2]
        n, _, h, w = x.shape
        o, _, kh, kw = W.shape
        geometry = (kh, kw, self.sy, self.sx, self.ph, self.pw)
        p, q = cc.output_size(h, w, *geometry)
        w2 = W.reshape(o, -1)
        wide = None
        if winograd.worthwhile(get_array_module(x), x.dtype, x.shape,
                               W.shape, (self.sy, self.sx),
                               (self.ph, self.pw)):
            # (N, O, P, Q) with 2.25x fewer multiplications.
            y = winograd.conv3x3(x, W, self.ph, self.pw)
        elif cc.folds(n, p, q):
            # (O, K) @ (K, N*L) -> (O, N*L)
            y = w2 @ cc.im2col_folded(x, *geometry, (p, q))
        elif (self.sy, self.sx) == (1, 1) and (kh, kw) != (1, 1):
            # (O, K) @ (N, K, P*Wp) -> (N, O, P*Wp), junk columns dropped
            # below (after the bias and ReLU, which they do not disturb).
            col, wide = cc.im2col_wide(x, kh, kw, self.ph, self.pw)
            y = cc.matmul_each(w2, col)
        else:
            # (O, K) @ (N, K, L) -> (N, O, L): already NCHW.
            y = cc.conv_each(w2, x, *geometry)
        if len(inputs) == 3:
            # O is the axis before the pixels: (O, N*L), (N, O, L) or
            # (N, O, P, Q).
            y += inputs[2].reshape((-1,) + (1,) * max(1, y.ndim - 2))
        if self.relu:
            # In place: no second output-sized array, as F.relu would make.
            get_array_module(y).maximum(y, 0, out=y)
            self.retain_outputs((0,))
        if y.ndim == 2:
            y = cc.unfold(y, n)             # (O, N*L) -> (N, O, L)
        elif wide:
            y = cc.drop_wide(y, wide, q)
        return y.reshape(n, o, p, q),

    def backward(self, indexes, grad_outputs):
        x, W = self.get_retained_inputs()
        gy, = grad_outputs
        inputs = (x, W, gy)
        if self.relu:
            inputs += self.get_retained_outputs()
        return Convolution2DGEMMGrad(self, indexes).apply(inputs)


class Convolution2DGEMMGrad(function_node.FunctionNode):
    """The gradients of ``Convolution2DGEMM`` that ``indexes`` asks for,
    in its order (0: gx, a GEMM and col2im, or Winograd; 1: gW, im2col or
    wide strips, and GEMMs; 2: gb, a sum); not differentiable. chainer
    asks only for the inputs that require a gradient, so a frozen stage's
    weights (run without a graph) and the image cost nothing."""

    def __init__(self, fwd, indexes):
        self.sy, self.sx, self.ph, self.pw = fwd.sy, fwd.sx, fwd.ph, fwd.pw
        self.indexes = tuple(indexes)

    def forward(self, inputs):
        x, W, gy = inputs[:3]
        if len(inputs) == 4:  # through the ReLU: zero where y <= 0
            gy = gy * (inputs[3] > 0)
        o, _, kh, kw = W.shape
        n, _, p, q = gy.shape
        geometry = (kh, kw, self.sy, self.sx, self.ph, self.pw)
        # Wide columns and Winograd apply to stride 1 and a kernel > 1x1.
        stride1_kxk = (self.sy, self.sx) == (1, 1) and (kh, kw) != (1, 1)
        out = {}
        if 0 in self.indexes and stride1_kxk and _winograd_input_gradient_fits(
                W, gy, self.ph, self.pw):
            out[0] = winograd_input_gradient(W, gy, self.ph, self.pw)
        gy4, gy = gy, gy.reshape(n, o, p * q)
        if cc.folds(n, p, q):
            gyf = cc.fold(gy)                                   # (O, N*L)
            if 1 in self.indexes:
                # (O, N*L) @ (N*L, K) -> (O, K)
                out[1] = gyf @ cc.im2col_folded(x, *geometry, (p, q)).T
            if 0 in self.indexes and 0 not in out:
                # (K, O) @ (O, N*L) -> (K, N*L) -> (N, C, H, W)
                out[0] = cc.col2im_folded(W.reshape(o, -1).T @ gyf, x.shape,
                                          *geometry, (p, q))
        else:
            if 1 in self.indexes and stride1_kxk:
                out[1] = cc.weight_gradient_wide(gy4, x, kh, kw, self.ph,
                                                 self.pw)
            elif 1 in self.indexes:
                out[1] = cc.weight_gradient_each(gy, x, *geometry)
            if 0 in self.indexes and 0 not in out:
                out[0] = cc.input_gradient_each(W.reshape(o, -1), gy,
                                                x.shape, *geometry, (p, q))
        if 1 in out:
            out[1] = out[1].reshape(W.shape)
        if 2 in self.indexes:
            out[2] = gy.sum(axis=(0, 2))
        return tuple(out[i] for i in self.indexes)

    def backward(self, indexes, grad_outputs):
        raise NotImplementedError('double backpropagation of '
                                  'convolution_2d is not supported')


def convolution_2d(x, W, b=None, stride=1, pad=0, relu=False):
    """2D convolution through NCHW GEMMs (module docstring).

    Args:
        x (Variable or array): (N, C, H, W) float.
        W (Variable or array): (O, C, kh, kw), same dtype.
        b (Variable or array or None): (O,).
        stride, pad (int or (int, int)): as ``F.convolution_2d``.
        relu (bool): apply ``F.relu`` to the result, in place.

    Returns:
        Variable: (N, O, P, Q) with ``P = (H + 2 ph - kh) // sy + 1``, equal
        to ``chainer.functions.convolution_2d(x, W, b, stride, pad)`` (and
        its ``F.relu`` if ``relu``).
    """
    inputs = (x, W) if b is None else (x, W, b)
    return Convolution2DGEMM(stride, pad, relu).apply(inputs)[0]


def _winograd_input_gradient_fits(W, gy, ph, pw):
    # The full correlation pads by 2 - ph; Winograd's own size rule holds.
    return (W.shape[2:] == (3, 3) and max(ph, pw) <= 2 and
            winograd.worthwhile(get_array_module(gy), gy.dtype, gy.shape,
                                (W.shape[1], W.shape[0], 3, 3), (1, 1),
                                (2 - ph, 2 - pw)))


def winograd_input_gradient(W, gy, ph, pw):
    """gx of a 3x3, stride-1 convolution with padding (ph, pw) <= 2: the
    full correlation of gy (N, O, P, Q) with the kernel W (O, C, 3, 3)
    flipped and transposed, padding 2 - ph, as a Winograd convolution ->
    (N, C, H, W): the sum the GEMM and col2im compute, with 2.25x fewer
    multiplications and no (K, L) columns."""
    wt = W[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)      # (C, O, 3, 3)
    return winograd.conv3x3(gy, get_array_module(W).ascontiguousarray(wt),
                            2 - ph, 2 - pw)


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)
