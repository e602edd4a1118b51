"""Detectron vs detectron2 semantics: each option changes the outputs
exactly where it should, checked on hand-computed cases."""
import numpy
import pytest

from models.anchors import generate_anchors_d2
from models.box_head import BoxPredictor
from models.conventions import DETECTRON, DETECTRON2, Conventions
from models.poolers import ROIPooler
from models.presets import build_mask_rcnn, get_preset
from utils.ops.proposals import ProposalGenerator
from utils.ops.image import prepare
from utils.ops.masks import paste_masks_d2


def test_round_trip_and_validation():
    for c in (DETECTRON, DETECTRON2):
        assert Conventions.from_dict(c.to_dict()) == c
    assert Conventions.from_dict({}) == DETECTRON
    with pytest.raises(ValueError, match='unknown convention'):
        Conventions.from_dict({'box_ofset': 0})
    for bad in ({'box_offset': 2}, {'background_index': 1},
                {'channel_order': 'BRG'}, {'anchors': 'yolo'},
                {'pixel_std': (1., 0., 1.)}, {'pixel_mean': (1., 2.)},
                {'paste': 'cv2'}):
        with pytest.raises(ValueError):
            Conventions(**bad)


def test_background_last_is_moved_to_row_zero():
    # Hand case: logits [1, 2, 3] with background last -> [3, 1, 2].
    p = BoxPredictor(2, 3, background_index=-1)
    p.cls_score.W.array[...] = [[1, 0], [2, 0], [3, 0]]
    p.cls_score.b.array[...] = 0
    cls, _ = p(numpy.array([[1., 0.]], numpy.float32))
    numpy.testing.assert_array_equal(cls.array, [[3., 1., 2.]])
    # Same as Detectron's layout with the background row moved first.
    rng = numpy.random.RandomState(0)
    x = rng.randn(5, 4).astype(numpy.float32)
    last = BoxPredictor(4, 6, background_index=-1)
    first = BoxPredictor(4, 6, background_index=0)
    for name in ('W', 'b'):
        w = getattr(last.cls_score, name).array
        getattr(first.cls_score, name).array[...] = numpy.roll(w, 1, axis=0)
    first.bbox_pred.W.array[...] = last.bbox_pred.W.array
    first.bbox_pred.b.array[...] = last.bbox_pred.b.array
    for a, b in zip(last(x), first(x)):
        numpy.testing.assert_allclose(a.array, b.array, rtol=1e-6)


@pytest.mark.parametrize('aligned,expected', [(False, 3.), (True, 2.5)])
def test_aligned_shifts_rois_by_half_a_pixel(aligned, expected):
    # Feature value = x. ROI x 2..4, one sample at the bin centre:
    # Caffe2: 2 + 0.5 * 2 = 3; ROIAlignV2: 2 - 0.5 + 0.5 * 2 = 2.5.
    x = numpy.tile(numpy.arange(8, dtype=numpy.float32), (1, 1, 8, 1))
    pooler = ROIPooler(1, (1.,), 1, aligned=aligned, box_offset=0)
    out = pooler([x], numpy.array([[2., 2., 4., 4.]], numpy.float32),
                 numpy.zeros(1, numpy.int32))
    assert out.shape == (1, 1, 1, 1)
    assert out.array[0, 0, 0, 0] == pytest.approx(expected)


@pytest.mark.parametrize('box_offset,expected', [
    # "+1": w 16, centre 8; w' 32: x1 = 8 - 16 = -8 -> 0,
    # x2 = 8 + 16 - 1 = 23 -> W - 1 = 19.
    (1, [0., 0., 19., 19.]),
    # no "+1": w 15, centre 7.5; w' 30: x1 = -7.5 -> 0, x2 = 22.5 -> W = 20.
    (0, [0., 0., 20., 20.]),
])
def test_box_offset_in_decode_and_clip(box_offset, expected):
    gen = ProposalGenerator((10, 10), (10, 10), nms_thresh=0.7,
                            box_offset=box_offset)
    delta = numpy.array([[0., 0., numpy.log(2.), numpy.log(2.)]],
                        numpy.float32)
    anchor = numpy.array([[0., 0., 15., 15.]], numpy.float32)
    rois, _ = gen([numpy.ones(1, numpy.float32)], [delta], [anchor],
                  (20, 20), 1.)
    numpy.testing.assert_allclose(rois, [expected])


