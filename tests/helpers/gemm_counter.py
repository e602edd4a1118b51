"""An ndarray subclass that counts the GEMMs it takes part in, for tests
that assert how many matrix products a convolution node computes."""
import numpy


class CountsMatmul(numpy.ndarray):
    """An ndarray that counts the GEMMs (``numpy.matmul``) it takes part
    in; arrays derived from it keep counting. Reset ``CountsMatmul.calls``
    before the counted call."""
    calls = 0

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if ufunc is numpy.matmul:
            CountsMatmul.calls += 1

        def plain(arrays):
            return tuple(a.view(numpy.ndarray) if isinstance(a, CountsMatmul)
                         else a for a in arrays)
        if 'out' in kwargs:  # in place (``+=``)
            kwargs['out'] = plain(kwargs['out'])
        result = getattr(ufunc, method)(*plain(inputs), **kwargs)
        return result.view(CountsMatmul)
