"""Frozen stages run without a graph: Detectron's ``StopGradient`` at the
end of the last stage ``TRAIN.FREEZE_AT`` freezes.

``disable_update`` alone (``utils/training/pretrained.py`` ``freeze``)
keeps the weights fixed but still builds the frozen stages' graph, so
every backward pass computes their weight gradients, and the input
gradient of the stem (a col2im over the whole image), only to drop them.
A frozen stage instead runs with backpropagation off, and its output is a
variable that asks for no gradient, so chainer asks the first trained
layer for its weights' gradients only, not its input's. The numbers of the
forward pass do not change; BatchNorm in a frozen stage still updates its
running averages (that happens in the forward pass, as before).
"""
import chainer


def forward_stage(stage, frozen, *args):
    """``stage(*args)``; when ``frozen``, without recording a graph and
    as a Variable with ``requires_grad=False``."""
    if not frozen:
        return stage(*args)
    with chainer.no_backprop_mode():
        y = stage(*args)
    return chainer.Variable(y.array, requires_grad=False)
