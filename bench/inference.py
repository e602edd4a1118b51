"""Per-stage inference time and peak memory of R-50-C4 and R-50-FPN (or
any preset of ``--arch``, e.g. fpn-tiny, mobilenetv1-fpn).

    python bench/inference.py [--size 800 1216] [--repeat 2] [--json OUT]

Random weights (speed does not depend on them); the evaluate preset
(score > 0.05, NMS 0.5, 100 detections) with the class logits biased so
that the full 100 detections and their masks are computed, as with real
weights. Rows: arch x backend (numpy, cupy when a GPU is present, and
onnxruntime on the CPU when onnx and onnxruntime are installed: the same
weights exported by ``utils/deploy/onnx_export.py``, timed in the same
run on the same image; its ``backbone`` includes the RPN head's
convolutions, which run in the same graph, and its ``rpn`` is the
proposal step alone).
CPU peak memory is the process's peak resident set (``ru_maxrss``), GPU
peak is CuPy's memory-pool high-water mark.

On the CPU it also prints the backbone's efficiency: its GFLOP (2 x the
multiply-adds of every convolution, counted as they run) per second of
backbone time, over the SGEMM throughput numpy reaches in the same process
(a 4096^3 float32 product). The wide 3x3 convolutions run by Winograd
(``functions/winograd.py``) are counted at their direct FLOPs, so this
efficiency is an effective one and can pass 1. The BLAS library and its threads
(threadpoolctl) and the load average go into the JSON. For numbers a user
would see, unset the OpenBLAS pin of our CI machines in this command only:
``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/inference.py``.
"""
import argparse
import importlib.util
import json
import os
import resource
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from utils import compat  # noqa: F401,E402
import chainer  # noqa: E402
import numpy  # noqa: E402

from functions.convolution_2d import Convolution2DGEMM  # noqa: E402
from models.presets import build_mask_rcnn, get_preset  # noqa: E402
from utils.backend import gpu_available  # noqa: E402
from utils.ops.detections import (box_detections, class_mask_probs,  # noqa
                                  mask_rois)
from utils.ops.image import network_input, prepare  # noqa: E402
from utils.ops.masks import paste_masks  # noqa: E402
from utils.heap import keep_freed_memory  # noqa: E402
from utils.threads import default_threads, set_threads  # noqa: E402

STAGES = ('prepare', 'backbone', 'rpn', 'box head', 'mask head', 'paste')


def stage_times(model, img):
    """Seconds per stage of one ``predict`` (Detectron's pipeline)."""
    xp = model.xp
    sync = (lambda: xp.cuda.Device().synchronize()) if xp is not numpy \
        else (lambda: None)
    t = {}
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        t0 = time.perf_counter()
        x, scale, size = prepare(img, model.min_size, model.max_size,
                                 model.pad_stride)
        x = xp.asarray(x[None])
        sync()
        t1 = time.perf_counter()
        features = model.extractor(x)
        sync()
        t2 = time.perf_counter()
        rois = model.propose(features, size, scale)
        sync()
        t3 = time.perf_counter()
        bbox, label, score = model.detect_boxes(features, rois, scale,
                                                img.shape[1:])
        sync()
        t4 = time.perf_counter()
        probs = model.detect_masks(features, bbox, label, scale)
        sync()
        t5 = time.perf_counter()
        probs, bbox = chainer.backend.CpuDevice().send((probs, bbox))
        paste_masks(probs, bbox, img.shape[1:])
        t6 = time.perf_counter()
    for name, a, b in zip(STAGES, (t0, t1, t2, t3, t4, t5),
                          (t1, t2, t3, t4, t5, t6)):
        t[name] = b - a
    t['total'] = t6 - t0
    t['detections'] = int(len(bbox))
    return t


