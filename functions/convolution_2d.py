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

Every product is a 2-D GEMM. A stacked ``matmul`` would broadcast ``W``
over N (CuPy then copies it N times, and turns float16 operands into
float32 copies), and in the heads N is the number of ROIs with small
P*Q: hundreds of tiny GEMMs. So when P*Q is small (``FOLD_BELOW``), the
images of a chunk are folded into the GEMM's columns,
``(K, N, P*Q) -> (K, N*P*Q)``, at the price of one copy of the chunk;
when P*Q is large (the backbone, N = 1 or 2) each image is one GEMM
already large enough, with no copy.

A 1x1 kernel without padding needs no im2col at all: ``col`` is the
(strided) input itself. ``col`` is recomputed in the backward pass rather
than kept, as chainer does, so training memory does not grow.

Shape letters: N images, C input and O output channels, (H, W) input and
(P, Q) output sizes, K = C * kh * kw.
"""
import numpy
from chainer import function_node
from chainer.backend import get_array_module
from chainer.utils import conv, type_check


def _im2col(x, kh, kw, sy, sx, ph, pw):
    """(N, C, H, W) -> (N, K, P*Q) contiguous."""
    xp = get_array_module(x)
    n, c = x.shape[:2]
    if (kh, kw, ph, pw) == (1, 1, 0, 0):
        col = xp.ascontiguousarray(x[:, :, ::sy, ::sx])
    elif xp is numpy:
        col = conv.im2col_cpu(x, kh, kw, sy, sx, ph, pw)
    else:
        col = conv.im2col_gpu(x, kh, kw, sy, sx, ph, pw)
    p, q = col.shape[-2:]
    return col.reshape(n, c * kh * kw, p * q), (p, q)


def _col2im(gcol, x_shape, kh, kw, sy, sx, ph, pw, pq):
    """(N, K, P*Q) -> (N, C, H, W), summing overlapping taps."""
    xp = get_array_module(gcol)
    n, c, h, w = x_shape
    gcol = gcol.reshape((n, c, kh, kw) + pq)
    if (kh, kw, ph, pw) == (1, 1, 0, 0):
        if (sy, sx) == (1, 1):
            return gcol.reshape(x_shape)
        gx = xp.zeros(x_shape, gcol.dtype)
        gx[:, :, ::sy, ::sx] = gcol[:, :, 0, 0]
        return gx
    if xp is numpy:
        return conv.col2im_cpu(gcol, sy, sx, ph, pw, h, w)
    return conv.col2im_gpu(gcol, sy, sx, ph, pw, h, w)


# Below this many output pixels per image, images are folded into one GEMM.
FOLD_BELOW = 1024
# Bytes of one folded chunk of ``col`` (bounds the extra copy).
CHUNK_BYTES = 64 << 20


def _chunks(n, per_image_bytes):
    step = max(1, CHUNK_BYTES // max(1, per_image_bytes))
    return [slice(s, min(n, s + step)) for s in range(0, n, step)]


def _fold(a):
    """(N, R, L) -> (R, N*L), a copy unless N == 1."""
    n, r, length = a.shape
    return a.transpose(1, 0, 2).reshape(r, n * length)


def left_matmul(w, b):
    """``w @ b[n]`` for every n through 2-D GEMMs: w (M, K), b (N, K, L) ->
    (N, M, L) contiguous."""
    xp = get_array_module(b)
    n, k, length = b.shape
    if n == 1:
        return (w @ b[0])[None]
    out = xp.empty((n, w.shape[0], length), numpy.result_type(w, b))
    if length >= FOLD_BELOW:
        for i in range(n):
            out[i] = w @ b[i]
        return out
    for s in _chunks(n, k * length * b.itemsize):
        m = s.stop - s.start
        # (M, m*L) -> (M, m, L) -> (m, M, L)
        out[s] = (w @ _fold(b[s])).reshape(-1, m, length).transpose(1, 0, 2)
    return out


def sum_matmul_t(a, b):
    """``sum_n a[n] @ b[n].T`` through 2-D GEMMs: a (N, M, L), b (N, K, L)
    -> (M, K)."""
    n, k, length = b.shape
    if n == 1:
        return a[0] @ b[0].T
    if length >= FOLD_BELOW:
        out = a[0] @ b[0].T
        for i in range(1, n):
            out += a[i] @ b[i].T
        return out
    out = None
    for s in _chunks(n, k * length * b.itemsize):
        part = _fold(a[s]) @ _fold(b[s]).T
        out = part if out is None else out + part
    return out


class Convolution2DGEMM(function_node.FunctionNode):
    """y = conv(x, W) + b with stride and zero padding (no dilation, no
    groups, no ``cover_all``), then ``max(y, 0)`` in place if ``relu``."""

    def __init__(self, stride=1, pad=0, relu=False):
        self.sy, self.sx = _pair(stride)
        self.ph, self.pw = _pair(pad)
        self.relu = relu

    def check_type_forward(self, in_types):
        n_in = in_types.size()
        type_check.expect(2 <= n_in, n_in <= 3)
        x_type, w_type = in_types[:2]
        type_check.expect(
            x_type.dtype.kind == 'f', w_type.dtype == x_type.dtype,
            x_type.ndim == 4, w_type.ndim == 4,
            x_type.shape[1] == w_type.shape[1])
        if type_check.eval(n_in) == 3:
            b_type = in_types[2]
            type_check.expect(b_type.dtype == x_type.dtype, b_type.ndim == 1,
                              b_type.shape[0] == w_type.shape[0])

    def forward(self, inputs):
        self.retain_inputs((0, 1))
        x, W = inputs[:2]
        o, _, kh, kw = W.shape
        col, (p, q) = _im2col(x, kh, kw, self.sy, self.sx, self.ph, self.pw)
        # (O, K) @ (N, K, P*Q) -> (N, O, P*Q): already NCHW.
        y = left_matmul(W.reshape(o, -1), col)
        if len(inputs) == 3:
            y += inputs[2][:, None]
        if self.relu:
            # In place: no second output-sized array, as F.relu would make.
            xp = get_array_module(y)
            xp.maximum(y, 0, out=y)
            self.retain_outputs((0,))
        return y.reshape(len(x), o, p, q),

    def backward(self, indexes, grad_outputs):
        x, W = self.get_retained_inputs()
        gy, = grad_outputs
        inputs = (x, W, gy)
        if self.relu:
            inputs += self.get_retained_outputs()
        grads = Convolution2DGEMMGrad(self, len(self.inputs) == 3).apply(
            inputs)
        return tuple(grads[i] for i in indexes)


class Convolution2DGEMMGrad(function_node.FunctionNode):
    """(gx, gW[, gb]) of ``Convolution2DGEMM``; not differentiable."""

    def __init__(self, fwd, with_bias):
        self.sy, self.sx, self.ph, self.pw = fwd.sy, fwd.sx, fwd.ph, fwd.pw
        self.with_bias = with_bias

    def forward(self, inputs):
        x, W, gy = inputs[:3]
        if len(inputs) == 4:  # through the ReLU: zero where y <= 0
            gy = gy * (inputs[3] > 0)
        o, _, kh, kw = W.shape
        n, _, p, q = gy.shape
        gy = gy.reshape(n, o, p * q)
        w2 = W.reshape(o, -1)
        col, pq = _im2col(x, kh, kw, self.sy, self.sx, self.ph, self.pw)
        gw = sum_matmul_t(gy, col)
        gcol = left_matmul(w2.T, gy)
        gx = _col2im(gcol, x.shape, kh, kw, self.sy, self.sx, self.ph,
                     self.pw, pq)
        out = (gx, gw.reshape(W.shape))
        if self.with_bias:
            out += (gy.sum(axis=(0, 2)),)
        return out

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


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)
