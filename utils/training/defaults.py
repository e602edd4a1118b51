"""Values of the ``train.py`` flags left unset: Detectron's COCO schedule,
or the synthetic quickstart's (a light model trained from scratch on the
CPU); from scratch (no ``--pretrained``), a norm that trains, gradient
clipping and a longer warm-up."""

LR_RULES = {'synthetic': '0.01 for the synthetic quickstart',
            'coco': 'linear scaling: 0.02 x batch / 16'}

# From scratch the backbone's norm must train: the presets' frozen affine
# holds scale 1 and bias 0 until converted weights fill it, which leaves a
# random R-50 unnormalised (its activations grow with depth and the loss
# turns NaN within tens of iterations). GroupNorm, as Detectron's and
# detectron2's scratch GN baselines (and as fpn-tiny and mobilenetv1-fpn).
SCRATCH_NORM = 'gn'
# Largest global L2 norm of the gradients from scratch (--clip-grad). A
# random R-50-FPN (GroupNorm, 192 px, batch 2, lr 0.0025) measured 112 at
# the first iteration, then 5-18; fpn-tiny 25, then 1-16: the threshold
# cuts the first spikes and leaves the usual steps alone.
SCRATCH_CLIP_GRAD = 20.
# detectron2's SOLVER.WARMUP_ITERS; Detectron's 500 with --pretrained.
SCRATCH_WARMUP = 1000
# The default warm-up is at most this share of --iteration, so that a
# short run reaches its rate (the step drops sit at 2/3 and 8/9).
WARMUP_SHARE = 5


def default_settings(synthetic, batchsize, iteration=None, pretrained=False):
    """The default of each run setting.

    Args:
        synthetic (bool): the synthetic quickstart, not COCO-format data.
        batchsize (int): images per step over all processes.
        iteration (int): the given ``--iteration`` (None: its default),
            which places the default ``lr_steps`` and bounds ``warmup``.
        pretrained (bool): training starts from ``--pretrained`` weights.

    Returns:
        dict: ``arch``, ``iteration``, ``lr``, ``lr_steps``, ``warmup``,
        ``freeze_at``, ``snapshot``, ``validation``,
        ``crop_min_visible``, ``norm`` (None: the preset's or the
        weights') and ``clip_grad`` (0: off).
    """
    iteration = iteration or (500 if synthetic else 90000)
    warmup = 100 if synthetic else 500 if pretrained else SCRATCH_WARMUP
    return {
        'arch': 'fpn-tiny' if synthetic else 'fpn',
        'iteration': iteration,
        # Detectron's linear scaling rule: 0.02 for 16 images. The light
        # synthetic-data model (GroupNorm, from scratch) diverged at 0.02
        # and learns well at 0.01 with batch 2.
        'lr': 0.01 if synthetic else 0.02 * batchsize / 16,
        'lr_steps': [iteration * 2 // 3, iteration * 8 // 9],
        'warmup': min(warmup, max(1, iteration // WARMUP_SHARE)),
        'freeze_at': 2 if pretrained else 0,
        'snapshot': 250 if synthetic else 5000,
        'validation': 250 if synthetic else 10000,
        # An instance a --random-crop window keeps a quarter of still shows
        # enough to name it; COCO labels truncated objects at image borders.
        'crop_min_visible': 0.25,
        'norm': None if pretrained else SCRATCH_NORM,
        # The quickstart's measured recipe runs unclipped (its largest
        # gradient norm, 25, comes at the first iteration).
        'clip_grad': 0. if pretrained or synthetic else SCRATCH_CLIP_GRAD,
    }
