"""The im2col / Winograd workspaces (functions/conv_columns.workspace) are
one per thread: two threads convolving different shapes at once, forward
and backward, each get chainer's numbers."""
import threading

import chainer
import chainer.functions as F
import numpy

from functions.convolution_2d import convolution_2d

# (N, C, H, W), (O, kh, kw), stride, pad: the wide stride-1 columns and a
# folded GEMM, which share the 'col' workspace, each thread its own sizes.
CASES = [((1, 8, 40, 50), (8, 5, 5), 1, 2),
         ((1, 6, 36, 60), (4, 5, 5), 1, 2),
         ((4, 8, 12, 14), (8, 5, 5), 1, 2)]


def _forward_backward(f, x, W, gy, stride, pad):
    xv, Wv = chainer.Variable(x), chainer.Variable(W)
    y = f(xv, Wv, None, stride, pad)
    y.grad = gy
    y.backward()
    return y.array.copy(), xv.grad.copy(), Wv.grad.copy()


def test_threads_convolving_at_once_get_chainers_numbers():
    rng = numpy.random.RandomState(0)
    work = []
    for x_shape, (o, kh, kw), stride, pad in CASES:
        x = rng.randn(*x_shape).astype(numpy.float32)
        W = rng.randn(o, x_shape[1], kh, kw).astype(numpy.float32)
        gy = rng.randn(*F.convolution_2d(x, W, None, stride, pad).shape)
        gy = gy.astype(numpy.float32)
        work.append(((x, W, gy, stride, pad), _forward_backward(
            F.convolution_2d, x, W, gy, stride, pad)))
    start = threading.Barrier(len(work))
    errors = []

    def run(args, expected):
        start.wait()
        try:
            for _ in range(8):
                got = _forward_backward(convolution_2d, *args)
                for a, b in zip(got, expected):
                    numpy.testing.assert_allclose(a, b, rtol=1e-4,
                                                  atol=1e-4)
        except AssertionError as e:
            errors.append(e)
    threads = [threading.Thread(target=run, args=w) for w in work]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
