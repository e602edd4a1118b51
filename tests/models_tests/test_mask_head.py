"""The mask predictor's test-time path: only each ROI's labelled class."""
import chainer
import numpy
import pytest

from models.mask_head import MaskPredictor


@pytest.mark.parametrize('n_rois', [0, 1, 7])
def test_class_logits_are_the_labelled_channel_of_all_logits(xp, n_rois):
    rng = numpy.random.RandomState(n_rois)
    predictor = MaskPredictor(8, n_class=5, mid_channels=6)
    for p in predictor.params():
        p.array = rng.normal(0, 1, p.shape).astype(numpy.float64)
    if xp is not numpy:
        predictor.to_gpu()
    h = xp.asarray(rng.normal(0, 1, (n_rois, 8, 3, 3)))
    label = xp.asarray(rng.randint(0, 5, n_rois).astype(numpy.int32))
    with chainer.no_backprop_mode():
        every = predictor(h).array                       # (R, 5, 6, 6)
        own = predictor(h, label).array                  # (R, 6, 6)
    assert own.shape == (n_rois, 6, 6)
    xp.testing.assert_allclose(own, every[xp.arange(n_rois), label],
                               rtol=1e-12, atol=1e-12)


def test_class_logits_by_hand():
    # One ROI, one channel after a 1x1 "deconvolution" that is the
    # identity: logit = w[label] * relu(x) + b[label].
    predictor = MaskPredictor(1, n_class=3, mid_channels=1)
    predictor.deconv.W.array[...] = 1.
    predictor.deconv.b.array[...] = 0.
    predictor.logits.W.array[:, 0, 0, 0] = [1., 2., 3.]
    predictor.logits.b.array[...] = [0., 10., 20.]
    x = numpy.array([[[[1., -1.], [2., 0.5]]]], numpy.float32)
    with chainer.no_backprop_mode():
        y = predictor(x, numpy.array([2], numpy.int32)).array
    # The 2x2/2 deconvolution with all-ones weights copies each pixel into
    # a 2x2 block; the ReLU zeroes the -1.
    relu = numpy.kron(numpy.maximum(x[0, 0], 0), numpy.ones((2, 2)))
    numpy.testing.assert_allclose(y[0], 3 * relu + 20, rtol=1e-6)
