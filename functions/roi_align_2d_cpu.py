"""The NumPy path of ``roi_align_2d`` (sampling rule: the docstring of
``functions/roi_align_2d.py``).

Shape letters: N images, C channels, H x W feature map, R ROIs (Rc in one
chunk), PH x PW bins, G samples per bin and axis, K taps in an ROI's window.

The rule is separable: tap ``(y', x')`` has weight ``wy[ph, y'] *
wx[pw, x']`` in bin ``(ph, pw)`` (the out-of-range test is a per-axis mask
too). ``wy`` (PH, Kh) and ``wx`` (PW, Kw) are built over each ROI's window
of taps and pooled with two batched products, ``top = wy @ window @ wx.T``;
ROIs go in chunks to bound memory. ``roi_geometry`` and ``interp_1d``
mirror the CUDA functions of the same names (``roi_align_2d_cuda.py``)
line by line, in the input's dtype.
"""
import numpy

# Working-array elements per chunk of ROIs on the NumPy path (32 MiB in
# float32, about the L3 cache: larger chunks were slower, not faster).
CHUNK_ELEMENTS = 2 ** 23


def roi_geometry(rois, spatial_scale, aligned, pooled_height, pooled_width,
                 sampling_ratio):
    """Sampling grid of each ROI.

    Args:
        rois (numpy.ndarray): (R, 4) (x1, y1, x2, y2), input pixels, in the
            dtype the arithmetic runs in.

    Returns:
        tuple: ``start_y, start_x, bin_h, bin_w, count`` (R,) in the dtype
        of ``rois`` and ``grid_h, grid_w`` (R,) int64 >= 0.
    """
    offset = 0.5 if aligned else 0.
    start_x = rois[:, 0] * spatial_scale - offset
    start_y = rois[:, 1] * spatial_scale - offset
    end_x = rois[:, 2] * spatial_scale - offset
    end_y = rois[:, 3] * spatial_scale - offset
    roi_w = end_x - start_x
    roi_h = end_y - start_y
    if not aligned:
        roi_w = numpy.maximum(roi_w, 1)
        roi_h = numpy.maximum(roi_h, 1)
    bin_h = roi_h / pooled_height
    bin_w = roi_w / pooled_width
    if sampling_ratio > 0:
        grid_h = numpy.full(len(rois), sampling_ratio)
        grid_w = numpy.full(len(rois), sampling_ratio)
    else:
        grid_h = numpy.maximum(numpy.ceil(roi_h / pooled_height), 0)
        grid_w = numpy.maximum(numpy.ceil(roi_w / pooled_width), 0)
    grid_h, grid_w = grid_h.astype(numpy.int64), grid_w.astype(numpy.int64)
    count = numpy.maximum(grid_h * grid_w, 1).astype(rois.dtype)
    return start_y, start_x, bin_h, bin_w, grid_h, grid_w, count


def interp_1d(p, size):
    """Bilinear taps of samples ``p`` (any shape) on an axis of ``size``.

    Returns:
        tuple: ``valid`` (bool); ``low, high`` (int64 in ``[0, size - 1]``,
        also where not valid); ``l, h`` (weights of ``high`` and ``low``,
        dtype of ``p``), all of the shape of ``p``.
    """
    valid = (p >= -1) & (p <= size)
    # Invalid samples are masked by `valid`; put them in range for the cast.
    p = numpy.where(valid, numpy.maximum(p, 0), 0).astype(p.dtype, copy=False)
    low = p.astype(numpy.int64)
    edge = low >= size - 1
    low = numpy.where(edge, size - 1, low)
    high = numpy.where(edge, size - 1, low + 1)
    p = numpy.where(edge, low.astype(p.dtype), p)
    l = p - low.astype(p.dtype)
    h = 1 - l
    return valid, low, high, l, h


