"""Region proposal network head (Detectron ``rpn_heads.py``, ``FPN.py``).

One head is shared by every level it is applied to (FPN shares level 2's
parameters with levels 3-6). Shape letters: N images, A anchors per cell,
H x W feature map.
"""
import chainer
import chainer.functions as F
from chainer import initializers
from chainer.backend import get_array_module

from models.conv import Convolution2D
from models.losses import smooth_l1


class RPNHead(chainer.Chain):
    """3x3 conv + ReLU, then per-anchor objectness logits and box deltas.

    Args:
        in_channels (int): channels of the features (1024 C4, 256 FPN).
        mid_channels (int): channels of the 3x3 conv (Detectron: same).
        n_anchors (int): A (15 C4, 3 FPN).

    Deltas are (dx, dy, dw, dh) per anchor, Detectron's channel order
    ``a * 4 + k``, for weights (1, 1, 1, 1).
    """

    def __init__(self, in_channels, mid_channels, n_anchors):
        super().__init__()
        init = initializers.Normal(0.01)  # Detectron: GaussianFill std 0.01
        with self.init_scope():
            self.conv = Convolution2D(in_channels, mid_channels, 3, 1, 1,
                                      initialW=init)
            self.cls_logits = Convolution2D(mid_channels, n_anchors, 1,
                                            initialW=init)
            self.bbox_pred = Convolution2D(mid_channels, 4 * n_anchors, 1,
                                           initialW=init)

    def forward(self, features):
        """Apply to each level.

        Args:
            features (list of Variable): (N, C, H_l, W_l) per level.

        Returns:
            (list, list): per level, objectness logits (N, H_l*W_l*A) and
            deltas (N, H_l*W_l*A, 4), rows ordered (H, W, A) like the anchors.
        """
        logits, deltas = [], []
        for x in features:
            h = self.conv(x, relu=True)
            n = x.shape[0]
            # (N, A, H, W) -> (N, H, W, A) -> (N, H*W*A)
            logits.append(F.reshape(
                F.transpose(self.cls_logits(h), (0, 2, 3, 1)), (n, -1)))
            # (N, A*4, H, W) -> (N, H, W, A*4) -> (N, H*W*A, 4)
            deltas.append(F.reshape(
                F.transpose(self.bbox_pred(h), (0, 2, 3, 1)), (n, -1, 4)))
        return logits, deltas


def rpn_loss(logits, deltas, label, loc, beta=1. / 9):
    """Detectron's RPN losses for a batch.

    Args:
        logits (Variable): (N, A) objectness logits of all anchors (levels
            concatenated).
        deltas (Variable): (N, A, 4) predicted (dx, dy, dw, dh).
        label (array): (N, A) int32, 1 fg, 0 bg, -1 ignored.
        loc (array): (N, A, 4) float32 target deltas.

    Returns:
        (Variable, Variable): box loss (smooth L1 with ``beta``, summed over
        positives) and objectness loss (sigmoid cross entropy), each divided
        by the number of sampled anchors of the image, then averaged over
        images.
    """
    xp = get_array_module(label)
    n = label.shape[0]
    count = xp.maximum((label >= 0).sum(axis=1), 1).astype(logits.dtype)
    # (N, A) -> per-element weight 1 / (count_i * N)
    w = (1. / (count * n))[:, None]
    cls = F.sigmoid_cross_entropy(logits, label, normalize=False,
                                  reduce='no')
    cls_loss = F.sum(cls * w.astype(logits.dtype))
    fg = (label == 1)[:, :, None].astype(deltas.dtype)
    loc_loss = F.sum(smooth_l1(deltas, loc.astype(deltas.dtype), beta) *
                     (fg * w[:, :, None]).astype(deltas.dtype))
    return loc_loss, cls_loss
