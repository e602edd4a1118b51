"""Mask paste-back against an independent implementation of Detectron's
rule (its own bilinear resize, a big canvas, then a crop to the image)."""
import numpy
import pytest

from utils.ops.masks import paste_masks


def _resize_bilinear(src, h, w):
    """OpenCV's INTER_LINEAR mapping: half-pixel centres, edges clamped."""
    def axis(n_dst, n_src):
        s = (numpy.arange(n_dst) + 0.5) * (n_src / n_dst) - 0.5
        i0 = numpy.floor(s).astype(int)
        f = s - i0
        f[i0 < 0] = 0
        i0[i0 < 0] = 0
        last = i0 >= n_src - 1
        f[last] = 0
        i0[last] = n_src - 1
        return i0, numpy.minimum(i0 + 1, n_src - 1), f
    y0, y1, fy = axis(h, src.shape[0])
    x0, x1, fx = axis(w, src.shape[1])
    top = src[y0][:, x0] * (1 - fx) + src[y0][:, x1] * fx
    bot = src[y1][:, x0] * (1 - fx) + src[y1][:, x1] * fx
    return top * (1 - fy[:, None]) + bot * fy[:, None]


def _reference(prob, box, H, W):
    M = prob.shape[0]
    padded = numpy.zeros((M + 2, M + 2))
    padded[1:-1, 1:-1] = prob
    # expand_bbox by (M + 2) / M about the centre, truncate towards zero
    s = (M + 2.) / M
    cx, cy = (box[0] + box[2]) / 2., (box[1] + box[3]) / 2.
    hw, hh = (box[2] - box[0]) / 2. * s, (box[3] - box[1]) / 2. * s
    x1, y1, x2, y2 = (int(v) for v in (cx - hw, cy - hh, cx + hw, cy + hh))
    w, h = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)
    val = _resize_bilinear(padded, h, w)
    pad = 500  # canvas margin so any expanded box fits, then crop
    canvas = numpy.zeros((H + 2 * pad, W + 2 * pad))
    canvas[y1 + pad:y1 + pad + h, x1 + pad:x1 + pad + w] = val
    return canvas[pad:pad + H, pad:pad + W]


@pytest.mark.parametrize('box', [
    [10., 12., 40., 30.],      # inside
    [-15., -8., 20., 25.],     # over the top-left corner
    [50., 40., 90., 75.],      # over the bottom-right corner
    [30.4, 20.7, 30.6, 21.2],  # sub-pixel box: expanded box is one pixel
    [-30., -30., -5., -5.],    # entirely outside
])
@pytest.mark.parametrize('M', [14, 28])
def test_paste_matches_reference(box, M):
    H, W = 60, 80
    prob = numpy.random.RandomState(M).rand(M, M).astype(numpy.float32)
    out = paste_masks(prob[None], numpy.array([box], numpy.float32), (H, W))
    ref = _reference(prob, numpy.float32(box), H, W)
    assert out.shape == (1, H, W) and out.dtype == bool
    unsure = numpy.abs(ref - 0.5) < 1e-5  # float rounding at the threshold
    assert ((out[0] == (ref > 0.5)) | unsure).all()


def test_border_box_is_cropped_not_squashed():
    # A full-probability mask whose box overhangs the left edge: pasted, it
    # must fill exactly the visible part of the (expanded) box, which a
    # resize to the clipped region (the DeNA port's rule) would not give
    # for a half-filled mask. Left half 1, right half 0:
    M = 14
    prob = numpy.zeros((M, M), numpy.float32)
    prob[:, :M // 2] = 1
    box = numpy.array([[-20., 0., 19., 39.]], numpy.float32)  # 40 x 40
    out = paste_masks(prob[None], box, (40, 40))[0]
    # The left half of the box lies at x < 0: almost nothing is visible.
    assert out[:, 2:].sum() == 0
    assert out.sum() <= 2 * 40


def test_no_detections():
    out = paste_masks(numpy.zeros((0, 14, 14), 'f'), numpy.zeros((0, 4), 'f'),
                      (5, 6))
    assert out.shape == (0, 5, 6)