def _axis_weights(start, bin_size, grid, pooled, size):
    """Interpolation matrices of one axis over each ROI's window of taps.

    Args:
        start, bin_size (numpy.ndarray): (Rc,) float; grid: (Rc,) int64.
        pooled (int): PH or PW. size (int): H or W.

    Returns:
        tuple: ``w`` (Rc, pooled, K), the summed weight of tap
        ``first + k`` in each bin, and ``first`` (Rc,) int64 in
        ``[0, size - K]``.
    """
    dtype = start.dtype
    g_max = max(int(grid.max()), 1)
    p = numpy.arange(pooled, dtype=dtype)[:, None]            # (P, 1)
    i = numpy.arange(g_max, dtype=dtype)                      # (G,)
    start, bin_size = start[:, None, None], bin_size[:, None, None]
    grid_f = numpy.maximum(grid, 1).astype(dtype)[:, None, None]
    # (Rc, P, G); CUDA: y = start_y + ph * bin_h + (iy + .5) * bin_h / grid_h
    y = start + p * bin_size + (i + 0.5) * bin_size / grid_f
    valid, low, high, l, h = interp_1d(y, size)
    valid &= numpy.arange(g_max) < grid[:, None, None]
    first = numpy.where(valid, low, size).min(axis=(1, 2))
    last = numpy.where(valid, high, -1).max(axis=(1, 2))
    k = max(int((last - first).max()) + 1, 1)
    first = numpy.minimum(first, size - k)
    taps = numpy.arange(k)
    low = (low - first[:, None, None])[..., None] == taps     # (Rc, P, G, K)
    high = (high - first[:, None, None])[..., None] == taps
    h = numpy.where(valid, h, 0)[..., None]
    l = numpy.where(valid, l, 0)[..., None]
    return (h * low + l * high).sum(axis=2, dtype=dtype), first


def _chunks(kh, kw, grid, outh, outw, channels):
    """ROI indices in chunks whose working arrays fit ``CHUNK_ELEMENTS``.

    A chunk pads windows to its largest ``kh`` and ``kw`` (R,), so ROIs go
    by window height (buckets 25% apart), then width.
    """
    order = numpy.lexsort((kw, numpy.floor(numpy.log(kh) / numpy.log(1.25))))
    start = 0
    while start < len(order):
        idx = order[start:]
        mkh = numpy.maximum.accumulate(kh[idx])
        mkw = numpy.maximum.accumulate(kw[idx])
        mg = numpy.maximum.accumulate(grid[idx]) + 1
        per_roi = (channels * (mkh * mkw + outh * mkw + 2 * outh * outw)
                   + mg * (outh * mkh + outw * mkw))
        fits = numpy.arange(1, len(idx) + 1) * per_roi <= CHUNK_ELEMENTS
        stop = start + max(int(numpy.count_nonzero(fits)), 1)
        yield order[start:stop]
        start = stop


