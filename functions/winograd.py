"""3x3, stride-1 convolution by Winograd's minimal filtering F(2x2, 3x3).

Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks" (2016).
Each 2 x 2 block of outputs (a tile) is computed from the 4 x 4 input
patch ``d`` that covers it and the 3 x 3 kernel ``g`` as::

    Y = A^T [ (G g G^T) * (B^T d B) ] A      (* elementwise, 4 x 4)

    B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
    G   = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]
    A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]

Summed over input channels, the elementwise product becomes 16 GEMMs,
``M[k] = U[k] @ V[k]`` with U (16, O, C) the transformed kernels and V
(16, C, T) the transformed patches of all T tiles: 16 * O * C * T
multiply-adds instead of the direct 36 * O * C * T, 2.25 times fewer. The
transforms are additions only (G's halves are exact), so float32 results
differ from the direct sum by rounding alone (tested against float64).

On the CPU the GEMMs take what BLAS gives; the transforms are memory-bound
NumPy passes, run on blocks of channels small enough to stay in cache and
spread over ``workers`` threads (NumPy releases the GIL in its loops). The
input is first split into even and odd padded columns, so that every
transform pass reads contiguous runs instead of every other element.
It pays when C, O and the image are large enough: ``worthwhile`` holds
the measured rule.

Shape letters: N images, C input and O output channels, (H, W) input and
(P, Q) output sizes, tiles TH x TW = ceil(P / 2) x ceil(Q / 2), T = N TH TW.
"""
import threading

import numpy

from functions.conv_columns import output_size, workspace
from functions.cpu_count import usable_cpus

_G = numpy.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]])

# Few output pixels spend more on the calls and transforms than the GEMMs
# save (bench/winograd.py: 0.72 of the direct time for 10 mask ROIs, 1.15
# for 256 channels at 25 x 38). 64 channels gained little (0.87 at res2),
# so narrow models such as fpn-tiny keep the direct path. The rule:
# min(C, O) >= MIN_CHANNELS and 9 O C N P Q >= MIN_MACS.
MIN_CHANNELS = 128
MIN_MACS = 9 << 26
# Bytes of one block of a transform pass: small enough for the caches,
# large enough that NumPy's per-call cost stays small (bench/winograd.py).
BLOCK_BYTES = 1 << 22
# Bytes of each of V and M for one piece of tiles (``pieces``): at
# R-50-FPN's P2 the whole image would need 0.25 GB each, 1 GB for a batch
# of two kept as workspaces. Pieces of 64 MB (4096 tiles of 256 channels)
# took 1.04x the whole image's time there, 32 MB 1.13x (AVX-512 EPYC, 2
# threads, P2 of two images: 252 / 274 against 241 ms).
PIECE_BYTES = 1 << 26


class _Workers:
    """Threads of the transforms: the cores this process may use (affinity
    capped by the cgroup quota), counted at the first convolution, until
    ``set_workers`` (``utils.threads.set_threads``) sizes it with BLAS."""
    count = None


def set_workers(n):
    """Run the transforms on ``n`` threads from now on."""
    _Workers.count = max(1, int(n))


def worker_count():
    """The threads the transforms run on (``_Workers``)."""
    if _Workers.count is None:
        _Workers.count = usable_cpus()
    return _Workers.count


def worthwhile(xp, dtype, x_shape, w_shape, stride, pad):
    """Whether a convolution of x (N, C, H, W) by W (O, C, kh, kw) runs
    here: NumPy float32/float64, a 3x3 kernel with stride 1, and wide and
    large enough (``MIN_CHANNELS``, ``MIN_MACS``)."""
    n, c, h, w = x_shape
    o, _, kh, kw = w_shape
    if (xp is not numpy or (kh, kw) != (3, 3) or tuple(stride) != (1, 1) or
            numpy.dtype(dtype) not in (numpy.float32, numpy.float64)):
        return False
    p, q = output_size(h, w, 3, 3, 1, 1, *pad)
    return (min(c, o) >= MIN_CHANNELS and p > 0 and q > 0 and
            9 * o * c * n * p * q >= MIN_MACS)


