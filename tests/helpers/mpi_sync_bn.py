"""A ResNet stage with the synchronised batch norm, each rank on its shard of
a float64 batch: rank 0 writes the whole batch's outputs and input
gradients (gathered from every rank), the parameter gradients summed over
ranks and the running averages to OUT.npz.

    mpiexec -n 2 python tests/helpers/mpi_sync_bn.py OUT.npz

``tests/utils_tests/training_tests/test_sync_batch_norm.py`` compares that
with one process and the plain batch norm on the whole batch.
"""
import os
import sys

# The repository root, two folders up.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))

from utils import compat  # noqa: F401,E402  (before chainer)
import chainer  # noqa: E402
import numpy  # noqa: E402

from tests.helpers.sync_bn_case import (  # noqa: E402
    BATCH, batch, running_averages, stage)
from utils.training.distributed import (create_communicator,  # noqa: E402
                                        sync_batch_norm)


def main(out):
    comm = create_communicator('naive')
    x, gy = batch()
    shard = slice(comm.rank * BATCH // comm.size,
                  (comm.rank + 1) * BATCH // comm.size)
    with chainer.using_config('dtype', numpy.float64):
        link = stage(sync_batch_norm(comm))
    xv = chainer.Variable(x[shard])
    y = link(xv)
    y.grad = gy[shard]
    y.backward()
    ys = comm.gather_obj(y.array)
    gxs = comm.gather_obj(xv.grad)
    grads = {name: comm.allreduce_obj(p.grad) for name, p in
             sorted(link.namedparams())}
    if comm.rank == 0:
        stats = running_averages(link)
        numpy.savez(out, y=numpy.concatenate(ys), gx=numpy.concatenate(gxs),
                    **{'grad' + k: v for k, v in grads.items()},
                    **{'stat' + k: v for k, v in stats.items()})


if __name__ == '__main__':
    main(sys.argv[1])
