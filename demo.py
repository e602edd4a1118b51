"""Run Mask R-CNN on images and draw the detections.

    python demo.py --image IMG [IMG ...] --modelfile MODEL.npz --contour

Without ``--image`` it uses matplotlib's bundled photo of Grace Hopper;
without ``--modelfile`` it runs a randomly initialised R-50-C4 (this proves
the install, it finds nothing meaningful).
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from utils import compat  # noqa: F401,E402  (before chainer)
import numpy  # noqa: E402

from utils.coco_eval import coco_results  # noqa: E402
from utils.coco_names import COCO_CATEGORY_IDS, COCO_NAMES  # noqa: E402
from utils.image import ImageError, read_image  # noqa: E402
from utils.model_io import ModelFileError, load_model  # noqa: E402

IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.strip().splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--image', nargs='+', default=None,
                   help='image files and/or folders (default: a sample '
                        'photo shipped with matplotlib)')
    p.add_argument('--modelfile', default=None,
                   help='model npz (from utils/detectron_parser.py or '
                        'train.py); default: random weights')
    p.add_argument('--arch', choices=('c4', 'fpn'), default=None,
                   help="architecture (default: the npz's metadata, else c4)")
    p.add_argument('--gpu', type=int, default=-1,
                   help='GPU id, -1 for CPU')
    p.add_argument('--contour', action='store_true',
                   help='draw mask outlines')
    p.add_argument('--score-thresh', type=float, default=0.7,
                   help='minimum class probability to show')
    p.add_argument('--nms-thresh', type=float, default=0.3,
                   help='per-class NMS IoU threshold')
    p.add_argument('--out', default='output.png',
                   help='PNG file (one image) or folder (several)')
    p.add_argument('--json', default=None,
                   help='also write COCO-style results to this JSON file')
    return p.parse_args(argv)


def list_images(paths):
    """Expand folders into their image files; keep explicit files as given."""
    out = []
    for path in paths:
        if os.path.isdir(path):
            out += sorted(os.path.join(path, f) for f in os.listdir(path)
                          if f.lower().endswith(IMAGE_EXTS))
        else:
            out.append(path)
    if not out:
        raise ImageError('no images found in {}'.format(' '.join(paths)))
    return out


def build(args):
    if args.modelfile:
        model, meta = load_model(args.modelfile, args.arch)
    else:
        from models.presets import build_mask_rcnn, get_preset
        print('demo: no --modelfile given: using RANDOM weights, expect '
              'no meaningful detections', file=sys.stderr)
        numpy.random.seed(0)
        model = build_mask_rcnn(get_preset(args.arch or 'c4'))
        meta = {}
    model.use_preset({'score_thresh': args.score_thresh,
                      'nms_thresh': args.nms_thresh, 'limit': 100})
    if args.gpu >= 0:
        import chainer
        chainer.backends.cuda.get_device_from_id(args.gpu).use()
        model.to_gpu(args.gpu)
    return model, meta


def out_path(args, image, n_images):
    if n_images == 1 and not os.path.isdir(args.out):
        return args.out
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.splitext(os.path.basename(image))[0]
    return os.path.join(args.out, stem + '.png')


def main(argv=None):
    args = parse_args(argv)
    from utils.vis import draw_detections
    if args.image is None:
        import matplotlib.cbook
        with matplotlib.cbook.get_sample_data('grace_hopper.jpg') as f:
            args.image = [f.name]
    images = list_images(args.image)
    for image in images:  # fail before the slow model build
        if not os.path.isfile(image):
            raise ImageError('image file not found: {}'.format(image))
    model, meta = build(args)
    names = meta.get('class_names', COCO_NAMES)
    class_ids = meta.get('class_ids', COCO_CATEGORY_IDS)
    results = []
    for image_id, image in enumerate(images):
        img = read_image(image)
        bboxes, labels, scores, masks = model.predict([img])
        bbox, label, score, mask = bboxes[0], labels[0], scores[0], masks[0]
        for b, lb, s in zip(bbox, label, score):
            print('{}: {} {:.3f} [{:.1f} {:.1f} {:.1f} {:.1f}]'.format(
                os.path.basename(image), names[lb - 1], s, *b))
        path = out_path(args, image, len(images))
        draw_detections(img, bbox, label, score, mask, names, path,
                        contour=args.contour)
        print('{}: {} detections -> {}'.format(image, len(bbox), path))
        results += coco_results(image_id, bbox, label, score, mask,
                                class_ids, model.conventions.box_offset)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f)
        print('results: {}'.format(args.json))


if __name__ == '__main__':
    try:
        main()
    except (ImageError, ModelFileError) as e:
        sys.exit('demo.py: error: {}'.format(e))
