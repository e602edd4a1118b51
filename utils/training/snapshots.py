"""Trainer snapshots that are safe to share and to resume.

* ``load_snapshot`` reads a snapshot with ``allow_pickle=False``: a
  snapshot holds numeric and string arrays only, so a pickle or an object
  array in a file someone sent you is refused, never run.
* ``SoundSnapshot`` writes ``snapshot_iter_N`` only while every trained
  parameter is finite and below ``limit`` in magnitude, so the snapshot a
  diverged run names as its restart point really restarts it.
* ``remove_partial_snapshots`` deletes the ``tmpsnapshot_*`` folders a
  kill during a write leaves behind (chainer writes into one, then moves
  the file out).
* A snapshot that cannot be written (a full disk) stops training with one
  ``OutputError`` line naming the last good snapshot; chainer's temporary
  folder goes, and the earlier snapshots stay as they were.
"""
import math
import os
import re
import shutil

import chainer
import numpy
from chainer import training
from chainer.training import extensions

from utils.atomic_write import OutputError, atomic_write
from utils.training.snapshot_checks import (
    check_fields, state_shapes, trainer_shapes)
from utils.weights.model_io import open_npz
from utils.weights.npz_members import (
    ShapeMismatch, check_shapes, member_headers)

SNAPSHOT_NAME = 'snapshot_iter_{.updater.iteration}'
SNAPSHOT_FILE = re.compile(r'^snapshot_iter_(\d+)$')
PARTIAL = re.compile(r'^tmpsnapshot_iter_\d+')


class SnapshotError(ValueError):
    """A snapshot that cannot resume this training."""


class TrainingDiverged(RuntimeError):
    """The loss or the weights became non-finite or exploded."""


def load_snapshot(path, trainer, n_train):
    """Restore ``trainer`` from the snapshot ``path``.

    Args:
        path (str): a ``snapshot_iter_N`` file of ``train.py``.
        trainer (chainer.training.Trainer): built exactly as the run that
            wrote it (arch, dtype, devices, processes).
        n_train (int): this process's training set size; a snapshot of
            another dataset would resume with a wrong order.

    Every array's declared shape and every counter's range are checked
    before the trainer reads any (``utils.training.snapshot_checks``).
    """
    with open_npz(path, 'trainer snapshot', SnapshotError) as npz:
        _check_is_snapshot(npz, path)
        order = [k for k in npz.files if k.endswith('iterator:main/order')]
        _check_shapes(npz, path, trainer, order)
        if order and npz[order[0]].size not in (0, n_train):
            raise SnapshotError(
                '{} was written for a training set of {} images, this one '
                'has {}'.format(path, npz[order[0]].size, n_train))
        try:
            check_fields(npz, n_train)
        except ValueError as e:
            raise SnapshotError('{}: {}'.format(path, e)) from None
        _check_no_average_dropped(npz, path, trainer)
        try:
            chainer.serializers.NpzDeserializer(npz).load(trainer)
        except KeyError as e:
            missing = e.args[0].split(' is not a ')[0] if e.args else e
            raise SnapshotError(
                '{} does not fit this training set-up: {} is missing (resume '
                'with the --arch, --dtype, --ema, --gpus and number of '
                'processes that wrote it)'.format(path, missing)) from None
        except (ValueError, TypeError) as e:
            if 'allow_pickle' in str(e):
                raise
            raise SnapshotError('{} does not fit this training set-up: {}'
                                .format(path, str(e).splitlines()[0]))


def _check_shapes(npz, path, trainer, order):
    """Every array as the trainer has it (the order is checked apart:
    another dataset's gets its own message)."""
    expected = trainer_shapes(trainer)
    expected.update(state_shapes(npz.files, expected))
    for key in order:
        expected.pop(key, None)
    try:
        check_shapes(member_headers(npz.zip, path), expected)
    except ShapeMismatch as e:
        raise SnapshotError('{} does not fit this training set-up: {}'
                            .format(path, e)) from None


def _check_no_average_dropped(npz, path, trainer):
    # Loading ignores snapshot entries the trainer does not ask for: a run
    # without --ema would silently drop the average the snapshot holds.
    key = 'extensions/ema/decay'
    if key not in npz.files:
        return
    try:
        trainer.get_extension('ema')
    except ValueError:
        raise SnapshotError(
            '{} holds a weight average (--ema {}): resume with that --ema '
            'to continue it'.format(path, float(npz[key]))) from None


def check_snapshot(path):
    """Refuse early (before data and model are built) a ``--resume`` file
    that is not a readable trainer snapshot."""
    with open_npz(path, 'trainer snapshot', SnapshotError) as npz:
        _check_is_snapshot(npz, path)


def _check_is_snapshot(npz, path):
    if 'updater/iteration' not in npz.files:
        raise SnapshotError(
            '{} is not a trainer snapshot (no updater state){}'.format(
                path, '; it is a model file: give it to --pretrained'
                if '_meta' in npz.files else ''))


def latest_snapshot(out_dir, before=None):
    """Path of the highest ``snapshot_iter_N`` in ``out_dir`` with
    ``N <= before`` (any N when None), or None."""
    if not os.path.isdir(out_dir):
        return None
    found = [(int(m.group(1)), name) for name in os.listdir(out_dir)
             for m in [SNAPSHOT_FILE.match(name)] if m]
    found = [f for f in found if before is None or f[0] <= before]
    return os.path.join(out_dir, max(found)[1]) if found else None


def restart_hint(out_dir, iteration):
    """The advice a diverged run ends with: which snapshot to resume."""
    last = latest_snapshot(out_dir, iteration)
    if last is None:
        return 'no snapshot was written; start again with a lower --lr'
    return 'resume from {} with a lower --lr (or check the data)'.format(
        last)