def onnx_stage_times(model, img):
    """Seconds per stage of ``OnnxMaskRCNN.predict``, as ``stage_times``."""
    c = model.conventions
    t = [time.perf_counter()]
    x, scale, size = network_input(
        img, model.min_size, model.max_size, model.pad_stride, c.resize,
        c.proposal_bounds, pixel_mean=c.pixel_mean, pixel_std=c.pixel_std,
        channel_order=c.channel_order)
    t.append(time.perf_counter())
    out = model.run_backbone(x)
    t.append(time.perf_counter())
    features, rois = model.proposals_of(out, size, scale)
    t.append(time.perf_counter())
    cls_score, bbox_pred = model.run_head('box', features, rois,
                                          ['cls_score', 'bbox_pred'])
    bbox, label, score = box_detections(
        rois, cls_score, bbox_pred, scale, img.shape[1:],
        model.bbox_reg_weights, model.score_thresh, model.nms_thresh,
        model.limit, c.box_offset)
    t.append(time.perf_counter())
    logits, = model.run_head('mask', features, mask_rois(bbox, scale),
                             ['mask_logits'])
    probs = class_mask_probs(logits, label)
    t.append(time.perf_counter())
    paste_masks(probs, bbox, img.shape[1:])
    t.append(time.perf_counter())
    row = {s: t[i + 1] - t[i] for i, s in enumerate(STAGES)}
    row['total'] = t[-1] - t[0]
    row['detections'] = int(len(bbox))
    return row


def onnx_available():
    return all(importlib.util.find_spec(m) is not None
               for m in ('onnx', 'onnxruntime'))


def onnx_model(model, arch, threads, folder):
    """``model`` exported to ``folder`` and loaded in onnxruntime."""
    from utils.deploy.onnx_export import export_onnx, save_onnx  # optional
    from utils.deploy.onnx_predict import OnnxMaskRCNN  # onnxruntime
    path = os.path.join(folder, arch + '.onnx')
    save_onnx(export_onnx(model, {'arch': arch}, arch), path)
    return OnnxMaskRCNN(path, 'evaluate', threads)


class ConvFlops(chainer.FunctionHook):
    """Counts 2 x multiply-adds of the GEMM convolutions that run (N O P Q
    C kh kw each), and of chainer's own convolutions if any. These are a
    direct convolution's FLOPs also where Winograd runs with 2.25x fewer
    multiplications, so the efficiency printed is an effective one."""
    name = 'ConvFlops'

    def __init__(self):
        self.flops = 0

    def forward_preprocess(self, function, in_data):
        if isinstance(function, Convolution2DGEMM) or \
                function.label == 'Convolution2DFunction':
            x, W = in_data[:2]
            o, c, kh, kw = W.shape
            sy, sx = getattr(function, 'sy', 1), getattr(function, 'sx', 1)
            ph, pw = getattr(function, 'ph', 0), getattr(function, 'pw', 0)
            p = (x.shape[2] + 2 * ph - kh) // sy + 1
            q = (x.shape[3] + 2 * pw - kw) // sx + 1
            self.flops += 2 * len(x) * o * p * q * c * kh * kw


def backbone_gflop(model, size):
    x = numpy.zeros((1, 3) + tuple(size), numpy.float32)
    hook = ConvFlops()
    with chainer.using_config('train', False), chainer.no_backprop_mode(), \
            hook:
        model.extractor(model.xp.asarray(x))
    return hook.flops / 1e9


def cpu_description():
    """'MODEL, N cores, AVX-512' (or AVX2) from /proc/cpuinfo."""
    try:
        with open('/proc/cpuinfo') as f:
            text = f.read()
    except OSError:
        return 'unknown CPU'
    model = next((line.split(':', 1)[1].strip() for line in
                  text.splitlines() if line.startswith('model name')), '?')
    isa = 'AVX-512' if ' avx512f' in text else (
        'AVX2' if ' avx2' in text else 'no AVX2')
    return '{}, {} cores, {}'.format(model, os.cpu_count(), isa)


def sgemm_gflops(n=4096, repeat=3):
    """numpy's float32 GEMM throughput in this process (median)."""
    a = numpy.ones((n, n), numpy.float32)
    a @ a
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - t0)
    return 2 * n ** 3 / float(numpy.median(times)) / 1e9


def bench_model(arch):
    """Random weights whose proposals all score high for class 1."""
    numpy.random.seed(0)
    model = build_mask_rcnn(get_preset(arch))
    # Make every proposal score high for class 1 so that 100 detections
    # and masks are produced, as a trained model does on a busy image. The
    # small random weights keep the probabilities from saturating at 1.0,
    # where ties at the 100th score would keep more than 100 (Detectron's
    # cap keeps every detection scoring >= the 100th best).
    predictor = model.box_head.predictor.cls_score
    predictor.W.array[...] = numpy.random.RandomState(1).normal(
        0, 1e-6, predictor.W.shape)
    predictor.b.array[1] = 5.
    return model


