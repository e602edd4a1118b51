"""One training step of the tiny problem of ``tests/helpers/tiny_training.py``
with ChainerMN: every rank takes its shard of the batch, the multi-node
optimizer averages the gradients and steps, then each rank updates its
weight average (``--ema 0.5``). Rank 0 writes the averaged gradients, the
new parameters, the (rank-averaged) loss and every rank's weight average
to OUT.npz.

    mpiexec -n 2 python tests/helpers/mpi_one_step.py OUT.npz [N_IMAGES]

``tests/test_distributed.py`` compares that with one process on the whole
batch. Runs in float64 with every anchor and ROI sampled, so both sides
compute the same numbers up to rounding.
"""
import os
import sys

# The repository root, two folders up.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))

from utils import compat  # noqa: F401,E402  (before chainer)
import chainer  # noqa: E402
import numpy  # noqa: E402

from tests.helpers import tiny_training as tiny  # noqa: E402
from utils.training.distributed import (  # noqa: E402
    create_communicator, multi_node_optimizer)
from utils.training.ema import WeightAverage  # noqa: E402
from utils.training.subdivision_updater import SubdivisionUpdater  # noqa: E402


def main(out, n_images):
    comm = create_communicator('naive')
    batch = tiny.examples(n_images)
    import chainermn
    shard = list(chainermn.scatter_dataset(batch, comm))
    with chainer.using_config('dtype', numpy.float64):
        chain = tiny.chain(seed=comm.rank, **tiny.ALL_SAMPLES)
        opt = chainer.optimizers.MomentumSGD(0.01)
        opt.setup(chain)
        opt.add_hook(chainer.optimizer_hooks.WeightDecay(1e-4))
        opt = multi_node_optimizer(comm, opt)
        average = WeightAverage(chain, 0.5)  # of rank 0's broadcast weights
        updater = SubdivisionUpdater(tiny.OneBatch(shard), opt,
                                     tiny.batcher(), subdivisions=2)
        observation = tiny.update_once(updater, chain)
        average(None)
    loss = comm.allreduce_obj(observation['main/loss']) / comm.size
    grads, params = tiny.grads_and_params(chain)
    averages = comm.gather_obj({'ema{}/{}'.format(comm.rank, k): v
                                for k, v in average.averages.items()})
    if comm.rank == 0:
        numpy.savez(out, loss=loss, n_ranks=comm.size, shard=len(shard),
                    **{'grad/' + k: v for k, v in grads.items()},
                    **{'param/' + k: v for k, v in params.items()},
                    **{k: v for rank in averages for k, v in rank.items()})


if __name__ == '__main__':
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 4)
