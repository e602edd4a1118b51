"""Values of the ``train.py`` flags left unset: Detectron's COCO schedule,
or the synthetic quickstart's (a light model trained from scratch on the
CPU)."""

LR_RULES = {'synthetic': '0.01 for the synthetic quickstart',
            'coco': 'linear scaling: 0.02 x batch / 16'}


def default_settings(synthetic, batchsize, iteration=None, pretrained=False):
    """The default of each run setting.

    Args:
        synthetic (bool): the synthetic quickstart, not COCO-format data.
        batchsize (int): images per step over all processes.
        iteration (int): the given ``--iteration`` (None: its default),
            which places the default ``lr_steps``.
        pretrained (bool): training starts from ``--pretrained`` weights.

    Returns:
        dict: ``arch``, ``iteration``, ``lr``, ``lr_steps``, ``warmup``,
        ``freeze_at``, ``snapshot``, ``validation`` and
        ``crop_min_visible``.
    """
    iteration = iteration or (500 if synthetic else 90000)
    return {
        'arch': 'fpn-tiny' if synthetic else 'fpn',
        'iteration': iteration,
        # Detectron's linear scaling rule: 0.02 for 16 images. The light
        # synthetic-data model (GroupNorm, from scratch) diverged at 0.02
        # and learns well at 0.01 with batch 2.
        'lr': 0.01 if synthetic else 0.02 * batchsize / 16,
        'lr_steps': [iteration * 2 // 3, iteration * 8 // 9],
        'warmup': 100 if synthetic else 500,
        'freeze_at': 2 if pretrained else 0,
        'snapshot': 250 if synthetic else 5000,
        'validation': 250 if synthetic else 10000,
        # An instance a --random-crop window keeps a quarter of still shows
        # enough to name it; COCO labels truncated objects at image borders.
        'crop_min_visible': 0.25,
    }
