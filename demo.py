"""Run Mask R-CNN on images and draw the detections.

    python demo.py --image IMG [IMG|FOLDER ...] --modelfile MODEL.npz --contour

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

Failures. An image that cannot be decoded, or is too thin to resize, is
skipped with a line on stderr; the others are still drawn and written to
``--json``, and the demo then exits with status 1 naming the skipped
images. Any other problem stops it with status 1 and one line
``demo.py: error: ...`` before the model runs.
"""
import argparse
import collections
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from utils import compat  # noqa: F401,E402  (before chainer)
import numpy  # noqa: E402

from models.mask_rcnn import PRESETS  # noqa: E402
from models.presets import build_mask_rcnn, get_preset  # noqa: E402
from utils.backend import DeviceError, require_gpus  # noqa: E402
from utils.data.coco_eval import coco_results  # noqa: E402
from utils.data.coco_names import COCO_CATEGORY_IDS, COCO_NAMES  # noqa: E402
from utils.ops.image import ImageError, read_image  # noqa: E402
from utils.weights.model_io import ModelFileError, load_model  # noqa: E402
from utils.vis import draw_detections, file_format, save_formats  # noqa: E402

IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
VISUALIZE = PRESETS['visualize']  # Detectron's visualisation thresholds


class UsageError(ValueError):
    """A flag that cannot work, reported before any work is done."""


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.strip().splitlines()[0])
    p.add_argument('--image', nargs='+', default=None, metavar='IMG|FOLDER',
                   help='image files and/or folders of images (default: '
                        'the photo of Grace Hopper that ships with '
                        'matplotlib)')
    p.add_argument('--modelfile', default=None,
                   help='model npz from utils/detectron_parser.py or '
                        'train.py (default: random weights, which find '
                        'nothing meaningful)')
    p.add_argument('--arch', choices=('c4', 'fpn'), default=None,
                   help="architecture (default: the npz's metadata, or c4 "
                        "without --modelfile)")
    p.add_argument('--gpu', type=int, default=-1,
                   help='GPU id; needs CuPy (default: -1, the CPU)')
    p.add_argument('--contour', action='store_true',
                   help='also outline each mask (default: filled masks '
                        'only)')
    p.add_argument('--score-thresh', type=float,
                   default=VISUALIZE['score_thresh'],
                   help='minimum class probability to show (default: '
                        '{})'.format(VISUALIZE['score_thresh']))
    p.add_argument('--nms-thresh', type=float,
                   default=VISUALIZE['nms_thresh'],
                   help='per-class NMS IoU threshold (default: {})'.format(
                       VISUALIZE['nms_thresh']))
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


def list_images(paths):
    """Expand folders into their image files; keep explicit files as given,
    which must exist (checked now, before the slow model build)."""
    out = []
    for path in paths:
        if os.path.isdir(path):
            out += sorted(os.path.join(path, f) for f in os.listdir(path)
                          if f.lower().endswith(IMAGE_EXTS))
        elif os.path.isfile(path):
            out.append(path)
        else:
            raise ImageError('image file not found: {}'.format(path))
    if not out:
        raise ImageError('no images found in {}'.format(' '.join(paths)))
    return out


def output_names(images):
    """File names of the drawings of ``images`` in one folder (the module
    docstring's rule). Names are compared without case, as a
    case-insensitive file system would."""
    bases = [os.path.basename(image) for image in images]
    stems = collections.Counter(os.path.splitext(b)[0].lower() for b in bases)
    names, taken = [], set()
    for base in bases:
        stem = os.path.splitext(base)[0]
        root = stem if stems[stem.lower()] == 1 else base
        name, n = root + '.png', 1
        while name.lower() in taken:
            n += 1
            name = '{}.{}.png'.format(root, n)
        taken.add(name.lower())
        names.append(name)
    return names


def output_paths(out, images):
    """(folder to create, path of each image's drawing)."""
    if len(images) == 1 and not (os.path.isdir(out) or
                                 out.endswith(('/', os.sep))):
        if file_format(out) not in save_formats():
            raise UsageError('--out {}: cannot write .{} images, expected '
                             'one of .{}'.format(out, file_format(out),
                                                 ', .'.join(save_formats())))
        return os.path.dirname(out), [out]
    if os.path.isfile(out):
        raise UsageError('--out {} is a file; {} images need a folder'.format(
            out, len(images)))
    return out, [os.path.join(out, name) for name in output_names(images)]


def file_ids(paths):
    """(device, inode) of each existing path: one file has one id whatever
    its spelling, links or letter case."""
    ids = set()
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            continue
        ids.add((st.st_dev, st.st_ino))
    return ids


