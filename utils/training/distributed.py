"""Several processes with ChainerMN (``mpiexec -n N python train.py
--communicator NAME``).

Every process (rank) trains a copy of the model on its own shard of the
training set (``chainermn.scatter_dataset``), ``--batchsize`` images per
iteration; the multi-node optimizer averages the gradients of all ranks
before each step, so one step sees ``N x --batchsize`` images. The reported
losses are averaged over ranks too. Rank 0 alone evaluates and writes
(logs, plots, snapshots, the final model, the demo).

Resume: rank 0's snapshot holds the model and optimizer once (they are the
same on every rank) and, through ``RankStates``, the state that differs
between ranks: each rank's iterator (its shard's order and position), its
batcher's and its chain's random generators. ``--resume`` loads that one
file on every rank (so ``--out`` must be on a file system all ranks see,
like the data), and each rank takes back its own part.
"""
import sys

import chainer
from chainer import serializers, training

from utils import compat
from utils.ops.rng import serialize_random_state
from utils.training.errors import SetupError

COMMUNICATORS = ('naive', 'flat', 'non_cuda_aware', 'pure_nccl')


def create_communicator(name):
    """``chainermn.create_communicator(name)``, or a ``SetupError`` saying
    what is missing when MPI or mpi4py is not installed.

    It also installs ChainerMN's hook that turns an uncaught exception on
    any rank into ``MPI_Abort``, so a crash cannot leave the other ranks
    waiting for it forever.
    """
    try:
        import mpi4py.MPI  # noqa: F401  (loads the MPI library)
    except (ImportError, RuntimeError) as e:
        raise SetupError(
            '--communicator {} needs MPI and mpi4py ({}); install them with '
            '`bash setup.sh --mpi` and start train.py with mpiexec'.format(
                name, e))
    import chainermn  # after mpi4py loaded: it needs MPI
    compat.patch_chainermn()
    chainermn.global_except_hook.add_hook()
    return chainermn.create_communicator(name)


def sync_batch_norm(comm):
    """A norm factory for ``models.presets.build_mask_rcnn(norm=...)``:
    ``channels -> SyncBatchNormalization`` (``sync_batch_norm.py``) on
    ``comm``."""
    from utils.training.sync_batch_norm import (  # chainermn: after MPI
        SyncBatchNormalization)

    def make(channels):
        return SyncBatchNormalization(channels, comm)
    return make


def abort_other_ranks():
    """After a one-line error on this rank, stop the whole MPI job: the
    other ranks may be waiting for this one in a collective call. Does
    nothing outside a multi-process MPI run."""
    mpi = sys.modules.get('mpi4py.MPI')
    if (mpi is not None and mpi.Is_initialized() and
            not mpi.Is_finalized() and mpi.COMM_WORLD.Get_size() > 1):
        sys.stderr.flush()
        mpi.COMM_WORLD.Abort(1)


def on_root(comm, fn):
    """``fn()`` on rank 0 only; its result there (``None`` elsewhere). An
    exception it raises is raised on every rank, so none waits forever."""
    result = error = None
    if comm.rank == 0:
        try:
            result = fn()
        except Exception as e:
            error = e
    # chainermn sends an object from the root only, and never None.
    error, = comm.bcast_obj((error,) if comm.rank == 0 else None)
    if error is not None:
        raise error
    return result


def root_first(comm, fn):
    """``fn()`` on rank 0, then on every other rank once rank 0's has
    returned (``comm`` None: once, here); each rank's result. A download
    or a conversion into a shared cache then happens once, and the other
    ranks find the file there (a node that does not share the cache
    fetches its own copy, still atomically). Errors as ``on_root``."""
    if comm is None:
        return fn()
    result = on_root(comm, fn)
    return result if comm.rank == 0 else fn()


def scatter_datasets(comm, load, seed):
    """``load()`` -> (train, val, val_json, meta), run on rank 0.

    Returns each rank's shard of ``train`` (a shuffled, seeded split, the
    same on resume), ``val`` and ``val_json`` (rank 0 only, ``None``
    elsewhere) and ``meta`` (every rank).
    """
    import chainermn
    train, val, val_json, meta = on_root(comm, load) or (None,) * 4
    meta = comm.bcast_obj(meta)
    shard = chainermn.scatter_dataset(train, comm, shuffle=True, seed=seed)
    return shard, val, val_json, meta


def multi_node_optimizer(comm, optimizer):
    """Wrap a set-up ``optimizer`` in ChainerMN's multi-node optimizer.

    ChainerMN's optimizer broadcasts rank 0's parameters on its first
    ``update()`` *instead of* stepping. Broadcasting here and recording the
    parameter list (``is_changed``) makes every ``update()`` a step, so the
    first iteration is not lost and a resumed run steps like an
    uninterrupted one.
    """
    import chainermn
    target = optimizer.target
    multi = chainermn.create_multi_node_optimizer(optimizer, comm)
    comm.bcast_data(target)
    multi.is_changed(target)
    return multi


def average_observations(trainer, comm, keys):
    """Report the mean over ranks of each key, before anything reads it
    (the non-finite-loss guard included, so every rank stops together)."""
    from chainermn.extensions import ObservationAggregator
    for key in keys:
        trainer.extend(ObservationAggregator(comm, key),
                       priority=training.PRIORITY_WRITER + 10)


class SerializableRandomState:
    """Serialises a ``numpy.random.RandomState`` (for ``RankStates``)."""

    def __init__(self, rng):
        self.rng = rng

    def serialize(self, serializer):
        serialize_random_state(serializer, self.rng)


class RankStates(training.Extension):
    """Every rank's own state, kept in rank 0's snapshot.

    Give it the same trigger as the snapshot: it runs just before it,
    gathering each rank's ``targets`` (name -> object with ``serialize``)
    to rank 0, whose snapshot then holds them under ``rank<r>/``. Loading
    the snapshot on rank ``r`` restores ``targets`` from ``rank<r>/``
    (after the updater restored rank 0's, since the trainer loads its
    updater first).
    """

    priority = training.PRIORITY_READER  # above the snapshot's -100

    def __init__(self, comm, targets):
        self.comm = comm
        self.targets = targets
        self.states = None  # rank 0: one {key: array} per rank

    def __call__(self, trainer):
        ser = serializers.DictionarySerializer()
        for name, target in sorted(self.targets.items()):
            target.serialize(ser[name])
        self.states = self.comm.gather_obj(ser.target)

    def serialize(self, serializer):
        if isinstance(serializer, chainer.serializer.Serializer):
            for rank, state in enumerate(self.states or ()):
                for key, value in state.items():
                    serializer['rank{}'.format(rank)](key, value)
            serializer('n_ranks', len(self.states or ()))
            return
        n_ranks = int(serializer('n_ranks', None))
        if n_ranks != self.comm.size:
            raise SetupError(
                'the snapshot holds the states of {} processes; resume it '
                'with mpiexec -n {}'.format(n_ranks, n_ranks))
        mine = serializer['rank{}'.format(self.comm.rank)]
        for name, target in sorted(self.targets.items()):
            target.serialize(mine[name])
