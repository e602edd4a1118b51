"""ChainerMN: two MPI ranks make the same step as one process on the union
of their batches; per-rank states survive a snapshot; a missing MPI is a
one-line error."""
import os
import subprocess
import sys
import textwrap

import chainer
import numpy
import pytest
from chainer import serializers

from tests.helpers import tiny_training as tiny
from utils.training.distributed import (RankStates, SerializableRandomState,
                                        on_root, root_first)
from utils.data.order_sampler import SeededShuffleOrderSampler
from utils.training.setup import SetupError
from utils.training.subdivision_updater import SubdivisionUpdater

# The repository root, three folders up.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))


def test_two_ranks_equal_one_process_on_the_union(tmp_path, mpiexec):
    out = str(tmp_path / 'mpi.npz')
    proc = subprocess.run(
        [mpiexec, '-n', '2', sys.executable, 'tests/helpers/mpi_one_step.py',
         out, '4'], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    # The reference: one process, the four images in one piece.
    with chainer.using_config('dtype', numpy.float64):
        chain = tiny.chain(**tiny.ALL_SAMPLES)
        start = {n: p.array.copy() for n, p in chain.namedparams()}
        opt = chainer.optimizers.MomentumSGD(0.01)
        opt.setup(chain)
        opt.add_hook(chainer.optimizer_hooks.WeightDecay(1e-4))
        updater = SubdivisionUpdater(tiny.OneBatch(tiny.examples(4)), opt,
                                     tiny.batcher())
        observation = tiny.update_once(updater, chain)
    grads, params = tiny.grads_and_params(chain)
    with numpy.load(out) as mpi:
        assert int(mpi['n_ranks']) == 2 and int(mpi['shard']) == 2
        assert mpi['loss'] == pytest.approx(observation['main/loss'],
                                            rel=1e-10)
        assert {k[5:] for k in mpi.files if k.startswith('grad/')} == \
            grads.keys()
        assert len(grads) > 20
        for name in grads:
            assert mpi['param/' + name].dtype == numpy.float64
            numpy.testing.assert_allclose(mpi['grad/' + name], grads[name],
                                          rtol=1e-10, atol=1e-13,
                                          err_msg=name)
            numpy.testing.assert_allclose(mpi['param/' + name],
                                          params[name], rtol=1e-10,
                                          atol=1e-13, err_msg=name)
            # Every rank holds the same weight average (--ema 0.5), that
            # of one process: a_1 = (a_0 + p_1) / 2.
            numpy.testing.assert_array_equal(mpi['ema1/' + name],
                                             mpi['ema0/' + name])
            numpy.testing.assert_allclose(
                mpi['ema0/' + name], 0.5 * start[name] + 0.5 * params[name],
                rtol=1e-10, atol=1e-13, err_msg=name)


class _FakeComm:
    """What RankStates and on_root use of a communicator, for one rank;
    ``others`` are the objects the other ranks would gather."""

    def __init__(self, rank, size, others=()):
        self.rank, self.size, self.others = rank, size, list(others)

    def gather_obj(self, obj):
        return [obj] + self.others if self.rank == 0 else None

    def bcast_obj(self, obj):
        return obj


def _targets(rank, steps):
    """A rank's iterator and generator (seeded by rank, as in train.py),
    ``steps`` iterations into training."""
    it = chainer.iterators.SerialIterator(
        list(range(10)), 3, order_sampler=SeededShuffleOrderSampler(rank))
    rng = numpy.random.RandomState(rank)
    for _ in range(steps):
        it.next()
        rng.rand(steps)
    return {'iterator': it, 'sampling': SerializableRandomState(rng)}


def _gathered(targets):
    ser = serializers.DictionarySerializer()
    for name, target in sorted(targets.items()):
        target.serialize(ser[name])
    return ser.target


def test_rank_states_restore_each_ranks_own_state(tmp_path):
    rank0, rank1 = _targets(0, 2), _targets(1, 3)
    saver = RankStates(_FakeComm(0, 2, [_gathered(rank1)]), rank0)
    saver(None)  # gathers at the snapshot's iteration
    path = str(tmp_path / 'states.npz')
    serializers.save_npz(path, saver)
    # Rank 1 restarts and takes back its own part.
    fresh = _targets(1, 0)
    serializers.load_npz(path, RankStates(_FakeComm(1, 2), fresh))
    for _ in range(5):  # the next batches, across an epoch boundary
        assert fresh['iterator'].next() == rank1['iterator'].next()
    assert fresh['sampling'].rng.rand() == rank1['sampling'].rng.rand()
    # A snapshot of two processes does not resume three.
    with pytest.raises(SetupError, match='mpiexec -n 2'):
        serializers.load_npz(path, RankStates(_FakeComm(1, 3),
                                              _targets(1, 0)))


def test_on_root_raises_the_roots_error_everywhere():
    def fail():
        raise SetupError('no data')
    with pytest.raises(SetupError, match='no data'):
        on_root(_FakeComm(0, 2), fail)
    assert on_root(_FakeComm(0, 2), lambda: 5) == 5


class _OrderedComm(_FakeComm):
    """A rank whose broadcast is logged in ``events`` and, off the root,
    returns what rank 0 sent (no error)."""

    def __init__(self, rank, events):
        super().__init__(rank, 2)
        self.events = events

    def bcast_obj(self, obj):
        self.events.append('bcast')
        return obj if self.rank == 0 else (None,)


@pytest.mark.parametrize('rank,expected', [
    (0, ['fetch', 'bcast']),      # rank 0 fetches, then releases the rest
    (1, ['bcast', 'fetch']),      # the others wait for it, then read
])
def test_root_first_runs_on_rank_0_before_the_others(rank, expected):
    events = []
    got = root_first(_OrderedComm(rank, events),
                     lambda: events.append('fetch') or rank)
    assert (got, events) == (rank, expected)
    assert root_first(None, lambda: 7) == 7


def test_root_first_raises_the_roots_error_without_running_again():
    events = []

    def fail():
        events.append('fetch')
        raise SetupError('offline')
    with pytest.raises(SetupError, match='offline'):
        root_first(_OrderedComm(0, events), fail)
    assert events == ['fetch', 'bcast']


def test_missing_mpi_is_a_one_line_error(tmp_path):
    # mpi4py made unimportable, as on a machine without MPI.
    code = textwrap.dedent('''
        import importlib.abc, runpy, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split('.')[0] == 'mpi4py':
                    raise ModuleNotFoundError("No module named 'mpi4py'")
        sys.meta_path.insert(0, Block())
        sys.argv = ['train.py', '--communicator', 'naive', '--out', OUT]
        runpy.run_path('train.py', run_name='__main__')
    ''').replace('OUT', repr(str(tmp_path / 'out')))
    proc = subprocess.run([sys.executable, '-c', code], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "train.py: error: --communicator naive needs MPI and mpi4py (No "
        "module named 'mpi4py'); install them with `bash setup.sh --mpi` "
        "and start train.py with mpiexec"]
    assert not os.path.exists(tmp_path / 'out')
