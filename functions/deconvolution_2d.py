"""Transposed convolution whose stride equals its kernel, without padding
(the mask head's 2x2/2 upsampling), then an optional ReLU in place.

Each input pixel writes its own kh x kw block of the output::

    y[n, o, kh*i + ky, kw*j + kx] = sum_c W[c, o, ky, kx] x[n, c, i, j] + b[o]

so the output's strided slice of tap (ky, kx), ``y[:, :, ky::kh, kx::kw]``,
is one 2-D GEMM over all images, ``W[:, :, ky, kx].T @ x`` with x seen as
(C, N*H*W), written in place. Chainer's version makes a tensordot, a
6-D transpose and col2im; a pixel shuffle written with chainer functions
makes four output-sized copies.

Shape letters: N images (ROIs), C input and O output channels, (H, W)
input size, output (H*kh, W*kw).
"""
from chainer import function_node
from chainer.backend import get_array_module

from functions.convolution_2d import check_conv_types


def _taps(kh, kw):
    for ky in range(kh):
        for kx in range(kw):
            yield ky, kx, (slice(ky, None, kh), slice(kx, None, kw))


def _images_last(a):
    """(N, R, H, W) -> (R, N*H*W), a copy."""
    n, r, h, w = a.shape
    return a.transpose(1, 0, 2, 3).reshape(r, n * h * w)


class NonOverlappingDeconvolution2D(function_node.FunctionNode):
    """y = deconv(x, W, stride=(kh, kw)) + b, then max(y, 0) if ``relu``."""

    def __init__(self, relu=False):
        self.relu = relu

    def check_type_forward(self, in_types):
        check_conv_types(in_types, w_in_axis=0, w_out_axis=1)

    def forward(self, inputs):
        self.retain_inputs((0, 1))
        x, W = inputs[:2]
        xp = get_array_module(x)
        n, _, h, w = x.shape
        _, o, kh, kw = W.shape
        xf = _images_last(x)                               # (C, N*H*W)
        y = xp.empty((n, o, h * kh, w * kw), x.dtype)
        for ky, kx, (rows, cols) in _taps(kh, kw):
            # (O, C) @ (C, N*H*W) -> (O, N, H, W) -> (N, O, H, W)
            tap = W[:, :, ky, kx].T @ xf
            y[:, :, rows, cols] = tap.reshape(o, n, h, w).transpose(
                1, 0, 2, 3)
        if len(inputs) == 3:
            y += inputs[2][:, None, None]
        if self.relu:
            xp.maximum(y, 0, out=y)
            self.retain_outputs((0,))
        return y,

    def backward(self, indexes, grad_outputs):
        x, W = self.get_retained_inputs()
        inputs = (x, W) + tuple(grad_outputs)
        if self.relu:
            inputs += self.get_retained_outputs()
        return NonOverlappingDeconvolution2DGrad(indexes).apply(inputs)


class NonOverlappingDeconvolution2DGrad(function_node.FunctionNode):
    """The gradients of ``NonOverlappingDeconvolution2D`` that ``indexes``
    asks for, in its order (0: gx, 1: gW, 2: gb); not differentiable."""

    def __init__(self, indexes):
        self.indexes = tuple(indexes)

    def forward(self, inputs):
        x, W, gy = inputs[:3]
        if len(inputs) == 4:  # through the ReLU: zero where y <= 0
            gy = gy * (inputs[3] > 0)
        xp = get_array_module(x)
        n, c, h, w = x.shape
        kh, kw = W.shape[2:]
        want_x, want_w = 0 in self.indexes, 1 in self.indexes
        xf = _images_last(x) if want_w else None           # (C, N*H*W)
        gxf = xp.zeros((c, n * h * w), x.dtype) if want_x else None
        gW = xp.empty_like(W) if want_w else None
        if want_x or want_w:
            for ky, kx, (rows, cols) in _taps(kh, kw):
                g = _images_last(gy[:, :, rows, cols])      # (O, N*H*W)
                if want_x:
                    gxf += W[:, :, ky, kx] @ g              # (C, N*H*W)
                if want_w:
                    gW[:, :, ky, kx] = xf @ g.T             # (C, O)
        out = {1: gW}
        if want_x:
            out[0] = xp.ascontiguousarray(
                gxf.reshape(c, n, h, w).transpose(1, 0, 2, 3))
        if 2 in self.indexes:
            out[2] = gy.sum(axis=(0, 2, 3))
        return tuple(out[i] for i in self.indexes)

    def backward(self, indexes, grad_outputs):
        raise NotImplementedError('double backpropagation of the '
                                  'non-overlapping deconvolution is not '
                                  'supported')


def non_overlapping_deconvolution_2d(x, W, b=None, relu=False):
    """``F.deconvolution_2d(x, W, b, stride=(kh, kw))`` (and its ReLU if
    ``relu``) for W (C, O, kh, kw), x (N, C, H, W) -> (N, O, H*kh, W*kw).
    """
    inputs = (x, W) if b is None else (x, W, b)
    return NonOverlappingDeconvolution2D(relu).apply(inputs)[0]
