"""What ``train.py`` leaves behind: the final model npz with its demo
image, and ``--evaluate``'s COCO evaluation of a saved model."""
import os
import sys

import chainer

from utils.atomic_write import OutputError
from utils.data.coco_dataset import COCODataset
from utils.data.coco_eval import COCOEvaluator
from utils.data.coco_json import DatasetError
from utils.ops.image import MAX_IMAGE_PIXELS, ImageError
from utils.training.errors import SetupError
from utils.training.pretrained import resolve
from utils.training.setup import prepare_out, write_demo
from utils.weights.model_io import load_model, model_classes, save_model


def save_final(model, meta, val, out):
    """Write ``out/model_final.npz`` (``model`` and ``meta``) and the demo
    image of ``model`` on ``val``; a demo that cannot be drawn is reported
    on stderr, the model being safe already. Returns the npz path."""
    path = os.path.join(out, 'model_final.npz')
    save_model(path, model, meta)
    print('model: {}'.format(path))
    try:
        print('demo: {}'.format(write_demo(model, val, out,
                                           meta['class_names'])))
    except (ImageError, DatasetError, OutputError) as e:  # model is safe
        print('demo image not written: {}'.format(e), file=sys.stderr)
    return path


def load_evaluated_model(pretrained, arch=None, depth=None):
    """(model, class ids) of ``--evaluate``: the npz ``--pretrained`` names
    (``pretrained.resolve``; ``depth`` picks the ImageNet one) alone decides
    the model (every array must load) and its classes; ``arch`` (None: the
    npz's) as ``train.py --arch``."""
    if not pretrained:
        raise SetupError('--evaluate needs --pretrained MODEL.npz')
    path = resolve(pretrained, depth or 50)
    model, meta = load_model(path, arch)
    class_ids = model_classes(meta).get('class_ids')
    if class_ids is None:
        raise SetupError('{} has no class_ids metadata: which dataset '
                         'categories its {} classes are is unknown'.format(
                             path, meta['n_fg_class']))
    return model, class_ids


def evaluate_model(model, class_ids, val_paths, out, gpu=-1,
                   max_pixels=MAX_IMAGE_PIXELS):
    """COCO-evaluate ``model`` on the validation set ``val_paths``
    (annotation json, image folder), read in the model's classes
    (``class_ids``, matched by category id), writing to ``out``, on
    ``gpu`` (-1: the CPU); ``max_pixels`` is ``COCODataset``'s."""
    val_json, val_images = val_paths
    val = COCODataset(val_json, val_images,
                      box_offset=model.conventions.box_offset,
                      class_ids=class_ids, max_pixels=max_pixels)
    prepare_out(out)
    if gpu >= 0:
        chainer.backends.cuda.get_device_from_id(gpu).use()
        model.to_gpu(gpu)
    COCOEvaluator(val, model, val_json, out, class_ids=class_ids,
                  max_pixels=max_pixels).evaluate()
