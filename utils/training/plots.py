"""chainer's ``PlotReport`` writing its figure whole or not at all.

chainer saves the plot straight onto ``loss.png``: a full disk leaves a
truncated PNG. ``AtomicPlotReport`` lets chainer save to a hidden
temporary name beside it (same extension, so matplotlib picks the same
format) and renames that onto the real name; a failed write removes the
temporary file and raises ``OSError`` for ``train.py`` to report. Its
extension name stays 'PlotReport' so that snapshots keep their keys.
"""
import contextlib
import os

from chainer.training import extensions


class AtomicPlotReport(extensions.PlotReport):
    """``extensions.PlotReport`` (same arguments) with atomic writes."""

    default_name = 'PlotReport'

    def __call__(self, trainer):
        name = self._file_name
        tmp = '.tmp-{}'.format(name)
        final = os.path.join(trainer.out, name)
        self._file_name = tmp
        try:
            super().__call__(trainer)
            if os.path.exists(os.path.join(trainer.out, tmp)):
                os.replace(os.path.join(trainer.out, tmp), final)
        finally:
            self._file_name = name
            with contextlib.suppress(OSError):
                os.remove(os.path.join(trainer.out, tmp))
