"""The im2col matrix of a convolution, in the layout its GEMMs want.

Shape letters: N images, C input and O output channels, (H, W) input and
(P, Q) output sizes, K = C * kh * kw (rows ordered (c, ky, kx), as in
``W.reshape(O, K)``), L = P * Q.

* Per image, ``col`` (N, K, L): one GEMM per image, ``y[n] = W2 @ col[n]``
  is already (O, L) in NCHW order. For few images with many pixels (the
  backbone: N = 1 or 2), where each GEMM is large.
* Folded, ``col`` (K, N*L): the images side by side, one GEMM
  ``W2 @ col`` (O, N*L) for all. For many images with few pixels (the
  heads: N ROIs of 7 x 7 or 14 x 14), where per-image GEMMs would be
  hundreds of small ones. The columns are written in this order straight
  from ``x`` seen as (C, N, H, W), so ``col`` is never transposed; only
  the small output is, to (N, O, L).

Only 2-D GEMMs are used: a stacked ``matmul`` broadcasts W over N (CuPy
then copies it N times and runs float16 operands as float32 copies).

chainer's ``im2col_gpu`` and ``col2im_gpu`` compute their indices in
32-bit ``int``: past 2^31 elements (a 256-channel 3x3 backward over 16
images at P2 has 2.2e9) they read and write the wrong places. The
per-image path therefore runs in chunks of images whose columns (and
input) stay below ``INDEX_LIMIT`` elements, on NumPy too, so that one code
path is tested; results do not depend on the chunks.
"""
import contextlib
import threading

import numpy
from chainer.backend import get_array_module
from chainer.utils import conv

# Images with fewer output pixels than this are folded into one GEMM.
FOLD_BELOW = 1024
# Elements of the largest array chainer's 32-bit im2col / col2im kernels
# index correctly.
INDEX_LIMIT = 2 ** 31
# Bytes of the wide columns of one strip of ``weight_gradient_wide``.
STRIP_BYTES = 1 << 26


class _Workspace(threading.local):
    def __init__(self):
        self.buffers = {}
        self.kept = 0       # depth of kept_workspaces() scopes


_WORKSPACE = _Workspace()


def workspace(xp, shape, dtype, slot='col'):
    """An uninitialised array for data that is written in full, used once
    and dropped (im2col columns, Winograd's transformed tiles). On NumPy it
    reuses one buffer per thread and ``slot`` (the largest asked for so
    far): a fresh mapping of hundreds of MB costs its page faults on every
    call (im2col at R-50-FPN's P2: 0.18 s fresh, 0.07 s reused). CuPy's
    memory pool already reuses its blocks."""
    if xp is not numpy:
        return xp.empty(shape, dtype)
    nbytes = int(numpy.prod(shape)) * numpy.dtype(dtype).itemsize
    buffers = _WORKSPACE.buffers
    if slot not in buffers or buffers[slot].nbytes < nbytes:
        buffers.pop(slot, None)         # free the old one first
        buffers[slot] = numpy.empty(nbytes, numpy.uint8)
    return buffers[slot][:nbytes].view(dtype).reshape(shape)


def workspace_bytes():
    """Bytes this thread's workspaces hold."""
    return sum(b.nbytes for b in _WORKSPACE.buffers.values())


def release_workspaces():
    """Free this thread's workspaces (the largest buffers asked for so
    far: about 0.64 GB after one R-50-FPN image); the next call allocates
    afresh. Returns the bytes released."""
    released = workspace_bytes()
    _WORKSPACE.buffers.clear()
    return released


def release_unless_kept():
    """``release_workspaces()``, outside ``kept_workspaces()``: what a
    one-off call (``MaskRCNN.predict``) does when it ends."""
    if not _WORKSPACE.kept:
        release_workspaces()


@contextlib.contextmanager
def kept_workspaces():
    """Within it, ``release_unless_kept`` keeps this thread's workspaces:
    a loop calling ``predict`` image by image (the evaluator, demo.py)
    saves their page faults on every call. They are released when the
    outermost scope ends, however it ends."""
    _WORKSPACE.kept += 1
    try:
        yield
    finally:
        _WORKSPACE.kept -= 1
        release_unless_kept()


