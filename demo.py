"""Run Mask R-CNN on images and draw the detections.

    python demo.py --image IMG [IMG|FOLDER ...] --modelfile MODEL.npz --contour
    python demo.py --backend onnxruntime --modelfile MODEL.onnx --image IMG

``--backend onnxruntime`` runs a file of ``utils/export_onnx.py`` on the
CPU with the same post-processing, outputs and flags.

Without ``--image`` it uses matplotlib's bundled photo of Grace Hopper;
without ``--modelfile`` it runs a randomly initialised R-50-C4 (this proves
the install, it finds nothing meaningful).

Outputs. One image is drawn to the file ``--out`` (default ``output.png``;
an existing folder, or a path ending in ``/``, gets ``STEM.png``). Several
images are drawn into the folder ``--out`` (default ``output/``) as
``STEM.png`` each; images that share a stem (``a.jpg`` and ``a.png``, or
one name in two folders) are all written under their whole file name
instead (``a.jpg.png``, ``a.png.png``), numbered if even that is shared
(``a.jpg.2.png``). Nothing is written onto an input: an ``--out`` or
``--json`` that would be one is refused before any work, and so is one
whose folder cannot be created.

Failures. An image that cannot be decoded, is too thin to resize, or
whose header declares more than ``--max-image-pixels`` pixels, is
skipped with a line on stderr; the others are still drawn and written to
``--json``, and the demo then exits with status 1 naming the skipped
images. Any other problem stops it with status 1 and one line
``demo.py: error: ...`` before the model runs.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from utils import compat  # noqa: F401,E402  (before chainer)
import numpy  # noqa: E402

from utils.atomic_write import OutputError, atomic_write  # noqa: E402
from utils.printable import printable  # noqa: E402

from functions.conv_columns import kept_workspaces  # noqa: E402
from models.presets import ARCHS, build_mask_rcnn, get_preset  # noqa: E402
from utils.ops.detections import THRESHOLDS  # noqa: E402
from utils.arg_types import (  # noqa: E402
    bounded_float, gpu_id, image_pixels, probability, workers)
from utils.backend import DeviceError, require_gpus  # noqa: E402
from utils.data.coco_eval import coco_results  # noqa: E402
from utils.demo_io import (  # noqa: E402
    UsageError, list_images, prepare_outputs)
from utils.deploy.onnx_predict import OnnxMaskRCNN, OnnxModelError  # noqa
from utils.ops.image import (  # noqa: E402
    MAX_IMAGE_PIXELS, ImageError, read_image)
from utils.heap import keep_freed_memory  # noqa: E402
from utils.threads import default_threads, set_threads  # noqa: E402
from utils.weights.model_io import (  # noqa: E402
    DEFAULT_N_FG_CLASS, ModelFileError, check_meta, load_model,
    model_classes)
from utils.weights.zoo import MODELS, weights_file  # noqa: E402
from utils.vis import draw_detections  # noqa: E402

VISUALIZE = THRESHOLDS['visualize']  # Detectron's visualisation thresholds


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog='demo.py',  # also when run in process (tests)
        description=__doc__.strip().splitlines()[0])
    p.add_argument('--image', nargs='+', default=None, metavar='IMG|FOLDER',
                   help='image files and/or folders of images (default: '
                        'the photo of Grace Hopper that ships with '
                        'matplotlib)')
    p.add_argument('--modelfile', default=None,
                   help='model npz from utils/detectron_parser.py or '
                        'train.py, or a model-zoo name, downloaded and '
                        'converted once into ~/.cache/mask-rcnn-chainer/ '
                        '($MASK_RCNN_CHAINER_CACHE): {} (default: random '
                        'weights, which find nothing meaningful)'.format(
                            ', '.join(MODELS)))
    p.add_argument('--backend', choices=('chainer', 'onnxruntime'),
                   default='chainer',
                   help='chainer runs a model npz; onnxruntime runs the '
                        '.onnx of utils/export_onnx.py on the CPU (bash '
                        'setup.sh --onnx) (default: chainer)')
    p.add_argument('--arch', choices=ARCHS, default=None,
                   help="model preset (default: the npz's metadata, or c4 "
                        "without --modelfile)")
    p.add_argument('--gpu', type=gpu_id, default=-1,
                   help='GPU id, -1..1023; needs CuPy (default: -1, the '
                        'CPU)')
    p.add_argument('--threads', type=workers, default=None,
                   help='BLAS and OpenCV threads, 1..1024 (default: the '
                        'cores this process may use)')
    p.add_argument('--contour', action='store_true',
                   help='also outline each mask (default: filled masks '
                        'only)')
    p.add_argument('--score-thresh',
                   type=bounded_float('a score threshold', 0, 2),
                   default=VISUALIZE['score_thresh'],
                   help='minimum class probability to show, in [0, 2] '
                        '(above 1: none) (default: {})'.format(
                            VISUALIZE['score_thresh']))
    p.add_argument('--nms-thresh', type=probability,
                   default=VISUALIZE['nms_thresh'],
                   help='per-class NMS IoU threshold, in [0, 1] (default: '
                        '{})'.format(VISUALIZE['nms_thresh']))
    p.add_argument('--max-image-pixels', type=image_pixels,
                   default=MAX_IMAGE_PIXELS, metavar='N',
                   help='skip an image whose header declares more pixels '
                        '(width x height), before it is decoded (default: '
                        "{}, Pillow's decompression-bomb limit)".format(
                            MAX_IMAGE_PIXELS))
    p.add_argument('--out', default=None,
                   help='the drawing of one image, or a folder of '
                        'drawings of several: STEM.png each, NAME.EXT.png '
                        'where stems are the same; never an input '
                        '(default: output.png for one image, output/ for '
                        'several)')
    p.add_argument('--json', default=None,
                   help='also write COCO-style results to this file '
                        '(default: no file)')
    return p.parse_args(argv)


def sample_photo():
    import matplotlib.cbook
    with matplotlib.cbook.get_sample_data('grace_hopper.jpg') as f:
        return f.name


def check_backend(args):
    """Refuse flags the onnxruntime backend cannot honour."""
    if args.backend != 'onnxruntime':
        return
    if not args.modelfile:
        raise UsageError('--backend onnxruntime needs --modelfile '
                         'MODEL.onnx (from utils/export_onnx.py)')
    if args.gpu >= 0:
        raise UsageError('--backend onnxruntime runs on the CPU; expected '
                         'no --gpu (or --gpu -1)')
    if args.arch is not None:
        raise UsageError('--backend onnxruntime reads the architecture '
                         'from the .onnx file; expected no --arch')


def build(args):
    thresholds = dict(VISUALIZE, score_thresh=args.score_thresh,
                      nms_thresh=args.nms_thresh)
    if args.backend == 'onnxruntime':
        model = OnnxMaskRCNN(args.modelfile, thresholds, args.threads or
                             default_threads())
        check_meta(model.meta, args.modelfile)  # as load_model checks npz
        return model, model.meta
    if args.modelfile:
        model, meta = load_model(args.modelfile, args.arch)
    else:
        print('demo: no --modelfile given: using RANDOM weights, expect '
              'no meaningful detections', file=sys.stderr)
        numpy.random.seed(0)
        model = build_mask_rcnn(get_preset(args.arch or 'c4'))
        meta = {}
    model.use_thresholds(thresholds)
    if args.gpu >= 0:
        import chainer
        chainer.backends.cuda.get_device_from_id(args.gpu).use()
        model.to_gpu(args.gpu)
    return model, meta


def class_labels(meta):
    """Names and dataset category ids of labels 1..K: the npz's (checked
    by ``load_model`` to have K entries), else COCO's for an 80-class
    model (``model_classes``), else 'class k' and k."""
    k = meta.get('n_fg_class', DEFAULT_N_FG_CLASS)  # what load_model builds
    classes = model_classes(meta)
    names = classes.get('class_names', [
        'class {}'.format(i) for i in range(1, k + 1)])
    ids = classes.get('class_ids', list(range(1, k + 1)))
    return names, ids


def detect(model, image, max_pixels=MAX_IMAGE_PIXELS):
    """The image and its detections (bbox, label, score, mask); an image
    declaring more than ``max_pixels`` pixels is an ``ImageError``."""
    img = read_image(image, max_pixels)
    try:
        out = model.predict([img])
    except ImageError as e:  # prepare's message does not name the file
        raise ImageError('{}: {}'.format(image, e)) from None
    return img, [a[0] for a in out]


def detect_all(model, images, drawings, labels, contour,
               max_pixels=MAX_IMAGE_PIXELS):
    """Draw every image's detections; skip, with a line on stderr, those
    that cannot be read or resized or declare more than ``max_pixels``
    pixels.

    Returns:
        (list of dict, list of (str, str)): COCO results (``image_id``
        the position in ``images``) and each skipped image with why.
    """
    names, class_ids = labels
    results, failed = [], []
    for image_id, (image, path) in enumerate(zip(images, drawings)):
        try:
            img, (bbox, label, score, mask) = detect(model, image,
                                                    max_pixels)
        except ImageError as e:
            failed.append((image, str(e)))
            if len(images) > 1:  # one image: its error is the final line
                print('demo.py: skipped: {}'.format(printable(e)),
                      file=sys.stderr)
            continue
        for b, lb, s in zip(bbox, label, score):
            print('{}: {} {:.3f} [{:.1f} {:.1f} {:.1f} {:.1f}]'.format(
                printable(os.path.basename(image)), printable(names[lb - 1]),
                s, *b))
        draw_detections(img, bbox, label, score, mask, names, path,
                        contour=contour)
        print('{}: {} detections -> {}'.format(printable(image), len(bbox),
                                               printable(path)))
        results += coco_results(image_id, bbox, label, score, mask,
                                class_ids, model.conventions.box_offset)
    return results, failed


def failure_line(failed, n_images):
    if n_images == 1:
        return failed[0][1]
    return '{} of {} images failed (reasons above): {}'.format(
        len(failed), n_images, ', '.join(image for image, _ in failed))


def main(argv=None):
    args = parse_args(argv)
    check_backend(args)
    args.image = args.image or [sample_photo()]
    images = list_images(args.image)
    if args.backend == 'chainer' and args.modelfile:  # a name: its npz
        args.modelfile = weights_file(args.modelfile, models_only=True)
    out = args.out or ('output.png' if len(images) == 1 else 'output')
    inputs = args.image + images + ([args.modelfile] if args.modelfile
                                    else [])
    drawings = prepare_outputs(out, args.json, inputs, images)
    if args.gpu >= 0:
        require_gpus([args.gpu], '--gpu {}'.format(args.gpu))
    set_threads(args.threads or default_threads())
    # Each image frees and allocates the same large arrays again: reuse
    # their pages instead of mapping them afresh (utils/heap.py).
    keep_freed_memory()
    model, meta = build(args)
    labels = class_labels(meta)
    with kept_workspaces():  # image to image; released at the end
        results, failed = detect_all(model, images, drawings, labels,
                                     args.contour, args.max_image_pixels)
    if args.json:
        with atomic_write(args.json, 'w', '--json') as f:
            json.dump(results, f)
        print('results: {}'.format(args.json))
    if failed:
        raise ImageError(failure_line(failed, len(images)))


def cli(argv=None):
    """``main`` as the command line runs it: an expected error is one line
    on stderr and exit status 1."""
    try:
        main(argv)
    except (DeviceError, ImageError, ModelFileError, OnnxModelError,
            OutputError, UsageError) as e:
        print('demo.py: error: {}'.format(printable(e)), file=sys.stderr)
        sys.exit(1)


if __name__ == '__main__':
    cli()
