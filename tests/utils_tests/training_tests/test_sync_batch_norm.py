"""``--norm syncbn``: two ChainerMN ranks, each on half the batch, compute
what one process with the plain batch norm computes on the whole batch."""
import os
import subprocess
import sys

import chainer
import numpy

from tests.helpers.sync_bn_case import batch, running_averages, stage

# The repository root, three folders up.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))


def test_two_ranks_equal_one_process_on_the_whole_batch(tmp_path, mpiexec):
    out = str(tmp_path / 'syncbn.npz')
    proc = subprocess.run(
        [mpiexec, '-n', '2', sys.executable, 'tests/helpers/mpi_sync_bn.py',
         out], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    x, gy = batch()
    with chainer.using_config('dtype', numpy.float64):
        link = stage('bn')
    xv = chainer.Variable(x)
    y = link(xv)
    y.grad = gy
    y.backward()
    with numpy.load(out) as mpi:
        numpy.testing.assert_allclose(mpi['y'], y.array, rtol=1e-10,
                                      atol=1e-12)
        numpy.testing.assert_allclose(mpi['gx'], xv.grad, rtol=1e-10,
                                      atol=1e-12)
        params = dict(link.namedparams())
        assert {k[4:] for k in mpi.files if k.startswith('grad')} == \
            params.keys()
        for name, p in params.items():
            numpy.testing.assert_allclose(mpi['grad' + name], p.grad,
                                          rtol=1e-9, atol=1e-12,
                                          err_msg=name)
        stats = running_averages(link)
        assert len(stats) == 14  # 2 blocks x 3 convs and the projection
        for name, a in stats.items():
            numpy.testing.assert_allclose(mpi['stat' + name], a,
                                          rtol=1e-10, err_msg=name)


def test_per_shard_statistics_would_differ():
    # The case tells synchronised from per-rank statistics apart: the plain
    # batch norm on each half alone gives other outputs.
    x, _ = batch()
    with chainer.using_config('dtype', numpy.float64):
        whole = stage('bn')(x).array
        halves = numpy.concatenate([stage('bn')(x[:2]).array,
                                    stage('bn')(x[2:]).array])
    assert numpy.abs(whole - halves).max() > 1e-2