def refuse_overwrites(out, drawings, json_path, inputs):
    """Refuse an ``--out`` or ``--json`` that is, or would write onto, one
    of ``inputs`` (images, their folders, the model file)."""
    ids = file_ids(inputs)
    if file_ids([out]) & ids:
        raise UsageError('--out {} is an input; expected a new file or '
                         'folder'.format(out))
    for path in drawings:
        if file_ids([path]) & ids:
            raise UsageError('--out {} would overwrite the input {}; '
                             'expected another folder'.format(out, path))
    if json_path is None:
        return
    if file_ids([json_path]) & ids:
        raise UsageError('--json {} is an input; expected a new file'.format(
            json_path))
    if os.path.realpath(json_path) in map(os.path.realpath, drawings):
        raise UsageError('--json {} is also a drawing of --out; expected '
                         'another file'.format(json_path))


def make_folder(flag, folder):
    """Create the folder of an output now, so that a bad path fails before
    the slow work instead of after it."""
    folder = folder or '.'
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise UsageError('{} needs the folder {}, which cannot be created '
                         '({})'.format(flag, folder, e.strerror or e)) \
            from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError('{} needs the folder {}, which is not '
                         'writable'.format(flag, folder))


def prepare_outputs(args, images):
    """Check and create every output location; the drawing paths."""
    out = args.out or ('output.png' if len(images) == 1 else 'output')
    folder, drawings = output_paths(out, images)
    inputs = args.image + images + ([args.modelfile] if args.modelfile
                                    else [])
    refuse_overwrites(out, drawings, args.json, inputs)
    if args.json is not None and os.path.isdir(args.json):
        raise UsageError('--json {} is a folder; expected a file name'.format(
            args.json))
    make_folder('--out', folder)
    if args.json is not None:
        make_folder('--json', os.path.dirname(args.json))
    return drawings


def build(args):
    if args.modelfile:
        model, meta = load_model(args.modelfile, args.arch)
    else:
        print('demo: no --modelfile given: using RANDOM weights, expect '
              'no meaningful detections', file=sys.stderr)
        numpy.random.seed(0)
        model = build_mask_rcnn(get_preset(args.arch or 'c4'))
        meta = {}
    model.use_preset(dict(VISUALIZE, score_thresh=args.score_thresh,
                          nms_thresh=args.nms_thresh))
    if args.gpu >= 0:
        import chainer
        chainer.backends.cuda.get_device_from_id(args.gpu).use()
        model.to_gpu(args.gpu)
    return model, meta


def class_labels(meta, path):
    """Names and dataset category ids of labels 1..K: the npz's
    ``class_names`` and ``class_ids``; else COCO's for an 80-class model
    and 'class k', k for any other, whose classes are not COCO's."""
    k = meta.get('n_fg_class', len(COCO_NAMES))  # what load_model builds
    coco = k == len(COCO_NAMES)
    names = meta.get('class_names', COCO_NAMES if coco else [
        'class {}'.format(i) for i in range(1, k + 1)])
    ids = meta.get('class_ids', COCO_CATEGORY_IDS if coco else list(
        range(1, k + 1)))
    for key, value in (('class_names', names), ('class_ids', ids)):
        if len(value) != k:
            raise ModelFileError('{}: metadata {!r} has {} entries, expected '
                                 'one per class ({})'.format(
                                     path, key, len(value), k))
    return names, ids


def detect(model, image):
    """The image and its detections (bbox, label, score, mask)."""
    img = read_image(image)
    try:
        out = model.predict([img])
    except ImageError as e:  # prepare's message does not name the file
        raise ImageError('{}: {}'.format(image, e)) from None
    return img, [a[0] for a in out]


def detect_all(model, images, drawings, labels, contour):
    """Draw every image's detections; skip, with a line on stderr, those
    that cannot be read or resized.

    Returns:
        (list of dict, list of (str, str)): COCO results (``image_id``
        the position in ``images``) and each skipped image with why.
    """
    names, class_ids = labels
    results, failed = [], []
    for image_id, (image, path) in enumerate(zip(images, drawings)):
        try:
            img, (bbox, label, score, mask) = detect(model, image)
        except ImageError as e:
            failed.append((image, str(e)))
            if len(images) > 1:  # one image: its error is the final line
                print('demo.py: skipped: {}'.format(e), file=sys.stderr)
            continue
        for b, lb, s in zip(bbox, label, score):
            print('{}: {} {:.3f} [{:.1f} {:.1f} {:.1f} {:.1f}]'.format(
                os.path.basename(image), names[lb - 1], s, *b))
        draw_detections(img, bbox, label, score, mask, names, path,
                        contour=contour)
        print('{}: {} detections -> {}'.format(image, len(bbox), path))
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
    args.image = args.image or [sample_photo()]
    images = list_images(args.image)
    drawings = prepare_outputs(args, images)
    if args.gpu >= 0:
        require_gpus([args.gpu], '--gpu {}'.format(args.gpu))
    model, meta = build(args)
    labels = class_labels(meta, args.modelfile)
    results, failed = detect_all(model, images, drawings, labels,
                                 args.contour)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f)
        print('results: {}'.format(args.json))
    if failed:
        raise ImageError(failure_line(failed, len(images)))


if __name__ == '__main__':
    try:
        main()
    except (DeviceError, ImageError, ModelFileError, UsageError) as e:
        sys.exit('demo.py: error: {}'.format(e))
