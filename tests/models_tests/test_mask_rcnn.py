"""End to end on small random-weight models and a real photo (matplotlib's
sample of Grace Hopper): output contract, presets, save/load round trip,
and CPU == GPU when a GPU is present."""
import matplotlib.cbook
import numpy
import pytest

from models.presets import build_mask_rcnn, get_preset
from utils.ops.image import ImageError, read_image
from utils.weights.model_io import ModelFileError, load_model, save_model

# Small images and few proposals keep CPU runs short.
SMALL = dict(min_size=160, max_size=256, rpn_pre_nms_top_n=(2000, 300),
             rpn_post_nms_top_n=(2000, 100))


@pytest.fixture(scope='module')
def photo():
    with matplotlib.cbook.get_sample_data('grace_hopper.jpg') as f:
        return read_image(f.name)


def _model(arch, **kw):
    numpy.random.seed(0)
    if arch == 'fpn':
        kw.setdefault('rpn_collect_top_n', (2000, 100))
    model = build_mask_rcnn(get_preset(arch, **SMALL, **kw))
    model.use_thresholds({'score_thresh': 0.0, 'nms_thresh': 0.5, 'limit': 30})
    return model


@pytest.fixture(scope='module', params=['c4', 'fpn'])
def model(request):
    return _model(request.param)


def test_output_contract(model, photo):
    bboxes, labels, scores, masks = model.predict([photo, photo[:, :300]])
    for img, b, lb, s, m in zip([photo, photo[:, :300]], bboxes, labels,
                                scores, masks):
        H, W = img.shape[1:]
        D = len(b)
        assert 0 < D <= 30
        assert b.dtype == numpy.float32 and b.shape == (D, 4)
        assert lb.dtype == numpy.int32 and ((lb >= 1) & (lb <= 80)).all()
        assert s.dtype == numpy.float32 and ((s >= 0) & (s <= 1)).all()
        assert m.shape == (D, H, W) and m.dtype == bool
        # Boxes clipped to the original image (inclusive pixels).
        assert (b[:, [0, 2]] >= 0).all() and (b[:, [0, 2]] <= W - 1).all()
        assert (b[:, [1, 3]] >= 0).all() and (b[:, [1, 3]] <= H - 1).all()
        # Within a class, scores come best first (NMS order).
        for j in numpy.unique(lb):
            sj = s[lb == j]
            assert (numpy.diff(sj) <= 0).all()
        # A pasted mask never leaves its box expanded by (M + 2) / M + 1 px.
        for box, mask in zip(b, m):
            ys, xs = numpy.nonzero(mask)
            if len(xs):
                w, h = box[2] - box[0], box[3] - box[1]
                assert xs.min() >= box[0] - w * 0.08 - 1
                assert xs.max() <= box[2] + w * 0.08 + 1
                assert ys.min() >= box[1] - h * 0.08 - 1
                assert ys.max() <= box[3] + h * 0.08 + 1


def test_zero_detections_is_a_result(model, photo):
    model.use_thresholds({'score_thresh': 1.0, 'nms_thresh': 0.5, 'limit': 30})
    try:
        bboxes, labels, scores, masks = model.predict([photo])
    finally:
        model.use_thresholds({'score_thresh': 0.0, 'nms_thresh': 0.5,
                              'limit': 30})
    assert bboxes[0].shape == (0, 4) and masks[0].shape == (0,) + \
        photo.shape[1:]


def _assert_no_detections(result, shape):
    bbox, label, score, mask = (a[0] for a in result)
    assert bbox.shape == (0, 4) and bbox.dtype == numpy.float32
    assert label.shape == (0,) and label.dtype == numpy.int32
    assert score.shape == (0,) and score.dtype == numpy.float32
    assert mask.shape == (0,) + shape and mask.dtype == bool


def test_no_proposals_is_a_result(model, photo, monkeypatch):
    # An RPN that keeps nothing: the heads never see 0 rois.
    monkeypatch.setattr(model, 'propose', lambda *args: model.xp.zeros(
        (0, 4), numpy.float32))
    _assert_no_detections(model.predict([photo]), photo.shape[1:])


def test_non_finite_weights_give_no_detections(photo):
    # A diverged training run: NaN objectness leaves no valid proposal.
    numpy.random.seed(0)
    m = build_mask_rcnn(get_preset('fpn-tiny', n_fg_class=2))
    for param in m.params():
        param.array[...] = numpy.nan
    _assert_no_detections(m.predict([photo]), photo.shape[1:])


def test_too_thin_image_is_an_image_error(model):
    # SMALL: max_size 256 caps the scale at 256 / 5000, 1 px -> 0.05 px.
    with pytest.raises(ImageError, match='5000x1 pixels'):
        model.predict([numpy.zeros((3, 1, 5000), numpy.float32)])


def test_thresholds():
    m = _model('c4')
    m.use_thresholds('evaluate')
    assert (m.score_thresh, m.nms_thresh, m.limit) == (0.05, 0.5, 100)
    m.use_thresholds('visualize')
    assert (m.score_thresh, m.nms_thresh) == (0.7, 0.3)
    with pytest.raises(ValueError, match='thresholds'):
        m.use_thresholds('fast')


def test_save_load_round_trip(tmp_path, photo):
    m = _model('fpn')
    path = str(tmp_path / 'm.npz')
    save_model(path, m, {'arch': 'fpn', 'depth': 50, 'n_fg_class': 80})
    loaded, meta = load_model(path, rpn_collect_top_n=(2000, 100), **SMALL)
    loaded.use_thresholds({'score_thresh': 0.0, 'nms_thresh': 0.5,
                           'limit': 30})
    a = m.predict([photo])
    b = loaded.predict([photo])
    for x, y in zip(a, b):
        numpy.testing.assert_array_equal(x[0], y[0])
    with pytest.raises(ModelFileError, match="holds a 'fpn' model"):
        load_model(path, arch='c4')
    # The class count is checked against the arrays before any is read.
    with pytest.raises(ModelFileError, match=r'n_fg_class \+ 1 = 21, but '
                       r'.*cls_score/W has 81'):
        load_model(path, n_fg_class=20)
    with pytest.raises(ModelFileError, match='not found'):
        load_model(str(tmp_path / 'missing.npz'))


@pytest.mark.gpu
@pytest.mark.parametrize('arch', ['c4', 'fpn'])
def test_gpu_gives_cpu_detections(arch, photo):
    cpu = _model(arch)
    gpu = _model(arch)
    gpu.to_gpu()
    a = cpu.predict([photo])
    b = gpu.predict([photo])
    assert len(a[0][0]) == len(b[0][0])
    numpy.testing.assert_allclose(a[0][0], b[0][0], atol=1e-4, rtol=1e-4)
    numpy.testing.assert_array_equal(a[1][0], b[1][0])
    numpy.testing.assert_allclose(a[2][0], b[2][0], atol=1e-4, rtol=1e-4)
    assert (a[3][0] != b[3][0]).mean() < 1e-3