def kernel_transform(W):
    """(O, C, 3, 3) -> U (16, O, C) contiguous, ``U[4a + b] = (G g
    G^T)[a, b]`` per (o, c): one GEMM with ``kron(G, G)`` (16, 9)."""
    o, c = W.shape[:2]
    gg = numpy.kron(_G, _G).astype(W.dtype)
    return (gg @ W.reshape(o * c, 9).T).reshape(16, o, c)


def conv3x3(x, W, ph, pw, workers=None):
    """``F.convolution_2d(x, W, pad=(ph, pw))`` for a 3x3 kernel, stride 1.

    Args:
        x (numpy.ndarray): (N, C, H, W) float32 or float64.
        W (numpy.ndarray): (O, C, 3, 3), same dtype.
        ph, pw (int): zero padding.
        workers (int or None): threads for the transforms (None: as
            ``worker_count()``).

    Returns:
        numpy.ndarray: (N, O, P, Q) contiguous, P = H + 2 ph - 2.
    """
    workers = workers or worker_count()
    n, c, h, w = x.shape
    o = W.shape[0]
    p, q = output_size(h, w, 3, 3, 1, 1, ph, pw)
    th, tw = (p + 1) // 2, (q + 1) // 2
    u = kernel_transform(W)
    y = numpy.empty((n, o, th, 2, tw, 2), x.dtype)
    for images, tile_rows in pieces(n, th, tw, max(c, o) * x.itemsize):
        _conv_piece(x[images], u, ph, pw, tile_rows,
                    y[images, :, tile_rows], workers)
    y = y.reshape(n, o, 2 * th, 2 * tw)
    if (2 * th, 2 * tw) != (p, q):
        y = numpy.ascontiguousarray(y[:, :, :p, :q])
    return y


