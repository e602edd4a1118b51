"""A shuffling order sampler whose next order depends only on the seed and
the current order, so a resumed iterator (which saves its order) shuffles
the following epochs exactly as an uninterrupted one."""
import zlib

import numpy


class SeededShuffleOrderSampler:
    def __init__(self, seed=0):
        self.seed = seed

    def __call__(self, current_order, current_position):
        if current_order is None:
            raise ValueError('SeededShuffleOrderSampler needs the dataset '
                             'size; call it with an order')
        key = zlib.crc32(numpy.asarray(current_order, numpy.int64).tobytes())
        rng = numpy.random.RandomState((self.seed * 1000003 + key) % 2 ** 32)
        return rng.permutation(len(current_order))
