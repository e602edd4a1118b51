"""Wiring helpers of ``train.py``: datasets, the updater for one or
several devices or processes, and the closing demo image (starting weights
and frozen stages: ``utils/pretrained.py``)."""
import os


class SetupError(ValueError):
    """A training set-up problem worth one line to the user."""


def dataset_paths(args):
    """{'train': (json, image folder), 'val': (...)} of ``args.dataset``,
    both checked to exist. Synthetic data is generated first, or again
    when the folder holds another size or seed than the one asked for."""
    if args.dataset == 'synthetic':
        from utils.synthetic_coco import ensure_synthetic_coco
        paths = {}
        n_train, n_val = args.synthetic_images
        for split, n, seed in (('train', n_train, args.seed),
                               ('val', n_val, args.seed + 1)):
            root = os.path.join(args.synthetic_root, split)
            ensure_synthetic_coco(root, n_images=n, height=192, width=256,
                                  seed=seed)
            paths[split] = (os.path.join(root, 'annotations.json'),
                            os.path.join(root, 'images'))
    elif args.dataset == 'coco2017':
        r = args.coco_root
        paths = {s: (os.path.join(r, 'annotations',
                                  'instances_{}2017.json'.format(s)),
                     os.path.join(r, '{}2017'.format(s)))
                 for s in ('train', 'val')}
    else:
        if not (args.train_json and args.train_images and args.val_json and
                args.val_images):
            raise SetupError('--dataset coco-json needs --train-json, '
                             '--train-images, --val-json and --val-images')
        paths = {'train': (args.train_json, args.train_images),
                 'val': (args.val_json, args.val_images)}
    for split, (json_path, image_dir) in paths.items():
        if not os.path.isfile(json_path):
            raise SetupError('{} annotations not found: {}'.format(
                split, json_path))
        if not os.path.isdir(image_dir):
            raise SetupError('{} image folder not found: {}'.format(
                split, image_dir))
    return paths


def write_demo(model, dataset, out, meta, thresh=0.5):
    """Draw the model's detections on the first annotated image."""
    import chainer
    from utils.vis import draw_detections
    index = next((i for i in range(len(dataset))
                  if len(dataset.get_example(i)[1])), 0)
    img = dataset.get_example(index)[0]
    model.use_preset({'score_thresh': thresh, 'nms_thresh': 0.3,
                      'limit': 100})
    with chainer.using_config('train', False):
        bbox, label, score, mask = (a[0] for a in model.predict([img]))
    path = os.path.join(out, 'demo.png')
    draw_detections(img, bbox, label, score, mask, meta['class_names'], path,
                    contour=True)
    model.use_preset('evaluate')
    return path


def setup_communicator(args):
    """Check --gpus, --batchsize and --subdivisions together; return the
    ChainerMN communicator of --communicator, else None."""
    if args.gpus and (args.gpu >= 0 or args.communicator):
        raise SetupError('--gpus takes every GPU of the process; give '
                         'neither --gpu nor --communicator with it')
    n_devices = len(args.gpus) if args.gpus else 1
    if args.subdivisions < 1 or args.batchsize % (n_devices *
                                                  args.subdivisions):
        raise SetupError('--batchsize {} is not divisible by {} device(s) x '
                         '{} subdivisions'.format(args.batchsize, n_devices,
                                                  args.subdivisions))
    if not args.communicator:
        return None
    if args.evaluate:
        raise SetupError('--evaluate runs in one process: drop '
                         '--communicator')
    from utils.distributed import create_communicator
    return create_communicator(args.communicator)


def build_updater(args, chain, optimizer, iterator, batcher, comm=None):
    """One device, several devices (--gpus) or one process of several
    (--communicator); all accumulate over --subdivisions pieces."""
    import chainer
    from utils.updater import SubdivisionUpdater
    if args.gpus:
        from utils.parallel_updater import MultiDeviceUpdater
        chainer.backends.cuda.get_device_from_id(args.gpus[0]).use()
        return MultiDeviceUpdater(iterator, optimizer, batcher,
                                  ['@cupy:{}'.format(g) for g in args.gpus],
                                  args.subdivisions)
    device = None
    if args.gpu >= 0:
        device = args.gpu + (comm.intra_rank if comm is not None else 0)
        chainer.backends.cuda.get_device_from_id(device).use()
        chain.to_gpu(device)
    if comm is not None:
        from utils.distributed import multi_node_optimizer
        optimizer = multi_node_optimizer(comm, optimizer)
    return SubdivisionUpdater(iterator, optimizer, batcher, device,
                              args.subdivisions)
