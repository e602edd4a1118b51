"""Reading images and Detectron's test-time preprocessing.

``read_image`` returns RGB CHW float32 0-255 (what ``predict`` takes);
``prepare`` turns it into the network input: BGR (or RGB), minus the pixel
means and divided by the pixel std (Detectron: its means, std 1), resized
so the shorter side is ``min_size`` unless the longer side would exceed
``max_size`` (Detectron's ``prep_im_for_blob``: means are subtracted before
the bilinear resize), zero-padded bottom/right to a multiple of ``stride``.
An image so thin that a resized side would be 0 pixels is an
``ImageError``.

``prepare_d2`` is detectron2's test-time path instead
(``ResizeShortestEdge``): the uint8 image is resized by Pillow's bilinear
filter to ``int(side * scale + 0.5)`` pixels, then normalised in float32;
its scale is per axis, ``(new W / W, new H / H)``.
"""
import os
import struct

import cv2
import numpy

# Detectron's PIXEL_MEANS (BGR), the default of models.conventions too.
DETECTRON_PIXEL_MEANS = (102.9801, 115.9465, 122.7717)
#: Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``,
#: 1024 * 1024 * 1024 // 4 // 3): the most pixels an image header may
#: declare (``check_image_header``); ``--max-image-pixels`` raises it.
MAX_IMAGE_PIXELS = 89478485


class ImageError(ValueError):
    """An image file that is missing or cannot be decoded, or an image too
    small to resize."""


def read_image(path, max_pixels=MAX_IMAGE_PIXELS):
    """Read an image file whose header declares at most ``max_pixels``
    pixels (``check_image_header``).

    Returns:
        numpy.ndarray: (3, H, W) float32 RGB in [0, 255].
    """
    if not os.path.isfile(path):
        raise ImageError('image file not found: {}'.format(path))
    check_image_header(path, max_pixels)
    try:
        img = cv2.imread(path, cv2.IMREAD_COLOR)
    except cv2.error:  # e.g. a size OpenCV refuses to allocate
        img = None
    if img is None:
        raise ImageError('cannot decode image (expected JPEG/PNG/BMP...): '
                         '{}'.format(path))
    return img[:, :, ::-1].transpose(2, 0, 1).astype(numpy.float32)


def check_image_header(path, max_pixels=MAX_IMAGE_PIXELS):
    """Refuse, before any decoding, an image whose header declares more
    than ``max_pixels`` pixels (width x height): a 74-byte PNG may declare
    100000 x 100000, and an 8000 x 8000 PNG of 197 KB decodes to 3 GB of
    float32. Pillow reads only the header here (PNG IHDR, JPEG SOFn, BMP,
    TIFF, WebP, GIF...); a file Pillow cannot identify is left to OpenCV,
    which refuses what it cannot decode.

    Returns:
        (int, int) or None: the declared (width, height), if read.
    """
    # Imported here, as prepare_d2 does: the ONNX predictor runs on
    # arrays without Pillow.
    import PIL.Image
    # Pillow's own bomb check would refuse (or warn about) sizes
    # --max-image-pixels allows: this limit is the one that counts.
    pillow_limit, PIL.Image.MAX_IMAGE_PIXELS = PIL.Image.MAX_IMAGE_PIXELS, None
    try:
        with PIL.Image.open(path) as im:
            width, height = im.size
    except (OSError, ValueError, SyntaxError, struct.error, EOFError):
        return None                 # not identified: OpenCV decides
    finally:
        PIL.Image.MAX_IMAGE_PIXELS = pillow_limit
    if width * height > max_pixels:
        raise ImageError(
            '{}: its header declares {} x {} = {} pixels, more than the '
            'limit of {} (--max-image-pixels)'.format(
                path, width, height, width * height, max_pixels))
    return width, height


def target_scale(height, width, min_size=800, max_size=1333):
    """Detectron's ``get_target_scale``: scale factor of the resize."""
    short, long = min(height, width), max(height, width)
    scale = float(min_size) / float(short)
    if numpy.round(scale * long) > max_size:
        scale = float(max_size) / float(long)
    return scale


def prepare(img, min_size=800, max_size=1333, stride=1,
            pixel_mean=DETECTRON_PIXEL_MEANS, pixel_std=(1., 1., 1.),
            channel_order='BGR'):
    """Network input of one RGB CHW image.

    Args:
        pixel_mean, pixel_std (sequence of 3 float): in ``channel_order``.
        channel_order (str): 'BGR' (Detectron, detectron2) or 'RGB'.

    Returns:
        (numpy.ndarray, float, (int, int)): (3, H', W') float32
        ``(x - mean) / std`` in ``channel_order``, padded to a multiple of
        ``stride``; the scale; and (H, W) of the resized image before
        padding.

    Raises:
        ImageError: the image is empty, or so thin that a side of the
            resized image would round to 0 pixels (1 x 5000 with the
            defaults: the long side caps the scale at 1333 / 5000).
    """
    _, h, w = img.shape
    if min(h, w) < 1:
        raise ImageError('empty image of {}x{} pixels (width x height)'
                         .format(w, h))
    scale = target_scale(h, w, min_size, max_size)
    # cv2.resize rounds each side of the result to the nearest pixel.
    if round(min(h, w) * scale) < 1:
        raise ImageError(
            'image of {}x{} pixels (width x height) is too thin: scaled by '
            '{:.3g} to keep its long side within {} pixels, its short side '
            'would be 0 pixels; expected a short side of at least {} '
            'pixels'.format(w, h, scale, max_size, int(0.5 / scale) + 1))
    chw = img[::-1] if channel_order == 'BGR' else img
    # In float64, then cast: Detectron subtracts its float64 means in place
    # from the float32 image.
    hwc = ((chw.transpose(1, 2, 0) - numpy.asarray(pixel_mean, numpy.float64))
           / numpy.asarray(pixel_std, numpy.float64)).astype(numpy.float32)
    hwc = cv2.resize(hwc, None, fx=scale, fy=scale,
                     interpolation=cv2.INTER_LINEAR)
    rh, rw = hwc.shape[:2]
    ph = int(numpy.ceil(rh / stride) * stride)
    pw = int(numpy.ceil(rw / stride) * stride)
    out = numpy.zeros((3, ph, pw), numpy.float32)
    out[:, :rh, :rw] = hwc.transpose(2, 0, 1)
    return out, scale, (rh, rw)


