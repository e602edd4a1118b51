"""Objects that pickle as a crafted file would: unpickling them calls
whatever they name. Tests write them to check that a loader refuses such
a file without running anything."""
import os


class Reduce:
    """Pickles as ``func(*args)`` (then BUILD with ``state``): writes the
    globals and arguments a crafted file would."""

    def __init__(self, func, args, state=None):
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        if self.state is None:
            return self.func, self.args
        return self.func, self.args, self.state


def touch_payload(marker):
    """An object whose unpickling runs ``touch MARKER``: the file
    ``marker`` exists afterwards only if the loader ran code."""
    return Reduce(os.system, ('touch {}'.format(marker),))
