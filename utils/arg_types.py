"""argparse types of the command-line scripts: a number outside its
documented range, or not finite, is argparse's one-line error before any
work, never a traceback or an allocation it sizes later.

The ranges are those of the help texts: wide enough for every real use,
narrow enough that no flag alone asks for more memory than a training
machine has (an image side of 100000 pixels, a 1000 x 1000 ROI).
"""
import argparse
import math

#: Largest image side (``--min-size``, ``--max-size``, ``--scales``,
#: ``--anchor-sizes``): four times COCO's 1333.
MAX_SIDE = 4096
#: Largest ROIAlign output side (``--roi-size``): Detectron uses 7 and 14.
#: ``utils/weights/meta_ranges.py`` bounds model files by these two too.
MAX_ROI_SIZE = 32
#: Largest count of iterations (and their intervals).
MAX_ITERATIONS = 10 ** 9
#: Largest number of threads, loader processes, images per batch.
MAX_WORKERS = 1024


def bounded_int(what, low, high):
    """An argparse type: an integer in [low, high]; the error names
    ``what`` ('a positive integer') and the range."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(
                'expected {}, got {!r} (range {}..{})'.format(
                    what, text, low, high))
        return value
    return parse


def bounded_float(what, low, high, closed=(True, True), unit=''):
    """An argparse type: a float in the interval from ``low`` to ``high``,
    each end included as ``closed`` says (NaN and infinities never are);
    the error names ``what``."""
    interval = '{}{}, {}{}'.format('[' if closed[0] else '(', low, high,
                                   ']' if closed[1] else ')')

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            value = float('nan')            # refused below, as 'nan' is
        above = value >= low if closed[0] else value > low
        below = value <= high if closed[1] else value < high
        if not (above and below and math.isfinite(value)):
            raise argparse.ArgumentTypeError('expected {} in {}{}, got '
                                             '{!r}'.format(what, interval,
                                                           unit, text))
        return value
    return parse


def floats(text, n):
    """A tuple of ``n`` (one of the counts in ``n``) finite floats written
    ``a,b,...``, else argparse's error."""
    try:
        values = tuple(float(v) for v in text.split(','))
    except ValueError:
        values = ()
    if len(values) not in n or not all(map(math.isfinite, values)):
        raise argparse.ArgumentTypeError(
            'expected {} comma-separated finite numbers, got {!r}'.format(
                ' or '.join(str(k) for k in n), text))
    return values


positive = bounded_int('a positive integer', 1, MAX_ITERATIONS)
side = bounded_int('a positive integer', 1, MAX_SIDE)
workers = bounded_int('a positive integer', 1, MAX_WORKERS)
seed = bounded_int('a seed', 0, 2 ** 32 - 1)
probability = bounded_float('a probability', 0, 1)
image_pixels = bounded_int('a pixel count', 1, 2 ** 40)
gpu_id = bounded_int('a GPU id', -1, MAX_WORKERS - 1)