def remove_partial_snapshots(out_dir):
    """Delete the temporary folders of interrupted snapshot writes;
    returns their names."""
    if not os.path.isdir(out_dir):
        return []
    partial = sorted(n for n in os.listdir(out_dir) if PARTIAL.match(n) and
                     os.path.isdir(os.path.join(out_dir, n)))
    for name in partial:
        shutil.rmtree(os.path.join(out_dir, name), ignore_errors=True)
    return partial


def unsound_parameter(link, limit):
    """(name, max |value|) of the first trained parameter of ``link`` that
    is not finite or exceeds ``limit`` in magnitude, else None. Frozen
    parameters are skipped: they cannot diverge."""
    for name, param in sorted(link.namedparams()):
        rule = param.update_rule
        if param.array is None or rule is None or not rule.enabled:
            continue
        peak = float(abs(param.array).max()) if param.size else 0.
        if not numpy.isfinite(peak) or peak > limit:
            return name, peak
    return None


class SoundSnapshot(training.Extension):
    """``extensions.snapshot`` that refuses to write exploded weights.

    Args:
        link (chainer.Link): the trained model (or chain).
        advice: ``advice(out, iteration)``, the text that ends the error
            (default: ``restart_hint``; ``train.py``:
            ``divergence.DivergenceAdvice``).
        limit (float): largest magnitude a trained weight may reach. A
            healthy Mask R-CNN stays orders of magnitude below 1e5; a run
            that diverges passes it (weights near 2e6 were seen) before the
            loss turns NaN.
    """

    priority = -100  # after every writer, as chainer's snapshot

    def __init__(self, link, limit=1e5, advice=restart_hint):
        self.link = link
        self.limit = limit
        self.advice = advice
        self._write = extensions.snapshot(filename=SNAPSHOT_NAME,
                                          savefun=save_npz_synced)

    def __call__(self, trainer):
        bad = unsound_parameter(self.link, self.limit)
        if bad is not None:
            it = trainer.updater.iteration
            raise TrainingDiverged(
                'parameter {} reached {:.3g} at iteration {}: no snapshot '
                'written; {}'.format(bad[0], bad[1], it,
                                     self.advice(trainer.out, it)))
        try:
            self._write(trainer)
        except (OSError, OutputError) as e:
            raise OutputError(write_failure(trainer, 'snapshot', e)) \
                from None


def save_npz_synced(path, target):
    """chainer's ``save_npz`` (compressed), flushed to the disk before
    chainer moves the file out of its temporary folder."""
    with atomic_write(path, 'wb', 'snapshot') as f:
        chainer.serializers.save_npz(f, target)


def write_failure(trainer, what, error):
    """The line of a training stopped by an output that could not be
    written (``error``: an ``OSError`` or ``OutputError``): what failed,
    at which iteration, and the snapshot to resume from."""
    it = trainer.updater.iteration
    why = getattr(error, 'strerror', None) or str(error)
    last = latest_snapshot(trainer.out, it - 1)
    return ('cannot write the {} of iteration {} into {} ({}): training '
            'stopped; {}'.format(
                what, it, trainer.out, why,
                'resume with --resume {} once there is space'.format(last)
                if last else 'no snapshot was written yet'))


class NonFiniteLossGuard(training.Extension):
    """Stop with a clear message when ``key`` is not finite.

    It runs before every other extension of the iteration, so no snapshot
    of the broken weights is written; the message names the snapshot to
    resume; ``advice`` is ``SoundSnapshot``'s.
    """

    trigger = 1, 'iteration'
    priority = training.PRIORITY_WRITER + 1

    def __init__(self, key='main/loss', advice=restart_hint):
        self.key = key
        self.advice = advice

    def __call__(self, trainer):
        value = trainer.observation.get(self.key)
        value = getattr(value, 'array', value)  # a Variable or a float
        if value is not None and not math.isfinite(float(value)):
            it = trainer.updater.iteration
            raise TrainingDiverged('{} is {} at iteration {}: training '
                                   'stopped; {}'.format(
                                       self.key, float(value), it,
                                       self.advice(trainer.out, it)))


class EvaluationFailed(RuntimeError):
    """The evaluation raised; ``kept`` names what was written anyway."""

    def __init__(self, iteration, error, kept=None):
        super().__init__('evaluation at iteration {} failed ({}: {}){}'.format(
            iteration, type(error).__name__,
            str(error).splitlines()[0] if str(error) else '',
            '; written: {}'.format(kept) if kept else ''))
        self.iteration = iteration
        self.error = error


class HoldFailure(training.Extension):
    """Runs an extension (the evaluator) so that an exception it raises
    is held, and raised by ``raise_held``, an extension that runs after
    the snapshot of the same iteration: a failing evaluation never costs a
    snapshot.

    Extend this with the evaluator's trigger, and ``self.raise_held``
    every iteration at a priority below the snapshot's.
    """

    priority = training.PRIORITY_WRITER

    def __init__(self, extension):
        self.extension = extension
        self.held = None
        self.raise_held = _RaiseHeld(self)

    def __call__(self, trainer):
        try:
            return self.extension(trainer)
        except Exception as e:  # anything: the snapshot comes first
            self.held = EvaluationFailed(trainer.updater.iteration, e)


class _RaiseHeld(training.Extension):
    trigger = 1, 'iteration'
    priority = -200  # below the snapshot's -100

    def __init__(self, hold):
        self.hold = hold

    def __call__(self, trainer):
        if self.hold.held is not None:
            error, self.hold.held = self.hold.held, None
            raise error
