"""What a snapshot may hold, checked before ``--resume`` loads it.

A snapshot is a file like any other: a hand-edited iterator position of
1e12 made ``--resume`` loop forever, other fields gave tracebacks deep in
chainer. Before the trainer reads a byte:

* every array the trainer serialises has the shape the trainer has
  (``trainer_shapes``): parameters, the optimizer's states (chainer would
  load a state of any shape into a fresh optimizer, so each is compared
  with its parameter's shape), random generator keys, scalars;
* the scalar fields are in range (``check_fields``): the iteration in
  ``[0, MAX_ITERATIONS]``, the iterator's position in ``[0, n)`` for a
  training set of ``n`` images and its epoch in ``[0, MAX_ITERATIONS]``,
  epoch details finite, every counter ``t`` in ``[0, MAX_ITERATIONS]``,
  random generator positions in ``[0, 624]`` (the Mersenne Twister's key
  length); the iterator's order a permutation of ``0..n-1``.
"""
import math

import chainer
import numpy

#: A sane bound on iterations, epochs and update counts.
MAX_ITERATIONS = 10 ** 9
MT_KEY = 624    # words of the Mersenne Twister state (rng_key)


class _ShapeRecorder(chainer.serializer.Serializer):
    """A serializer that records the shape of every array and scalar the
    trainer would save, without copying anything."""

    def __init__(self, shapes, path=''):
        self.shapes, self.path = shapes, path

    def __getitem__(self, key):
        return _ShapeRecorder(self.shapes, self.path + key.strip('/') + '/')

    def __call__(self, key, value):
        if value is not None and not isinstance(value, (str, bytes)):
            self.shapes[self.path + key] = tuple(numpy.shape(value))
        return value


def trainer_shapes(trainer):
    """``{snapshot key: shape}`` of what ``trainer`` serialises; each
    optimizer state (``updater/optimizer:NAME/P/v``) gets the shape of its
    parameter (``updater/model:NAME/P``), as chainer saves neither before
    the first update."""
    shapes = {}
    try:
        trainer.serialize(_ShapeRecorder(shapes))
    except RuntimeError:
        # The last entry, the elapsed time, exists only once the trainer
        # has run; every array is recorded by then.
        pass
    return shapes


def state_shapes(keys, shapes):
    """Shapes of the optimizer states among ``keys`` whose parameter is in
    ``shapes`` (every state but the step count ``t`` has its shape)."""
    out = {}
    for key in keys:
        head, sep, rest = key.partition('/optimizer:')
        if not sep or key.endswith('/t') or '/' not in rest:
            continue
        param = '{}/model:{}'.format(head, rest.rsplit('/', 1)[0])
        if param in shapes:
            out[key] = shapes[param]
    return out


def _scalar(npz, key):
    value = npz[key]
    return value.item() if value.shape == () else None


def check_fields(npz, n_train):
    """Raise ``ValueError`` naming the first field out of its range (module
    docstring); ``npz`` is the open snapshot, its shapes checked."""
    for key in npz.files:
        leaf = key.rsplit('/', 1)[-1]
        if leaf in ('iteration', 't', 'epoch', 'previous_iteration'):
            _in_range(key, _scalar(npz, key), 0, MAX_ITERATIONS)
        elif leaf == 'current_position':
            _in_range(key, _scalar(npz, key), 0, max(n_train - 1, 0))
        elif leaf == 'rng_pos':
            _in_range(key, _scalar(npz, key), 0, MT_KEY)
        elif 'epoch_detail' in leaf:
            value = _scalar(npz, key)
            if not (isinstance(value, float) and math.isfinite(value) and
                    -1 <= value <= MAX_ITERATIONS):
                raise ValueError('{} is {!r}, expected a finite epoch '
                                 'count'.format(key, value))
        elif leaf == 'order':
            order = npz[key]
            if order.size and not numpy.array_equal(
                    numpy.sort(order.ravel()), numpy.arange(order.size)):
                raise ValueError('{} is not an order of the {} training '
                                 'images'.format(key, order.size))


def _in_range(key, value, low, high):
    if isinstance(value, bool) or not isinstance(value, int) or \
            not low <= value <= high:
        raise ValueError('{} is {!r}, expected an integer in [{}, {}]'
                         .format(key, value, low, high))
