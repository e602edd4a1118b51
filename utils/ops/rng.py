"""Saving and restoring a ``numpy.random.RandomState`` with chainer's
serializers, so that resumed training draws what an uninterrupted run
would."""
import chainer
import numpy


def serialize_random_state(serializer, rng):
    """Write ``rng``'s Mersenne-Twister state, or read it back into ``rng``."""
    _, key, pos, _, _ = rng.get_state()
    key = numpy.array(key, numpy.uint32)
    pos = numpy.array(pos, numpy.int64)
    serializer('rng_key', key)  # a deserializer fills them in place
    serializer('rng_pos', pos)
    if isinstance(serializer, chainer.serializer.Deserializer):
        rng.set_state(('MT19937', key, int(pos), 0, 0.0))
