"""``L.Convolution2D`` computed by ``functions/convolution_2d.py``.

Without cuDNN (CuPy 14) and on the CPU, chainer's convolution transposes
its im2col buffer and its output around the GEMM; ours writes the product
the other way round and needs neither copy, and skips im2col for 1x1
kernels (two thirds of ResNet-50's convolutions). The link keeps
``L.Convolution2D``'s parameters and names (``W``, ``b``), so npz files
and converters are unaffected; dilated or grouped
convolutions fall back to chainer's function.
"""
import chainer.links as L

from functions.convolution_2d import convolution_2d


class Convolution2D(L.Convolution2D):
    """Drop-in ``L.Convolution2D`` with the NCHW GEMM path."""

    def forward(self, x):
        if self.W.raw_array is None:
            self._initialize_params(x.shape[1])
        if not self._uses_gemm():
            return super().forward(x)
        return convolution_2d(x, self.W, self.b, self.stride, self.pad)

    def _uses_gemm(self):
        return (_pair(self.dilate) == (1, 1) and self.groups == 1 and
                not getattr(self, 'cover_all', False))


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)
