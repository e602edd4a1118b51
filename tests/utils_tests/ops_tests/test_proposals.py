"""Proposal bookkeeping: pre-NMS top-N, decode, clip, size filter, NMS,
post-NMS top-N, and the FPN collection over levels, on hand-made inputs."""
import numpy

from utils.ops.proposals import ProposalGenerator


def _level(boxes, scores):
    boxes = numpy.asarray(boxes, numpy.float32)
    return (numpy.asarray(scores, numpy.float32),
            numpy.zeros((len(boxes), 4), numpy.float32), boxes)


def test_top_n_nms_and_post_top_n():
    # 0 and 1 overlap with IoU 0.9 -> 1 (lower score) suppressed at 0.7.
    boxes = [[0, 0, 99, 99], [0, 0, 99, 89], [200, 200, 299, 299],
             [400, 0, 499, 99], [0, 400, 99, 499], [300, 300, 399, 399]]
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.95]
    s, d, a = _level(boxes, scores)
    gen = ProposalGenerator(pre_nms_top_n=(6, 4), post_nms_top_n=(6, 2),
                            nms_thresh=0.7)
    # test: top 4 by score are 5, 0, 1, 2; NMS drops 1; keep best 2.
    rois, sc = gen([s], [d], [a], (1000, 1000), 1., train=False)
    numpy.testing.assert_array_equal(rois, a[[5, 0]])
    numpy.testing.assert_allclose(sc, [0.95, 0.9])
    # train: all 6 considered, 1 suppressed, 5 kept in score order.
    rois, _ = gen([s], [d], [a], (1000, 1000), 1., train=True)
    numpy.testing.assert_array_equal(rois, a[[5, 0, 2, 3, 4]])


def test_deltas_clip_and_min_size_in_original_pixels():
    s, d, a = _level([[10, 10, 29, 29], [50, 50, 55, 90]], [0.9, 0.8])
    d[0] = [0.5, 0., 0., 0.]  # +0.5 * 20 px along x
    gen = ProposalGenerator((10, 10), (10, 10), nms_thresh=0.7, min_size=4)
    # Image 36 wide: box 0 moves to [20, 10, 39, 29] and is clipped at 35.
    # Box 1 is 6 px wide resized, (55 - 50) / 2 + 1 = 3.5 < 4 px originally.
    rois, _ = gen([s], [d], [a], (100, 36), 2., train=False)
    numpy.testing.assert_allclose(rois, [[20, 10, 35, 29]])


def test_fpn_collects_best_over_levels():
    s2, d2, a2 = _level([[0, 0, 9, 9], [20, 20, 29, 29]], [0.5, 0.2])
    s3, d3, a3 = _level([[40, 40, 79, 79], [100, 0, 139, 39]], [0.4, 0.3])
    gen = ProposalGenerator((10, 10), (10, 10), collect_top_n=(5, 3),
                            nms_thresh=0.7)
    rois, sc = gen([s2, s3], [d2, d3], [a2, a3], (200, 200), 1.)
    numpy.testing.assert_allclose(sc, [0.5, 0.4, 0.3])
    numpy.testing.assert_array_equal(rois, [a2[0], a3[0], a3[1]])