def test_detectron2_drops_only_empty_proposals():
    # A zero-width box: Detectron keeps it (width 0 + 1 >= 1 pixel),
    # detectron2's nonempty() drops it.
    anchor = numpy.array([[5., 5., 5., 9.], [0., 0., 9., 9.]], numpy.float32)
    delta = numpy.zeros((2, 4), numpy.float32)
    score = numpy.array([0.9, 0.8], numpy.float32)
    for box_offset, n in ((1, 2), (0, 1)):
        gen = ProposalGenerator((10, 10), (10, 10), nms_thresh=0.,
                                box_offset=box_offset)
        rois, _ = gen([score], [delta], [anchor], (20, 20), 1.)
        assert len(rois) == n


def test_detectron2_anchors_by_hand():
    a = generate_anchors_d2((32, 64), (0.5, 1., 2.))
    # size-major: index 1 is (32, ratio 1), index 3 is (64, ratio 0.5).
    numpy.testing.assert_allclose(a[1], [-16, -16, 16, 16])
    w = numpy.sqrt(64 ** 2 / 0.5)
    numpy.testing.assert_allclose(a[3], [-w / 2, -w / 4, w / 2, w / 4])
    model = build_mask_rcnn(get_preset('fpn-tiny', n_fg_class=2,
                                       conventions=DETECTRON2))
    numpy.testing.assert_allclose(model.cell_anchors[0][1], [-16, -16, 16, 16])


def test_normalization_order_mean_and_std():
    img = numpy.empty((3, 2, 2), numpy.float32)
    img[0], img[1], img[2] = 10., 20., 30.  # RGB
    x, _, _ = prepare(img, 2, 2, pixel_mean=(1., 2., 3.),
                      pixel_std=(2., 4., 8.), channel_order='BGR')
    numpy.testing.assert_allclose(x[:, 0, 0], [(30 - 1) / 2., (20 - 2) / 4.,
                                               (10 - 3) / 8.])
    x, _, _ = prepare(img, 2, 2, pixel_mean=(1., 2., 3.),
                      pixel_std=(2., 4., 8.), channel_order='RGB')
    numpy.testing.assert_allclose(x[:, 0, 0], [(10 - 1) / 2., (20 - 2) / 4.,
                                               (30 - 3) / 8.])


def _bilinear_zero_padded(mask, u, v):
    """Brute force: mask value at (row v, column u), taps outside 0."""
    M = mask.shape[0]
    x0, y0 = int(numpy.floor(u)), int(numpy.floor(v))
    total = 0.
    for yy, wy in ((y0, 1 - (v - y0)), (y0 + 1, v - y0)):
        for xx, wx in ((x0, 1 - (u - x0)), (x0 + 1, u - x0)):
            if 0 <= yy < M and 0 <= xx < M:
                total += wy * wx * mask[yy, xx]
    return total


def test_detectron2_paste_matches_pixel_by_pixel_reference():
    rng = numpy.random.RandomState(0)
    M, H, W = 6, 12, 14
    masks = rng.rand(3, M, M).astype(numpy.float32)
    bbox = numpy.array([[2.3, 1.7, 9.6, 8.2], [-3., 4., 5.5, 15.],
                        [10., 0., 13.9, 3.1]], numpy.float32)
    out = paste_masks_d2(masks, bbox, (H, W))
    for i, (x1, y1, x2, y2) in enumerate(bbox):
        for y in range(H):
            for x in range(W):
                u = (x + 0.5 - x1) / (x2 - x1) * M - 0.5
                v = (y + 0.5 - y1) / (y2 - y1) * M - 0.5
                value = _bilinear_zero_padded(masks[i], u, v)
                if abs(value - 0.5) > 1e-5:
                    assert out[i, y, x] == (value >= 0.5), (i, y, x, value)


def test_detectron2_model_reads_its_own_options():
    model = build_mask_rcnn(get_preset('fpn', n_fg_class=3,
                                       conventions=DETECTRON2))
    assert model.box_head.pooler.aligned and model.mask_head.pooler.aligned
    assert model.box_head.pooler.box_offset == 0
    assert model.proposal_generator.box_offset == 0
    assert model.box_head.predictor.background_index == -1
    assert model.normalization['pixel_mean'] == (103.53, 116.28, 123.675)
