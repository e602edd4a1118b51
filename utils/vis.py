"""Drawing detections with matplotlib (no display needed: Agg backend)."""
import os

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy  # noqa: E402
from matplotlib import patches  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402

from utils.atomic_write import atomic_write  # noqa: E402

COLORS = numpy.array([
    (0.12, 0.47, 0.71), (1.0, 0.5, 0.05), (0.17, 0.63, 0.17),
    (0.84, 0.15, 0.16), (0.58, 0.4, 0.74), (0.55, 0.34, 0.29),
    (0.89, 0.47, 0.76), (0.5, 0.5, 0.5), (0.74, 0.74, 0.13),
    (0.09, 0.75, 0.81)])


def save_formats():
    """File extensions (lower case, no dot) ``draw_detections`` can write."""
    return sorted(FigureCanvasAgg.get_supported_filetypes())


def file_format(path):
    """The format ``draw_detections`` writes ``path`` in: its extension, or
    PNG when it has none."""
    return os.path.splitext(path)[1][1:].lower() or 'png'


def mask_contours(mask):
    """Outlines of a binary (H, W) mask as a list of (P, 2) (x, y) arrays."""
    import cv2
    contours, _ = cv2.findContours(mask.astype(numpy.uint8),
                                   cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_NONE)
    return [c[:, 0, :].astype(numpy.float32) for c in contours if len(c) > 2]


def draw_detections(img, bbox, label, score, mask, names, out_path,
                    contour=False, alpha=0.45):
    """Save a PNG of ``img`` with masks, boxes, names and scores.

    Args:
        img (numpy.ndarray): (3, H, W) RGB 0-255.
        bbox (numpy.ndarray): (D, 4) (x1, y1, x2, y2); label (D,) in 1..K;
            score (D,); mask (D, H, W) bool.
        names (sequence of str): names of labels 1..K (index label - 1).
        out_path (str): written exactly there, in the format of its
            extension (``file_format``), whole or not at all
            (``utils.atomic_write``; ``OutputError`` on a full disk).
    """
    rgb = img.transpose(1, 2, 0).astype(numpy.float32) / 255.
    for i, m in enumerate(mask):
        color = COLORS[i % len(COLORS)]
        rgb[m] = rgb[m] * (1 - alpha) + color * alpha
    h, w = rgb.shape[:2]
    fig = plt.figure(figsize=(w / 100., h / 100.), dpi=100)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.imshow(numpy.clip(rgb, 0, 1))
    ax.axis('off')
    for i, (box, lb, sc) in enumerate(zip(bbox, label, score)):
        color = COLORS[i % len(COLORS)]
        x1, y1, x2, y2 = box
        ax.add_patch(patches.Rectangle((x1, y1), x2 - x1 + 1, y2 - y1 + 1,
                                       fill=False, edgecolor=color,
                                       linewidth=1.5))
        if contour and len(mask):
            for c in mask_contours(mask[i]):
                ax.add_patch(patches.Polygon(c, fill=False, edgecolor='w',
                                             linewidth=1.))
        name = names[lb - 1] if 0 < lb <= len(names) else str(lb)
        # parse_math off: a '$' in a name from a file is no TeX to parse.
        ax.text(x1, y1, '{}: {:.2f}'.format(name, sc), fontsize=8,
                color='white', va='bottom', parse_math=False,
                bbox=dict(facecolor=color, alpha=0.7, pad=1, linewidth=0))
    # An explicit format: matplotlib cannot infer it from a file object.
    try:
        with atomic_write(out_path, 'wb', 'drawing') as f:
            fig.savefig(f, dpi=100, format=file_format(out_path))
    finally:
        plt.close(fig)
