"""Every bottleneck convolution of a ResNet body, in Detectron's order,
written once for the Detectron, detectron2 and MSRA name and shape tables.

The widths come from the spec (ResNet-50/101: res2..res5 output 256, 512,
1024, 2048 channels, bottleneck a quarter of that, stem 64), not from
``models/resnet.py``, so the shape tables still check the model.
"""
from models.resnet import DEPTHS


def bottleneck_convs(depth, stages=(2, 3, 4, 5)):
    """Yield ``(k, i, branch, (out, in, ksize))`` for every convolution of
    block i of stage res``k``: branch2a (1x1), branch2b (3x3), branch2c
    (1x1), and branch1 (the 1x1 projection) on block 0 only."""
    for k in stages:
        out = 256 * 2 ** (k - 2)
        mid, cin = out // 4, 64 if k == 2 else out // 2
        for i in range(DEPTHS[depth][k - 2]):
            yield k, i, 'branch2a', (mid, cin if i == 0 else out, 1)
            yield k, i, 'branch2b', (mid, mid, 3)
            yield k, i, 'branch2c', (out, mid, 1)
            if i == 0:
                yield k, i, 'branch1', (out, cin, 1)