def prepare_d2(img, min_size=800, max_size=1333, stride=1,
               pixel_mean=DETECTRON_PIXEL_MEANS, pixel_std=(1., 1., 1.),
               channel_order='BGR'):
    """detectron2's network input of one RGB CHW image (module docstring).

    Returns:
        (numpy.ndarray, numpy.ndarray, (int, int)): (3, H', W') float32
        ``(x - mean) / std`` in ``channel_order``, padded to a multiple of
        ``stride``; the scale per box coordinate ``(sx, sy, sx, sy)``
        (float64), resized / original; and (H, W) of the resized image.
    """
    # Pillow only for detectron2's resize: the onnxruntime predictor of a
    # Detectron model needs NumPy and OpenCV alone.
    from PIL import Image
    _, h, w = img.shape
    new_h, new_w = _d2_size(h, w, min_size, max_size)
    chw = img[::-1] if channel_order == 'BGR' else img
    hwc = numpy.clip(numpy.round(chw.transpose(1, 2, 0)), 0, 255).astype(
        numpy.uint8)  # detectron2 resizes the decoded uint8 image
    hwc = numpy.asarray(Image.fromarray(hwc).resize((new_w, new_h),
                                                    Image.BILINEAR))
    hwc = ((hwc.astype(numpy.float32) - numpy.asarray(pixel_mean,
                                                      numpy.float32))
           / numpy.asarray(pixel_std, numpy.float32))
    ph = int(numpy.ceil(new_h / stride) * stride)
    pw = int(numpy.ceil(new_w / stride) * stride)
    out = numpy.zeros((3, ph, pw), numpy.float32)
    out[:, :new_h, :new_w] = hwc.transpose(2, 0, 1)
    sx, sy = new_w / w, new_h / h
    return out, numpy.array([sx, sy, sx, sy]), (new_h, new_w)


def network_input(img, min_size, max_size, stride, resize='detectron',
                  proposal_bounds='padded', **normalization):
    """The test-time input of one RGB CHW image under a model's conventions
    (``models/conventions.py``), for the Chainer model and the
    onnxruntime predictor alike.

    Args:
        resize (str): 'detectron' (``prepare``) or 'detectron2'
            (``prepare_d2``).
        proposal_bounds (str): 'padded' or 'image' (below).
        normalization: ``pixel_mean``, ``pixel_std``, ``channel_order``.

    Returns:
        (numpy.ndarray, float or numpy.ndarray, (int, int)): the (3, H',
        W') float32 input, the scale, and the (H, W) that test-time
        proposals are clipped and filtered against: the padded input's
        with 'padded' (Detectron's ``im_info`` holds the padded blob's size
        "for exact reproducibility"), the resized image's with 'image'.
    """
    prep = prepare_d2 if resize == 'detectron2' else prepare
    x, scale, size = prep(img, min_size, max_size, stride, **normalization)
    if proposal_bounds == 'padded':
        size = x.shape[1:]
    return x, scale, size


def _d2_size(h, w, min_size, max_size):
    """``ResizeShortestEdge.get_transform``'s (new H, new W)."""
    if min(h, w) < 1:
        raise ImageError('empty image of {}x{} pixels (width x height)'
                         .format(w, h))
    scale = min_size / min(h, w)
    new_h, new_w = (min_size, scale * w) if h < w else (scale * h, min_size)
    if max(new_h, new_w) > max_size:
        scale = max_size / max(new_h, new_w)
        new_h, new_w = new_h * scale, new_w * scale
    new_h, new_w = int(new_h + 0.5), int(new_w + 0.5)
    if min(new_h, new_w) < 1:
        raise ImageError('image of {}x{} pixels (width x height) is too '
                         'thin: a resized side would be 0 pixels'.format(
                             w, h))
    return new_h, new_w


def batch_images(imgs):
    """Stack (3, H_i, W_i) inputs into (N, 3, max H, max W), zero-padded."""
    h = max(img.shape[1] for img in imgs)
    w = max(img.shape[2] for img in imgs)
    out = numpy.zeros((len(imgs), 3, h, w), numpy.float32)
    for i, img in enumerate(imgs):
        out[i, :, :img.shape[1], :img.shape[2]] = img
    return out