def bench(model, backend, size, repeat, ort_model=None):
    """Median stage times of ``model`` (or of ``ort_model``, the same
    weights in onnxruntime, for backend 'onnxruntime')."""
    if backend == 'cupy':
        model.to_gpu()
    img = numpy.random.RandomState(0).uniform(
        0, 255, (3,) + tuple(size)).astype(numpy.float32)
    if backend == 'onnxruntime':
        runs = [onnx_stage_times(ort_model, img)
                for _ in range(repeat + 1)][1:]
    else:
        runs = [stage_times(model, img) for _ in range(repeat + 1)][1:]
    row = {k: float(numpy.median([r[k] for r in runs])) for k in runs[0]}
    # FLOPs of the backbone on the padded input it sees.
    x = prepare(img, model.min_size, model.max_size, model.pad_stride)[0]
    row['backbone_gflop'] = backbone_gflop(model, x.shape[1:])
    if backend == 'cupy':
        import cupy
        row['peak_mb'] = cupy.get_default_memory_pool().total_bytes() / 2**20
    else:
        row['peak_mb'] = resource.getrusage(
            resource.RUSAGE_SELF).ru_maxrss / 1024.
    return row


def main():
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--size', type=int, nargs=2, default=(800, 1216),
                   help='image height and width')
    p.add_argument('--arch', nargs='+', default=['c4', 'fpn'],
                   help='architectures to time')
    p.add_argument('--repeat', type=int, default=2,
                   help='timed runs after one warm-up (median reported)')
    p.add_argument('--json', default=None,
                   help='also write the rows to this JSON file')
    p.add_argument('--no-onnxruntime', action='store_true',
                   help='skip the onnxruntime rows, which are timed when '
                        'onnx and onnxruntime are installed')
    p.add_argument('--heap', choices=('keep', 'default'), default='keep',
                   help='keep freed memory as demo.py and train.py do '
                        "(utils/heap.py) or glibc's default")
    p.add_argument('--threads', type=int, default=default_threads(),
                   help='BLAS and OpenCV threads (utils/threads.py)')
    args = p.parse_args()
    blas = set_threads(args.threads)
    if args.heap == 'keep':
        keep_freed_memory()
    sgemm = sgemm_gflops()
    cpu = cpu_description()
    print('{}; load average {:.2f} {:.2f} {:.2f}; {} thread(s); BLAS: {}; '
          'SGEMM 4096^3: {:.0f} GFLOP/s'.format(
              cpu, *os.getloadavg(), args.threads, ', '.join(
                  '{internal_api} {version} {architecture}'.format(**b)
                  for b in blas), sgemm))
    backends = ['numpy'] + (['cupy'] if gpu_available() else [])
    rows = []
    # The arch column fits the longest name asked for.
    name = '{{:<{}s}}'.format(max(5, *map(len, args.arch)))
    header = (name + ' {:<6s}' + ' {:>9s}' * (len(STAGES) + 1) +
              ' {:>5s} {:>8s}').format('arch', 'xp', *STAGES, 'total',
                                       'dets', 'peak MB')
    print('image {}x{}, times in ms (median of {})'.format(
        args.size[0], args.size[1], args.repeat))
    print(header)
    folder = tempfile.TemporaryDirectory(prefix='bench_onnx_')
    for arch in args.arch:
        model = bench_model(arch)
        ort = None
        if onnx_available() and not args.no_onnxruntime:  # before to_gpu
            ort = onnx_model(model, arch, args.threads, folder.name)
        for backend in ['numpy', 'onnxruntime'][:1 + bool(ort)] + \
                backends[1:]:
            r = bench(model, backend, args.size, args.repeat, ort)
            rows.append(dict(r, arch=arch, backend=backend,
                             threads=args.threads, blas=blas,
                             sgemm_gflops=sgemm, cpu=cpu,
                             load_average=os.getloadavg()))
            print((name + ' {:<6s}' + ' {:>9.1f}' * (len(STAGES) + 1) +
                   ' {:>5d} {:>8.0f}').format(
                arch, backend, *[r[s] * 1e3 for s in STAGES + ('total',)],
                int(r['detections']), r['peak_mb']))
            if backend == 'numpy':
                rate = r['backbone_gflop'] / r['backbone']
                print('      backbone {:.1f} GFLOP at {:.0f} GFLOP/s = {:.2f} '
                      'of SGEMM'.format(r['backbone_gflop'], rate,
                                        rate / sgemm))
            sys.stdout.flush()
    folder.cleanup()
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(rows, f, indent=1)


if __name__ == '__main__':
    main()