def pieces(n, th, tw, bytes_per_tile_channel):
    """(images, tile rows) slices covering N images of TH x TW tiles, each
    with at most ``PIECE_BYTES / bytes_per_tile_channel / 16`` tiles (at
    least one tile row): whole images side by side when they are small
    (the heads' ROIs), strips of tile rows of one image when it is large
    (the backbone), so that V and M stay a few tens of MB."""
    limit = max(1, PIECE_BYTES // (16 * bytes_per_tile_channel))
    if th * tw <= limit:
        step = limit // (th * tw)
        return [(slice(i, min(i + step, n)), slice(0, th))
                for i in range(0, n, step)]
    rows = max(1, limit // tw)
    return [(slice(i, i + 1), slice(r, min(r + rows, th)))
            for i in range(n) for r in range(0, th, rows)]


def _conv_piece(x, u, ph, pw, tile_rows, y, workers):
    """Tile rows ``tile_rows`` of all N' images of x into y (N', O, TH',
    2, TW, 2), a view of the result."""
    n, c = x.shape[:2]
    o = u.shape[1]
    th, tw = y.shape[2], y.shape[4]
    t = n * th * tw
    # (16, C, T'): V[4a + b, c] the transformed patches.
    v = workspace(numpy, (16, c, t), x.dtype, 'winograd_v')
    row0 = 2 * tile_rows.start - ph      # input row of the window's top
    _parallel(c, _block(4 * n * (2 * th + 2) * (2 * tw + 2) * x.itemsize),
              workers, lambda c0, c1: _input_transform(
                  x, c0, c1, row0, pw, v.reshape(4, 4, c, n, th, tw)))
    m = workspace(numpy, (16, o, t), x.dtype, 'winograd_m')
    for k in range(16):  # 2-D GEMMs: BLAS's threads, no stacked copies
        numpy.matmul(u[k], v[k], out=m[k])
    _parallel(o, _block(20 * t * x.itemsize), workers,
              lambda o0, o1: _output_transform(m, o0, o1, y))


def _input_transform(x, c0, c1, row0, pw, v):
    """Channels c0:c1 of V = B^T d B, written to v (4, 4, C, N, TH, TW),
    for the tiles whose padded window starts at input row ``row0`` (rows
    outside the input, and ``pw`` columns each side, are zeros)."""
    n, _, h, w = x.shape
    th, tw = v.shape[-2:]
    # (c, N, rows, parity, half): the window's even and odd columns.
    z = numpy.zeros((c1 - c0, n, 2 * th + 2, 2, tw + 1), x.dtype)
    r0, r1 = max(0, row0), min(h, row0 + 2 * th + 2)
    xt = x[:, c0:c1, r0:r1].transpose(1, 0, 2, 3)
    for parity in (0, 1):
        first = (parity - pw) % 2              # first input column of it
        j0 = (first + pw) // 2
        cols = xt[..., first::2]
        z[:, :, r0 - row0:r1 - row0, parity,
          j0:j0 + cols.shape[-1]] = cols
    # Rows: t[a] = (B^T d)[a] from rows r of each tile, d[r] = z rows 2i+r.
    d = [z[:, :, r:r + 2 * th:2] for r in range(4)]
    rows = numpy.empty((4,) + d[0].shape, x.dtype)
    _b_transform(d, rows)
    # Columns: tile column s of row a is parity s % 2 at j + s // 2.
    for a in range(4):
        ra = rows[a]
        e = (ra[..., 0, :tw], ra[..., 1, :tw], ra[..., 0, 1:], ra[..., 1, 1:])
        _b_transform(e, v[a, :, c0:c1])


def _b_transform(d, out):
    """out[0..3] = B^T (d[0], d[1], d[2], d[3])."""
    numpy.subtract(d[0], d[2], out=out[0])
    numpy.add(d[1], d[2], out=out[1])
    numpy.subtract(d[2], d[1], out=out[2])
    numpy.subtract(d[1], d[3], out=out[3])


def _output_transform(m, o0, o1, y):
    """Channels o0:o1 of Y = A^T M A, from m (16, O, T) into y (N, O, TH,
    2, TW, 2)."""
    n, _, th, _, tw, _ = y.shape
    mb = m[:, o0:o1].reshape((4, 4, o1 - o0) + (n * th * tw,))
    rows = numpy.empty((2, 4) + mb.shape[2:], m.dtype)
    for b in range(4):
        _a_transform([mb[a, b] for a in range(4)], rows[:, b])
    out = numpy.empty((2, 2) + mb.shape[2:], m.dtype)
    for i in range(2):
        _a_transform(rows[i], out[i])
    # (2, 2, o, T) -> y[:, o0:o1] as (N, o, TH, 2, TW, 2)
    y[:, o0:o1].transpose(3, 5, 1, 0, 2, 4)[...] = out.reshape(
        2, 2, o1 - o0, n, th, tw)


def _a_transform(m, out):
    """out[0..1] = A^T (m[0], m[1], m[2], m[3])."""
    numpy.add(m[0], m[1], out=out[0])
    out[0] += m[2]
    numpy.subtract(m[1], m[2], out=out[1])
    out[1] -= m[3]


def _block(bytes_per_channel):
    """Channels per block so that one block's pass is ``BLOCK_BYTES``."""
    return max(1, BLOCK_BYTES // max(1, bytes_per_channel))


def _parallel(count, block, workers, fn):
    """fn(i0, i1) over [0, count) in blocks, on ``workers`` threads (each
    takes every workers-th block); the first error is raised here."""
    starts = list(range(0, count, block))
    errors = []

    def run(first):
        try:
            for i0 in starts[first::workers]:
                fn(i0, min(i0 + block, count))
        except BaseException as e:  # re-raised in the calling thread
            errors.append(e)

    workers = max(1, min(workers, len(starts)))
    threads = [threading.Thread(target=run, args=(k,))
               for k in range(1, workers)]
    for thread in threads:
        thread.start()
    run(0)
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
