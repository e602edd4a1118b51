"""Wiring helpers of ``train.py``, given explicit values: where the data
is, the device and process layout, the updater for it, and the closing
demo image (starting weights and frozen stages: ``pretrained.py``)."""
import os

import chainer

from utils.ops.detections import THRESHOLDS
from utils.backend import require_gpus
from utils.data.synthetic_coco import ensure_synthetic_coco
from utils.training.distributed import multi_node_optimizer
from utils.training.errors import SetupError
from utils.training.multi_device_updater import MultiDeviceUpdater
from utils.training.snapshots import remove_partial_snapshots
from utils.training.subdivision_updater import (SubdivisionUpdater,
                                                check_divisible)
from utils.vis import draw_detections

VISUALIZE = THRESHOLDS['visualize']
# The synthetic quickstart's image size.
SYNTHETIC_SIZE = (192, 256)


def synthetic_paths(root, n_train, n_val, seed):
    """Generate (or keep, when its manifest matches) the synthetic dataset
    under ``root``; train uses ``seed``, val ``seed + 1``."""
    paths = {}
    for split, n, split_seed in (('train', n_train, seed),
                                 ('val', n_val, seed + 1)):
        folder = os.path.join(root, split)
        ensure_synthetic_coco(folder, n, *SYNTHETIC_SIZE, seed=split_seed)
        paths[split] = (os.path.join(folder, 'annotations.json'),
                        os.path.join(folder, 'images'))
    return paths


def dataset_paths(dataset, coco_root='data/coco',
                  synthetic_root='data/synthetic', synthetic_images=(240, 40),
                  seed=0, train=(None, None), val=(None, None),
                  splits=('train', 'val')):
    """{split: (json, images)} of ``dataset`` for ``splits`` ('train',
    'val'): 'synthetic' (generated under ``synthetic_root``,
    ``synthetic_images`` train and val images from ``seed``), 'coco2017'
    (under ``coco_root``) or 'coco-json' (``train`` and ``val`` as given);
    checked to exist."""
    if dataset == 'synthetic':
        paths = synthetic_paths(synthetic_root, *synthetic_images, seed)
    elif dataset == 'coco2017':
        paths = coco2017_paths(coco_root)
    else:
        paths = {'train': tuple(train), 'val': tuple(val)}
    return check_paths({s: paths[s] for s in splits})


def coco2017_paths(root):
    """COCO 2017 as ``getcoco.sh`` lays it out under ``root``."""
    return {s: (os.path.join(root, 'annotations',
                             'instances_{}2017.json'.format(s)),
                os.path.join(root, '{}2017'.format(s)))
            for s in ('train', 'val')}


def check_paths(paths):
    """Each split's annotation file and image folder must exist."""
    for split, (json_path, image_dir) in paths.items():
        if not json_path or not image_dir:
            raise SetupError('--dataset coco-json needs {}'.format(
                ' and '.join('--{0}-json, --{0}-images'.format(s)
                             for s in paths)))
        if not os.path.isfile(json_path):
            raise SetupError('{} annotations not found: {}'.format(
                split, json_path))
        if not os.path.isdir(image_dir):
            raise SetupError('{} image folder not found: {}'.format(
                split, image_dir))
    return paths


def write_demo(model, dataset, out, class_names,
               thresh=VISUALIZE['score_thresh']):
    """Draw the model's detections on the first annotated image, at
    ``demo.py``'s default score threshold (Detectron's 0.7), so that the
    same model looks the same in both."""
    index = next((i for i in range(len(dataset))
                  if len(dataset.get_example(i)[1])), 0)
    img = dataset.get_example(index)[0]
    model.use_thresholds(dict(VISUALIZE, score_thresh=thresh))
    with chainer.using_config('train', False):
        bbox, label, score, mask = (a[0] for a in model.predict([img]))
    path = os.path.join(out, 'demo.png')
    draw_detections(img, bbox, label, score, mask, class_names, path,
                    contour=True)
    model.use_thresholds('evaluate')
    return path


def check_layout(batchsize, subdivisions, gpu=-1, gpus=None,
                 communicator=None, evaluate=False):
    """--gpus, --gpu, --communicator, --batchsize and --subdivisions
    together make sense, or one line says why not."""
    if gpus and (gpu >= 0 or communicator):
        raise SetupError('--gpus takes every GPU of the process; give '
                         'neither --gpu nor --communicator with it')
    n_devices = len(gpus) if gpus else 1
    try:
        check_divisible(batchsize, n_devices, subdivisions)
    except ValueError:
        raise SetupError('--batchsize {} is not divisible by {} device(s) x '
                         '{} subdivisions'.format(batchsize, n_devices,
                                                  subdivisions)) from None
    if communicator and evaluate:
        raise SetupError('--evaluate runs in one process: drop '
                         '--communicator')


def check_devices(gpu=-1, gpus=None):
    """One line, before any work, when a GPU is asked for (``--gpu``,
    ``--gpus``) that CuPy or this machine cannot give."""
    if gpus:
        require_gpus(gpus, '--gpus {}'.format(','.join(map(str, gpus))))
    elif gpu >= 0:
        require_gpus([gpu], '--gpu {}'.format(gpu))


def build_updater(chain, optimizer, iterator, batcher, subdivisions=1,
                  gpu=-1, gpus=None, comm=None):
    """One device (``gpu``, -1 the CPU), several devices of one process
    (``gpus``) or one process of several (``comm``, each on ``gpu`` plus
    its rank in the node); all accumulate over ``subdivisions`` pieces."""
    if gpus:
        chainer.backends.cuda.get_device_from_id(gpus[0]).use()
        return MultiDeviceUpdater(iterator, optimizer, batcher,
                                  ['@cupy:{}'.format(g) for g in gpus],
                                  subdivisions)
    device = None
    if gpu >= 0:
        device = gpu + (comm.intra_rank if comm is not None else 0)
        chainer.backends.cuda.get_device_from_id(device).use()
        chain.to_gpu(device)
    if comm is not None:
        optimizer = multi_node_optimizer(comm, optimizer)
    return SubdivisionUpdater(iterator, optimizer, batcher, device,
                              subdivisions)


def prepare_out(out):
    """Create ``--out`` (or check it) before any work, and remove the
    temporary folders of a snapshot write a kill interrupted."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise SetupError('--out {} is a file, expected a folder'.format(out))
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise SetupError('--out {}: cannot create the folder ({})'.format(
            out, e.strerror or e)) from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise SetupError('--out {} is not writable'.format(out))
    for name in remove_partial_snapshots(out):
        print('removed {} (a snapshot write that was interrupted)'.format(
            os.path.join(out, name)))
