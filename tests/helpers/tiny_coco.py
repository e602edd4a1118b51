"""Tiny COCO-format train and val sets on disk, and the ``train.py`` flags
that read them: the set-up every end-to-end training test starts from."""
from utils.data.synthetic_coco import make_synthetic_coco


def write_tiny_coco(root, n_train, n_val):
    """Synthetic shapes at 64 x 80, no empty image, seeds 0 (train) and 1
    (val), in ``root/train`` and ``root/val`` (pathlib). Returns
    ``coco_json_flags(root)``."""
    for split, n, seed in (('train', n_train, 0), ('val', n_val, 1)):
        make_synthetic_coco(str(root / split), n_images=n, height=64,
                            width=80, seed=seed, empty_fraction=0)
    return coco_json_flags(root)


def coco_json_flags(root, splits=('train', 'val')):
    """``--dataset coco-json`` and the JSON and image folder of each of
    ``splits`` under ``root``."""
    out = ['--dataset', 'coco-json']
    for split in splits:
        out += ['--{}-json'.format(split),
                str(root / split / 'annotations.json'),
                '--{}-images'.format(split), str(root / split / 'images')]
    return out
