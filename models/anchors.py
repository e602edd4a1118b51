"""Anchors exactly as Detectron's ``generate_anchors.py`` (and, as an
option, detectron2's ``DefaultAnchorGenerator``).

A reference window ``[0, 0, stride - 1, stride - 1]`` (centre
``(stride - 1) / 2``, 7.5 for stride 16) is reshaped to each aspect ratio
keeping its area, with widths and heights **rounded** (numpy's round half to
even), then scaled to each size. Enumeration is ratio-major: anchor
``a = r * len(sizes) + s``. Boxes are inclusive (x1, y1, x2, y2): width
``x2 - x1 + 1``.
"""
import numpy


def _whctrs(anchor):
    w = anchor[2] - anchor[0] + 1
    h = anchor[3] - anchor[1] + 1
    return w, h, anchor[0] + 0.5 * (w - 1), anchor[1] + 0.5 * (h - 1)


def _mkanchors(ws, hs, x_ctr, y_ctr):
    ws = ws[:, None]
    hs = hs[:, None]
    return numpy.hstack((x_ctr - 0.5 * (ws - 1), y_ctr - 0.5 * (hs - 1),
                         x_ctr + 0.5 * (ws - 1), y_ctr + 0.5 * (hs - 1)))


def generate_anchors(stride, sizes, aspect_ratios=(0.5, 1., 2.)):
    """Cell anchors of one feature map.

    Args:
        stride (int): feature stride in pixels.
        sizes (tuple of float): anchor sizes (sqrt of area) in pixels.
        aspect_ratios (tuple of float): h / w ratios.

    Returns:
        numpy.ndarray: (len(aspect_ratios) * len(sizes), 4) float64
        (x1, y1, x2, y2), ratio-major.
    """
    base = numpy.array([1., 1., stride, stride]) - 1
    w, h, x_ctr, y_ctr = _whctrs(base)
    ratios = numpy.asarray(aspect_ratios, numpy.float64)
    ws = numpy.round(numpy.sqrt(w * h / ratios))
    hs = numpy.round(ws * ratios)
    ratio_anchors = _mkanchors(ws, hs, x_ctr, y_ctr)
    scales = numpy.asarray(sizes, numpy.float64) / stride
    out = []
    for anchor in ratio_anchors:
        w, h, x_ctr, y_ctr = _whctrs(anchor)
        out.append(_mkanchors(w * scales, h * scales, x_ctr, y_ctr))
    return numpy.vstack(out)


def generate_anchors_d2(sizes, aspect_ratios=(0.5, 1., 2.)):
    """Cell anchors as detectron2's ``generate_cell_anchors``: centred on
    the cell's corner (``ANCHOR_GENERATOR.OFFSET`` 0), exact sizes
    ``w = sqrt(size**2 / ratio)``, ``h = ratio * w`` without rounding,
    size-major enumeration (``a = s * len(aspect_ratios) + r``).

    Returns:
        numpy.ndarray: (len(sizes) * len(aspect_ratios), 4) float64
        ``(-w/2, -h/2, w/2, h/2)``.
    """
    out = []
    for size in sizes:
        for ratio in aspect_ratios:
            w = numpy.sqrt(size ** 2. / ratio)
            h = ratio * w
            out.append((-w / 2., -h / 2., w / 2., h / 2.))
    return numpy.array(out, numpy.float64)


def shifted_anchors(cell_anchors, stride, height, width):
    """All anchors of an (height, width) feature map.

    Returns:
        numpy.ndarray: (height * width * A, 4) float32, ordered (H, W, A)
        slowest to fastest, the order of the RPN's reshaped outputs.
    """
    shift_x = numpy.arange(width) * stride
    shift_y = numpy.arange(height) * stride
    shift_x, shift_y = numpy.meshgrid(shift_x, shift_y)
    shifts = numpy.stack((shift_x.ravel(), shift_y.ravel(),
                          shift_x.ravel(), shift_y.ravel()), axis=1)
    # (1, A, 4) + (H*W, 1, 4) -> (H*W, A, 4) -> (H*W*A, 4)
    anchors = cell_anchors[None, :, :] + shifts[:, None, :]
    return anchors.reshape(-1, 4).astype(numpy.float32)
