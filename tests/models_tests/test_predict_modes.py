"""predict in the modes the README documents: float16 weights
(``--dtype mixed16``), Detectron's padded ``im_info`` for test-time
proposals, and Detectron's float64 steps (mean subtraction, mask ROIs)."""
import chainer
import numpy
import pytest

from models.conventions import DETECTRON, DETECTRON2
from models.presets import build_mask_rcnn, get_preset
from utils.ops.image import prepare, prepare_d2
from utils.weights.model_io import model_arrays

# 60 x 70 at min_size 64: scale 64 / 60, resized 64 x 75 (75 is not a
# multiple of 32), padded to 64 x 96.
TINY = dict(n_fg_class=2, min_size=64, max_size=96)


def _image(seed=0, size=(60, 70)):
    return numpy.random.RandomState(seed).uniform(
        0, 255, (3,) + size).astype(numpy.float32)


def _model(conventions=DETECTRON):
    numpy.random.seed(0)
    model = build_mask_rcnn(get_preset('fpn-tiny', conventions=conventions,
                                       **TINY))
    model.use_thresholds({'score_thresh': 0., 'nms_thresh': 0.5, 'limit': 20})
    return model


class _Recorder:
    """Wraps the proposal generator and records the ``size`` it gets."""

    def __init__(self, generator):
        self.generator, self.sizes = generator, []

    def __call__(self, scores, deltas, anchors, size, scale, train=False):
        self.sizes.append(tuple(size))
        return self.generator(scores, deltas, anchors, size, scale, train)


@pytest.mark.parametrize('conventions, size', [(DETECTRON, (64, 96)),
                                               (DETECTRON2, (64, 75))])
def test_test_time_proposals_use_detectrons_padded_size(conventions, size):
    model = _model(conventions)
    model.proposal_generator = _Recorder(model.proposal_generator)
    model.predict([_image()])
    assert model.proposal_generator.sizes == [size]


def test_mixed16_weights_predict_in_float32():
    reference = _model()
    with chainer.using_config('dtype', chainer.mixed16):
        model = _model()
        for name, array in model_arrays(model).items():
            array[...] = model_arrays(reference)[name]
        assert model.dtype == numpy.float16
        bboxes, labels, scores, masks = model.predict([_image()])
    assert bboxes[0].dtype == numpy.float32 and len(bboxes[0]) > 0
    assert scores[0].dtype == numpy.float32
    assert masks[0].shape[1:] == (60, 70)
    # Proposals come from float32 scores and deltas: the same boxes as
    # the float32 model up to float16 rounding of the features.
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        x = prepare(_image(), 64, 96, 32, **reference.normalization)[0]
        ref = reference.propose(reference.extractor(x[None]), (64, 96), 1.)
        with chainer.using_config('dtype', chainer.mixed16):
            half = model.propose(model.extractor(
                x[None].astype(numpy.float16)), (64, 96), 1.)
    assert half.dtype == numpy.float32
    # Equal counts up to a borderline box that float16 tips across NMS's
    # threshold (one run: 230 and 231): never an empty side.
    assert len(ref) >= 50 and abs(len(half) - len(ref)) <= len(ref) // 50
    numpy.testing.assert_allclose(half[:5], ref[:5], atol=0.5)
    # Each of the 50 best half-precision proposals is a float32 one.
    gap = numpy.abs(half[:50, None] - ref[None]).max(axis=2).min(axis=1)
    assert gap.max() < 0.5, gap


def test_mean_is_subtracted_in_float64():
    # At scale 1 the resize copies pixels, so the input is the subtraction.
    img = numpy.random.RandomState(1).uniform(0, 255, (3, 32, 32)).astype(
        numpy.float32)
    x, scale, _ = prepare(img, 32, 32, 1, DETECTRON.pixel_mean)
    assert scale == 1
    expected = (img[::-1].astype(numpy.float64) -
                numpy.array(DETECTRON.pixel_mean)[:, None, None]).astype(
                    numpy.float32)
    numpy.testing.assert_array_equal(x, expected)
    single = img[::-1] - numpy.array(DETECTRON.pixel_mean,
                                     numpy.float32)[:, None, None]
    assert (single != expected).any()  # the case tells the two apart


def test_mask_rois_are_scaled_in_float64():
    model = _model()
    seen = []

    def mask_head(features, rois, roi_indices, label):
        seen.append(rois)
        return chainer.Variable(numpy.zeros((len(rois), 28, 28),
                                            numpy.float32))
    model.mask_head = mask_head
    bbox = numpy.random.RandomState(2).uniform(0, 60, (50, 4)).astype(
        numpy.float32)
    scale = 64. / 60.
    model.detect_masks([None] * 6, bbox, numpy.ones(50, numpy.int32), scale)
    expected = (bbox.astype(numpy.float64) * scale).astype(numpy.float32)
    numpy.testing.assert_array_equal(seen[0], expected)
    assert (bbox * numpy.float32(scale) != expected).any()


@pytest.mark.parametrize('conventions, resize', [(DETECTRON, prepare),
                                                 (DETECTRON2, prepare_d2)])
def test_each_convention_resizes_its_own_way(conventions, resize):
    model = _model(conventions)
    seen = []
    extractor = model.extractor

    def spy(x):
        seen.append(chainer.backend.CpuDevice().send(x))
        return extractor(x)
    model.extractor = spy
    img = numpy.round(_image())  # a decoded image: whole grey levels
    bboxes, _, _, masks = model.predict([img])
    x = resize(img, 64, 96, 32, **model.normalization)[0]
    numpy.testing.assert_array_equal(seen[0][0], x)
    assert masks[0].shape[1:] == (60, 70)
    b = bboxes[0]
    assert (b[:, :2] >= 0).all() and (b[:, 2] <= 70).all() and (
        b[:, 3] <= 60).all()


@pytest.mark.gpu
def test_predict_runs_on_the_models_device_whichever_is_current():
    import cupy
    if cupy.cuda.runtime.getDeviceCount() < 2:
        pytest.skip('needs two CUDA devices')
    reference = _model()
    expected = reference.predict([_image()])
    model = _model()
    model.to_gpu(1)
    with cupy.cuda.Device(0):  # --evaluate --gpu 1 leaves 0 current
        got = model.predict([_image()])
    for e, g in zip(expected, got):
        numpy.testing.assert_allclose(g[0], e[0], rtol=1e-4, atol=1e-3)


def test_predict_releases_the_workspaces():
    # The NumPy convolutions' scratch buffers (up to 0.64 GB after one
    # R-50-FPN image) are gone after a one-off predict; a loop keeps them.
    from functions import conv_columns
    model = _model()
    conv_columns.release_workspaces()
    with conv_columns.kept_workspaces():
        first = model.predict([_image()])
        assert conv_columns.workspace_bytes() > 0
    assert conv_columns.workspace_bytes() == 0
    second = model.predict([_image()])
    assert conv_columns.workspace_bytes() == 0
    third = model.predict([_image()])
    assert conv_columns.workspace_bytes() == 0
    for a, b, c in zip(first, second, third):
        for x, y, z in zip(a, b, c):
            numpy.testing.assert_array_equal(x, y)
            numpy.testing.assert_array_equal(x, z)
    assert len(first[0][0]) > 0   # detections, not an empty comparison
