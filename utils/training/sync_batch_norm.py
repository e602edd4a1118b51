"""Batch norm synchronised over ChainerMN processes (``--norm syncbn``).

In training its statistics are the mean and variance over the images of
every rank's batch, so N ranks of B images each normalise, and backpropagate,
exactly as one process with the plain batch norm ('bn') on the N x B images.
It saves the arrays of 'bn' (``gamma``, ``beta``, ``avg_mean``,
``avg_var``, ``N``), so its model loads and runs as 'bn' in one process.
"""
import chainer
import chainermn.links

from models.norm import BN_EPS


class SyncBatchNormalization(chainermn.links.MultiNodeBatchNormalization):
    """``chainermn.links.MultiNodeBatchNormalization`` with the running
    averages of ``L.BatchNormalization`` on the whole batch.

    Two differences of ChainerMN's link are undone: it starts the running
    variance at 0 (chainer at 1), and it scales the batch variance by
    m / (m - 1) with m the elements per channel of this rank alone, where
    the whole batch has N m. Like ChainerMN's own statistics, this assumes
    that every rank's batch has the same size.

    Args:
        channels (int): C.
        comm: the ChainerMN communicator.
    """

    def __init__(self, channels, comm):
        super().__init__(channels, comm, decay=0.9, eps=BN_EPS)
        self.avg_var[...] = 1

    def forward(self, x, finetune=False):
        if not chainer.config.train or finetune:
            return super().__call__(x, finetune)
        before = self.avg_var.copy()
        y = super().__call__(x)
        m = x.size // x.shape[1]
        total = m * self.comm.size
        # avg = d old + (1 - d) v m / (m - 1): swap the factor for the
        # whole batch's, as chainer's batch norm computes it.
        update = self.avg_var - self.decay * before
        self.avg_var[...] = self.decay * before + update * (
            _unbiased(total) / _unbiased(m))
        return y

    __call__ = forward


def _unbiased(m):
    # chainer.functions.batch_normalization's m / max(m - 1, 1)
    return m / max(m - 1., 1.)
