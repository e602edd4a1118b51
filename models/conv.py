"""``L.Convolution2D`` and ``L.Deconvolution2D`` computed as plain GEMMs.

Without cuDNN (CuPy 14) and on the CPU, chainer's convolution transposes
its im2col buffer and its output around the GEMM; ours writes the product
the other way round and needs neither copy, and skips im2col for 1x1
kernels (two thirds of ResNet-50's convolutions). The link keeps
``L.Convolution2D``'s parameters and names (``W``, ``b``), so npz files
and converters are unaffected; dilated or grouped
convolutions fall back to chainer's function.

The mask head's 2x2, stride 2 deconvolution has non-overlapping outputs:
each input pixel writes its own kh x kw block, so it is one GEMM and a
pixel shuffle instead of chainer's tensordot + col2im::

    cols = W.reshape(C_in, C_out*kh*kw).T @ x.reshape(C_in, N*H*W)
    y    = cols.reshape(C_out, kh, kw, N, H, W) -> (N, C_out, H, kh, W, kw)
                                                -> (N, C_out, H*kh, W*kw)

(x is first brought to (C_in, N, H, W), a copy of the small side.)
"""
import chainer.functions as F
import chainer.links as L

from functions.convolution_2d import _pair, convolution_2d


class Convolution2D(L.Convolution2D):
    """Drop-in ``L.Convolution2D`` with the NCHW GEMM path; ``relu=True``
    applies the ReLU in place, without a second output-sized array."""

    def forward(self, x, relu=False):
        if self.W.raw_array is None:
            self._initialize_params(x.shape[1])
        if not self._uses_gemm():
            y = super().forward(x)
            return F.relu(y) if relu else y
        return convolution_2d(x, self.W, self.b, self.stride, self.pad,
                              relu)

    def _uses_gemm(self):
        return (_pair(self.dilate) == (1, 1) and self.groups == 1 and
                not getattr(self, 'cover_all', False))


class Deconvolution2D(L.Deconvolution2D):
    """Drop-in ``L.Deconvolution2D``; stride == kernel without padding
    runs as a GEMM and a pixel shuffle (module docstring)."""

    def forward(self, x):
        if self.W.raw_array is None:
            self._initialize_params(x.shape[1])
        if not self._non_overlapping():
            return super().forward(x)
        return non_overlapping_deconvolution_2d(x, self.W, self.b)

    def _non_overlapping(self):
        return (tuple(self.W.shape[2:]) == _pair(self.stride) and
                _pair(self.pad) == (0, 0) and
                self.outsize in (None, (None, None)) and
                _pair(self.dilate) == (1, 1) and self.groups == 1)


def non_overlapping_deconvolution_2d(x, W, b=None):
    """``F.deconvolution_2d(x, W, b, stride=(kh, kw))`` for W (C_in, C_out,
    kh, kw), x (N, C_in, H, W) -> (N, C_out, H*kh, W*kw)."""
    n, ci, h, w = x.shape
    _, co, kh, kw = W.shape
    w2 = F.reshape(W, (ci, co * kh * kw))
    # One 2-D GEMM over all N (ROIs in the mask head): a stacked matmul
    # would broadcast W into N copies, and CuPy's float16 matmul of 3-D
    # operands runs in float32 copies.
    # (N, Ci, H, W) -> (Ci, N, H*W) -> (Ci, N*H*W)
    x2 = F.reshape(F.transpose(F.reshape(x, (n, ci, h * w)), (1, 0, 2)),
                   (ci, n * h * w))
    cols = F.matmul(w2, x2, transa=True)           # (Co*kh*kw, N*H*W)
    # (Co, kh, kw, N, H, W) -> (N, Co, H, kh, W, kw)
    y = F.transpose(F.reshape(cols, (co, kh, kw, n, h, w)),
                    (3, 0, 4, 1, 5, 2))
    y = F.reshape(y, (n, co, h * kh, w * kw))
    return F.bias(y, b) if b is not None else y
