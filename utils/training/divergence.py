"""What a diverged run (NaN loss, exploding weights) says to do next: the
likely cause, from the run's settings, and the command to run instead.

Causes, checked in this order:

1. the frozen 'affine' norm without ``--pretrained`` weights: it holds
   scale 1 and bias 0, so nothing normalises a random backbone; a lower
   rate does not fix that (``--norm gn`` does);
2. no gradient clipping: one large gradient (they reach 100 in the first
   iterations of a random R-50-FPN) throws the weights off;
3. otherwise the rate: a quarter of it, with a warm-up twice as long.

A lower rate resumes from the last sound snapshot; a new norm changes
the model, so that command starts again.
"""
import dataclasses
import shlex

from utils.training.defaults import SCRATCH_CLIP_GRAD, SCRATCH_NORM
from utils.training.snapshots import latest_snapshot


def with_flags(argv, changes):
    """``argv`` with each flag of ``changes`` (flag -> value; None drops
    it) replacing its ``--flag VALUE`` / ``--flag=VALUE`` occurrences, the
    new ones appended in order."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        flag = arg.split('=', 1)[0]
        if flag in changes:
            skip = '=' not in arg
            continue
        out.append(arg)
    for flag, value in changes.items():
        if value is not None:
            out += [flag, str(value)]
    return out


@dataclasses.dataclass(frozen=True)
class DivergenceAdvice:
    """The settings a diverged run ran with, and its command line.

    ``argv`` is ``train.py``'s arguments as given; ``lr``, ``norm`` (the
    backbone's, resolved), ``pretrained`` (bool), ``clip_grad`` (0: off)
    and ``warmup`` are the values in effect.
    """
    argv: tuple
    lr: float
    norm: str
    pretrained: bool
    clip_grad: float
    warmup: int
    script: str = 'python train.py'

    def cause_and_changes(self):
        """(the likely cause, flag -> new value)."""
        if self.norm == 'affine' and not self.pretrained:
            return ('the backbone norm is the frozen affine (scale 1, bias '
                    '0) and no --pretrained weights fill it, so nothing '
                    'normalises the random backbone; a lower --lr does not '
                    'fix that: train a norm', {'--norm': SCRATCH_NORM,
                                               '--resume': None})
        if not self.clip_grad:
            return ('the gradients were not clipped, and one large gradient '
                    'throws the weights off', {
                        '--clip-grad': SCRATCH_CLIP_GRAD})
        lr = float('{:.2g}'.format(self.lr / 4))
        return ('the learning rate {:g} is too high for this model and data '
                'even with --clip-grad {:g}'.format(self.lr, self.clip_grad),
                {'--lr': lr, '--warmup': max(1, 2 * self.warmup)})

    def __call__(self, out, iteration):
        """The advice, one line, for a run writing to ``out`` that diverged
        at ``iteration``."""
        cause, changes = self.cause_and_changes()
        snapshot = latest_snapshot(out, iteration)
        if snapshot and '--norm' not in changes:
            changes['--resume'] = snapshot
        command = with_flags(list(self.argv), changes)
        return '{}; next: {} {}'.format(cause, self.script,
                                         shlex.join(command))
