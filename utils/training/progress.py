"""Progress of a training run in plain lines, replacing chainer's
``ProgressBar``: that one redraws with terminal escape codes (a log
redirected to a file fills with them), prints nothing before iteration
10 and starts with an ``inf iters/sec ... 0:00:00`` estimate. This one
prints a line at once, one after the first iteration (which includes
the set-up), and one every ``interval`` iterations with the speed
measured since the previous line; once, after a few iterations, how long
the whole run will take and how many iterations fit a few budgets.
"""
import datetime
import sys
import time

from chainer import training

# Budgets the estimate proposes --iteration for, in seconds.
BUDGETS = ((20 * 60, '20 min'), (3600, '1 h'), (8 * 3600, '8 h'))


def _duration(seconds):
    return str(datetime.timedelta(seconds=int(round(seconds))))


def estimate_line(seconds_per_iteration, iteration, budgets=BUDGETS):
    """The run's length at ``seconds_per_iteration`` for ``iteration``
    iterations, and the ``--iteration`` that fits each budget."""
    seconds_per_iteration = max(seconds_per_iteration, 1e-6)
    fits = ', '.join('{} {}'.format(name, int(seconds //
                                               seconds_per_iteration))
                     for seconds, name in budgets)
    return ('estimate: {:.3g} s per iteration, {} iterations take about {}; '
            '--iteration that fits {}'.format(
                seconds_per_iteration, iteration,
                _duration(seconds_per_iteration * iteration), fits))


class PlainProgress(training.Extension):
    """Plain progress lines on ``out``.

    Args:
        total (int): iterations of the run.
        interval (int): iterations between lines.
        estimate_after (int): iterations after the first that time the
            estimate.
        out: a text stream (default: stdout).
        clock: seconds, monotonic.
    """

    trigger = 1, 'iteration'
    priority = training.PRIORITY_READER

    def __init__(self, total, interval=20, estimate_after=3, out=None,
                 clock=time.monotonic):
        self.total = total
        self.interval = interval
        self.estimate_after = estimate_after
        self.out = out
        self.clock = clock
        self._mark = None      # (iteration, time) of the last line
        self._first = None     # (iteration, time) after the first one
        self._estimated = False

    def _print(self, line):
        print(line, file=self.out or sys.stdout, flush=True)

    def initialize(self, trainer):
        it = trainer.updater.iteration
        self._mark = (it, self.clock())
        self._print('training: iterations {} to {}, a progress line every '
                    '{}'.format(it + 1, self.total, self.interval))

    def __call__(self, trainer):
        it, now = trainer.updater.iteration, self.clock()
        if self._mark is None:
            self._mark = (it - 1, now)
        if self._first is None:
            self._first = (it, now)
            self._print('iteration {} of {} done in {:.1f} s (with the '
                        'set-up)'.format(it, self.total, now - self._mark[1]))
            self._mark = (it, now)
            return
        done = it - self._first[0]
        if not self._estimated and (done >= self.estimate_after or
                                    it == self.total):
            self._estimated = True
            self._print(estimate_line((now - self._first[1]) / done,
                                      self.total))
        if it % self.interval == 0 or it == self.total:
            per = (now - self._mark[1]) / max(1, it - self._mark[0])
            self._print('iteration {} of {} ({:.0%}), {:.3g} s per '
                        'iteration, about {} left'.format(
                            it, self.total, it / self.total, per,
                            _duration(per * (self.total - it))))
            self._mark = (it, now)


class WithoutEscapes(object):
    """A text stream (default: the current stdout) that drops the
    ``ESC [ J`` chainer's ``PrintReport`` writes before each row to clear
    the ``ProgressBar``'s lines, which ``PlainProgress`` replaces; give it
    to ``PrintReport(out=...)``."""

    ERASE = '\033[J'

    def __init__(self, out=None):
        self.out = out

    def write(self, text):
        if text != self.ERASE:
            (self.out or sys.stdout).write(text)

    def flush(self):
        (self.out or sys.stdout).flush()
