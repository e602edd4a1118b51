"""``L.Convolution2D`` and ``L.Deconvolution2D`` computed as plain GEMMs.

Without cuDNN (CuPy 14) and on the CPU, chainer's convolution transposes
its im2col buffer and its output around the GEMM; ours writes the product
the other way round and needs neither copy, and skips im2col for 1x1
kernels (two thirds of ResNet-50's convolutions). The link keeps
``L.Convolution2D``'s parameters and names (``W``, ``b``), so npz files
and converters are unaffected; dilated or grouped
convolutions fall back to chainer's function.

The mask head's 2x2, stride 2 deconvolution has non-overlapping outputs,
which ``functions/deconvolution_2d.py`` computes as one GEMM per tap
written in place. ``relu=True`` applies the ReLU in place in both links.
"""
import chainer.functions as F
import chainer.links as L

from functions.convolution_2d import _pair, convolution_2d
from functions.deconvolution_2d import non_overlapping_deconvolution_2d


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

    def forward(self, x, relu=False):
        if self.W.raw_array is None:
            self._initialize_params(x.shape[1])
        if not self._non_overlapping():
            y = super().forward(x)
            return F.relu(y) if relu else y
        return non_overlapping_deconvolution_2d(x, self.W, self.b, relu)

    def _non_overlapping(self):
        return (tuple(self.W.shape[2:]) == _pair(self.stride) and
                _pair(self.pad) == (0, 0) and
                self.outsize in (None, (None, None)) and
                _pair(self.dilate) == (1, 1) and self.groups == 1)