def output_size(h, w, kh, kw, sy, sx, ph, pw):
    """(P, Q) of a convolution without ``cover_all``."""
    return (h + 2 * ph - kh) // sy + 1, (w + 2 * pw - kw) // sx + 1


def folds(n, p, q):
    """Whether N images of P x Q outputs run as one folded GEMM."""
    return n > 1 and p * q < FOLD_BELOW


def _pointwise(kh, kw, ph, pw):
    # A 1x1 kernel without padding reads the (strided) input itself.
    return (kh, kw, ph, pw) == (1, 1, 0, 0)


def im2col(x, kh, kw, sy, sx, ph, pw):
    """(N, C, H, W) -> (N, K, L) contiguous, and (P, Q)."""
    xp = get_array_module(x)
    n, c = x.shape[:2]
    if _pointwise(kh, kw, ph, pw):
        col = xp.ascontiguousarray(x[:, :, ::sy, ::sx])
    elif xp is numpy:
        col = conv.im2col_cpu(x, kh, kw, sy, sx, ph, pw)
    else:
        col = conv.im2col_gpu(x, kh, kw, sy, sx, ph, pw)
    p, q = col.shape[-2:]
    return col.reshape(n, c * kh * kw, p * q), (p, q)


def image_chunks(x_shape, kh, kw, pq, strict):
    """Slices of the N images of x (N, C, H, W) whose columns (N', K, L)
    and input have fewer than ``INDEX_LIMIT`` elements; at least one slice.
    An image alone at the limit runs by itself unless ``strict`` (CuPy,
    whose kernels would overflow), where it is refused in one line."""
    n, c, h, w = x_shape
    per_image = c * max(kh * kw * pq[0] * pq[1], h * w)
    if per_image >= INDEX_LIMIT and strict:
        raise ValueError(
            'convolution input {} needs {} im2col elements per image, '
            'beyond the 2^31 that chainer\'s GPU im2col / col2im index '
            '(use smaller images)'.format(tuple(x_shape), per_image))
    step = max(1, (INDEX_LIMIT - 1) // max(1, per_image))
    return [slice(i, min(i + step, n)) for i in range(0, max(n, 1), step)]


def _chunks_of(x_shape, kh, kw, sy, sx, ph, pw, xp):
    pq = output_size(*x_shape[2:], kh, kw, sy, sx, ph, pw)
    return image_chunks(x_shape, kh, kw, pq, xp is not numpy), pq


def conv_each(w2, x, kh, kw, sy, sx, ph, pw):
    """``w2 @ im2col(x)[n]`` per image, in ``image_chunks``: w2 (O, K),
    x (N, C, H, W) -> (N, O, L)."""
    xp = get_array_module(x)
    chunks, _ = _chunks_of(x.shape, kh, kw, sy, sx, ph, pw, xp)
    parts = [matmul_each(w2, im2col(x[s], kh, kw, sy, sx, ph, pw)[0])
             for s in chunks]
    return parts[0] if len(parts) == 1 else xp.concatenate(parts)


def weight_gradient_each(gy, x, kh, kw, sy, sx, ph, pw):
    """``sum_n gy[n] @ im2col(x)[n].T`` in ``image_chunks``, summed in
    image order as in one piece: gy (N, O, L), x (N, C, H, W) -> (O, K)."""
    xp = get_array_module(x)
    chunks, _ = _chunks_of(x.shape, kh, kw, sy, sx, ph, pw, xp)
    out = None
    for s in chunks:
        out = matmul_t_sum(gy[s], im2col(x[s], kh, kw, sy, sx, ph, pw)[0],
                           out)
    return out


def input_gradient_each(w2, gy, x_shape, kh, kw, sy, sx, ph, pw, pq):
    """``col2im(w2.T @ gy[n])`` per image in ``image_chunks``: w2 (O, K),
    gy (N, O, L) -> gx (N, C, H, W)."""
    xp = get_array_module(gy)
    chunks, _ = _chunks_of(x_shape, kh, kw, sy, sx, ph, pw, xp)
    parts = []
    for s in chunks:
        g = gy[s]
        parts.append(col2im(matmul_each(w2.T, g), (len(g),) + x_shape[1:],
                            kh, kw, sy, sx, ph, pw, pq))
    return parts[0] if len(parts) == 1 else xp.concatenate(parts)


def col2im(gcol, x_shape, kh, kw, sy, sx, ph, pw, pq):
    """(N, K, L) -> (N, C, H, W), summing overlapping taps."""
    xp = get_array_module(gcol)
    n, c, h, w = x_shape
    gcol = gcol.reshape((n, c, kh, kw) + pq)
    if _pointwise(kh, kw, ph, pw):
        if (sy, sx) == (1, 1):
            return gcol.reshape(x_shape)
        gx = xp.zeros(x_shape, gcol.dtype)
        gx[:, :, ::sy, ::sx] = gcol[:, :, 0, 0]
        return gx
    if xp is numpy:
        return conv.col2im_cpu(gcol, sy, sx, ph, pw, h, w)
    return conv.col2im_gpu(gcol, sy, sx, ph, pw, h, w)


def im2col_wide(x, kh, kw, ph, pw):
    """Per-image columns of a stride-1 convolution over the padded width:
    (N, C, H, W) -> (N, K, P*Wp) contiguous, Wp = W + 2 pw, and Wp.

    Output row p of tap (ky, kx) reads the padded input's flat run
    ``[(p + ky) * Wp + kx, ... + Wp)``, so each tap is one long run per
    channel (a near-memcpy) instead of P runs of Q; the last ``kw - 1``
    columns of each output row read across the row end and are dropped
    after the GEMM (``drop_wide``). One extra zero row keeps the last run
    inside the buffer.
    """
    xp = get_array_module(x)
    n, c, h, w = x.shape
    p = h + 2 * ph - kh + 1
    flat, wp = _padded_flat(x, ph, pw)
    col = workspace(xp, (n, c, kh, kw, p * wp), x.dtype)
    _wide_taps(flat, wp, 0, p, col)
    return col.reshape(n, c * kh * kw, p * wp), wp


def weight_gradient_wide(gy, x, kh, kw, ph, pw):
    """``sum_n gy[n] @ im2col(x)[n].T`` of a stride-1 convolution from
    wide columns (``im2col_wide``), in strips of output rows whose columns
    take at most ``STRIP_BYTES``: gy (N, O, P, Q), x (N, C, H, W) -> (O, K).

    A full im2col of R-50-FPN's P2 for two images is 1.1 GB; a strip is a
    workspace of tens of MB. The junk columns of a strip meet zeros in a
    padded copy of gy, so they add nothing.
    """
    xp = get_array_module(x)
    n, c, _, w = x.shape
    o, p, q = gy.shape[1:]
    k = c * kh * kw
    rows = max(1, STRIP_BYTES // (k * (w + 2 * pw) * x.itemsize))
    out = xp.zeros((o, k), numpy.result_type(gy.dtype, x.dtype))
    for i in range(n):
        flat, wp = _padded_flat(x[i:i + 1], ph, pw)
        for p0 in range(0, p, rows):
            p1 = min(p, p0 + rows)
            g = xp.zeros((o, p1 - p0, wp), gy.dtype)
            g[:, :, :q] = gy[i, :, p0:p1]
            col = workspace(xp, (1, c, kh, kw, (p1 - p0) * wp), x.dtype)
            _wide_taps(flat, wp, p0, p1, col)
            # (O, rows*Wp) @ (rows*Wp, K)
            out += g.reshape(o, -1) @ col.reshape(k, -1).T
    return out


def _padded_flat(x, ph, pw):
    """(N, C, H, W) -> x zero-padded by (ph, pw) plus one zero row below,
    flat (N, C, (H + 2 ph + 1) * Wp), and Wp = W + 2 pw."""
    xp = get_array_module(x)
    n, c, h, w = x.shape
    hp, wp = h + 2 * ph + 1, w + 2 * pw
    padded = xp.zeros((n, c, hp, wp), x.dtype)
    padded[:, :, ph:ph + h, pw:pw + w] = x
    return padded.reshape(n, c, hp * wp), wp


def _wide_taps(flat, wp, p0, p1, col):
    """Wide columns of output rows p0:p1 into col (N, C, kh, kw,
    (p1 - p0) * Wp) from ``_padded_flat``'s flat (N, C, Hp * Wp)."""
    kh, kw, length = col.shape[2:]
    for ky in range(kh):
        for kx in range(kw):
            start = (p0 + ky) * wp + kx
            col[:, :, ky, kx] = flat[:, :, start:start + length]


def drop_wide(y, wp, q):
    """(N, O, P*Wp) -> (N, O, P, Q) contiguous: the valid columns."""
    xp = get_array_module(y)
    n, o, length = y.shape
    return xp.ascontiguousarray(y.reshape(n, o, length // wp, wp)[..., :q])


def _taps(kh, kw, sy, sx, pq):
    """(ky, kx, slices of the padded input that tap (ky, kx) reads)."""
    p, q = pq
    for ky in range(kh):
        for kx in range(kw):
            yield ky, kx, (slice(ky, ky + sy * (p - 1) + 1, sy),
                           slice(kx, kx + sx * (q - 1) + 1, sx))


def im2col_folded(x, kh, kw, sy, sx, ph, pw, pq):
    """(N, C, H, W) -> (K, N*L) contiguous."""
    xp = get_array_module(x)
    n, c, h, w = x.shape
    p, q = pq
    xt = x.transpose(1, 0, 2, 3)                   # (C, N, H, W), a view
    if _pointwise(kh, kw, ph, pw):
        return xp.ascontiguousarray(xt[:, :, ::sy, ::sx]).reshape(
            c, n * p * q)
    if ph or pw:
        padded = xp.zeros((c, n, h + 2 * ph, w + 2 * pw), x.dtype)
        padded[:, :, ph:ph + h, pw:pw + w] = xt
    else:
        padded = xt
    col = workspace(xp, (c, kh, kw, n, p, q), x.dtype)
    for ky, kx, (rows, cols) in _taps(kh, kw, sy, sx, pq):
        col[:, ky, kx] = padded[:, :, rows, cols]
    return col.reshape(c * kh * kw, n * p * q)


def col2im_folded(gcol, x_shape, kh, kw, sy, sx, ph, pw, pq):
    """(K, N*L) -> (N, C, H, W) contiguous, summing overlapping taps."""
    xp = get_array_module(gcol)
    n, c, h, w = x_shape
    p, q = pq
    gcol = gcol.reshape(c, kh, kw, n, p, q)
    padded = xp.zeros((c, n, h + 2 * ph, w + 2 * pw), gcol.dtype)
    for ky, kx, (rows, cols) in _taps(kh, kw, sy, sx, pq):
        padded[:, :, rows, cols] += gcol[:, ky, kx]
    gx = padded[:, :, ph:ph + h, pw:pw + w].transpose(1, 0, 2, 3)
    return xp.ascontiguousarray(gx)


def fold(a):
    """(N, R, L) -> (R, N*L), a copy."""
    n, r, length = a.shape
    return a.transpose(1, 0, 2).reshape(r, n * length)


def unfold(a, n):
    """(R, N*L) -> (N, R, L) contiguous."""
    xp = get_array_module(a)
    r = a.shape[0]
    return xp.ascontiguousarray(a.reshape(r, n, -1).transpose(1, 0, 2))


def matmul_each(w, col):
    """``w @ col[n]`` for every n: w (M, K), col (N, K, L) -> (N, M, L)."""
    xp = get_array_module(col)
    if len(col) == 1:
        return (w @ col[0])[None]
    out = xp.empty((len(col), w.shape[0], col.shape[2]),
                   numpy.result_type(w, col))
    for i in range(len(col)):
        out[i] = w @ col[i]
    return out


def matmul_t_sum(gy, col, out=None):
    """``out + sum_n gy[n] @ col[n].T`` (out None: zero): gy (N, O, L),
    col (N, K, L) -> (O, K)."""
    if len(col) == 0:
        if out is not None:
            return out
        xp = get_array_module(col)
        return xp.zeros((gy.shape[1], col.shape[1]), gy.dtype)
    for i in range(len(col)):
        if out is None:
            out = gy[i] @ col[i].T
        else:
            out += gy[i] @ col[i].T
    return out