def _windows(x_shape, rois, roi_indices, params):
    """Per chunk: ``idx`` (Rc,), ``wy`` (Rc, PH, Kh) (divided by
    ``count``), ``wx`` (Rc, PW, Kw) and ``pixel`` (Rc, Kh, Kw), the row of
    each window tap in ``x`` viewed as (N*H*W, C)."""
    outh, outw, spatial_scale, sampling_ratio, aligned = params
    channels, height, width = x_shape[1:]
    start_y, start_x, bin_h, bin_w, grid_h, grid_w, count = roi_geometry(
        rois, spatial_scale, aligned, outh, outw, sampling_ratio)
    # Samples span |roi length| = |bin| * P, so taps span at most that + 3.
    kh = numpy.clip(numpy.abs(bin_h * outh) // 1 + 3, 1, height)
    kw = numpy.clip(numpy.abs(bin_w * outw) // 1 + 3, 1, width)
    for idx in _chunks(kh.astype(numpy.int64), kw.astype(numpy.int64),
                       numpy.maximum(grid_h, grid_w), outh, outw, channels):
        wy, y0 = _axis_weights(start_y[idx], bin_h[idx], grid_h[idx], outh,
                               height)
        wx, x0 = _axis_weights(start_x[idx], bin_w[idx], grid_w[idx], outw,
                               width)
        wy /= count[idx][:, None, None]
        yy = y0[:, None] + numpy.arange(wy.shape[2])              # (Rc, Kh)
        xx = x0[:, None] + numpy.arange(wx.shape[2])              # (Rc, Kw)
        b = roi_indices[idx].astype(numpy.int64)[:, None, None]
        pixel = (b * height + yy[:, :, None]) * width + xx[:, None, :]
        yield idx, wy, wx, pixel


def forward_cpu(x, rois, roi_indices, params):
    outh, outw = params[:2]
    n_rois, c = len(rois), x.shape[1]
    if x.size == 0 or n_rois == 0:
        return numpy.zeros((n_rois, c, outh, outw), x.dtype)
    top = numpy.empty((n_rois, c, outh, outw), x.dtype)
    # (N, C, H, W) -> (N*H*W, C): a window tap is a contiguous row.
    x_rows = numpy.ascontiguousarray(x.transpose(0, 2, 3, 1)).reshape(-1, c)
    rois = rois.astype(x.dtype, copy=False)
    for idx, wy, wx, pixel in _windows(x.shape, rois, roi_indices, params):
        rc, kh, kw = pixel.shape
        window = numpy.take(x_rows, pixel, axis=0)        # (Rc, Kh, Kw, C)
        # (Rc, PH, Kh) @ (Rc, Kh, Kw*C) -> (Rc, PH, Kw*C)
        t = numpy.matmul(wy, window.reshape(rc, kh, kw * c))
        # (Rc, PH, C, Kw) @ (Rc, 1, Kw, PW) -> (Rc, PH, C, PW)
        t = numpy.matmul(t.reshape(rc, outh, kw, c).transpose(0, 1, 3, 2),
                         wx.transpose(0, 2, 1)[:, None])
        top[idx] = t.transpose(0, 2, 1, 3)
    return top


def _scatter_add(target, index, values):
    """``target[index] += values`` (rows) where ``index`` repeats.

    A fancy assignment keeps one of repeated rows, so rows go in rounds:
    round k adds the k-th occurrence of each index (rounds = the most
    windows overlapping one pixel). Faster than ``numpy.add.at``.

    Args:
        target (numpy.ndarray): (P, C), updated in place.
        index (numpy.ndarray): (M,) int rows of ``target``.
        values (numpy.ndarray): (M, C).
    """
    order = numpy.argsort(index, kind='stable')
    sorted_index = index[order]
    first = numpy.ones(len(index), bool)
    first[1:] = sorted_index[1:] != sorted_index[:-1]
    starts = numpy.flatnonzero(first)
    repeat = numpy.arange(len(index)) - starts[numpy.cumsum(first) - 1]
    rows = order[numpy.argsort(repeat, kind='stable')]
    bounds = numpy.cumsum(numpy.bincount(repeat))
    for lo, hi in zip(numpy.r_[0, bounds[:-1]], bounds):
        r = rows[lo:hi]
        i = index[r]
        rows_sum = numpy.take(target, i, axis=0)
        rows_sum += numpy.take(values, r, axis=0)
        target[i] = rows_sum


def backward_cpu(x_shape, rois, roi_indices, gy, params):
    outh, outw = params[:2]
    n, c, height, width = x_shape
    gx_rows = numpy.zeros((n * height * width, c), gy.dtype)  # (N*H*W, C)
    if gx_rows.size and gy.size:
        rois = rois.astype(gy.dtype, copy=False)
        for idx, wy, wx, pixel in _windows(x_shape, rois, roi_indices,
                                           params):
            rc, kh, kw = pixel.shape
            # (Rc, C, PH, PW) -> (Rc, PH, PW, C), a view: BLAS reads each
            # (PW, C) matrix transposed.
            g = gy[idx].transpose(0, 2, 3, 1)
            # (Rc, 1, Kw, PW) @ (Rc, PH, PW, C) -> (Rc, PH, Kw, C)
            t = numpy.matmul(wx.transpose(0, 2, 1)[:, None], g)
            # (Rc, Kh, PH) @ (Rc, PH, Kw*C) -> (Rc, Kh, Kw*C)
            t = numpy.matmul(wy.transpose(0, 2, 1),
                             t.reshape(rc, outh, kw * c))
            _scatter_add(gx_rows, pixel.ravel(), t.reshape(-1, c))
    # (N*H*W, C) -> (N, C, H, W)
    return numpy.ascontiguousarray(
        gx_rows.reshape(n, height, width, c).transpose(0, 3, 1, 2))
