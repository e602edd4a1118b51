"""The lines ``train.py`` prints before training, about the settings in
effect: the learning rates the schedule really reaches (a warm-up longer
than the run, or steps inside it, keep the rate below ``--lr``) and the
image and anchor sizes of the preset."""


def schedule_lines(schedule):
    """Lines describing ``schedule`` (a ``trainer.Schedule``): its rates
    as the trainer will set them, then warnings where the base rate is
    never reached or a step falls inside the warm-up."""
    lr_at = schedule.lr_extension().lr_at
    rates = [lr_at(i) for i in range(schedule.iteration)]
    peak = max(range(schedule.iteration), key=rates.__getitem__)
    parts = ['{} iterations at lr {:.3g}'.format(schedule.iteration,
                                                 schedule.lr)]
    if schedule.warmup > 0:
        parts.append('warm-up over {} from {:.3g}'.format(schedule.warmup,
                                                          rates[0]))
    if schedule.lr_schedule == 'cosine':
        parts.append('cosine decay to 0 at {}'.format(schedule.iteration))
    else:
        steps = [s for s in schedule.lr_steps if s < schedule.iteration]
        parts += ['x{:g} at {} (to {:.3g})'.format(
            0.1 ** steps.count(s), s, lr_at(s)) for s in sorted(set(steps))]
    parts.append('highest rate {:.3g} at iteration {}'.format(
        rates[peak], peak + 1))
    lines = ['schedule: ' + '; '.join(parts)]
    inside = [s for s in schedule.lr_steps if s < schedule.warmup]
    if inside and schedule.lr_schedule == 'step':
        lines.append('warning: --lr-steps {} fall inside the {}-iteration '
                     'warm-up'.format(' '.join(map(str, inside)),
                                      schedule.warmup))
    # The cosine decays from iteration 0, under the warm-up too
    # (detectron2's WarmupCosineLR), so its peak is always a little below
    # --lr: warned only when the warm-up costs more than a fifth.
    cosine = schedule.lr_schedule == 'cosine'
    if rates[peak] < (0.8 if cosine else 0.99) * schedule.lr:
        lines.append('warning: the rate never reaches --lr {:.3g} (at most '
                     '{:.3g}): shorten --warmup {}{}'.format(
                         schedule.lr, rates[peak], schedule.warmup,
                         '' if cosine else ' or move --lr-steps later'))
    return lines


def sizes_line(preset, scales=None):
    """The image and anchor sizes of ``preset`` (a ``Preset``), training
    at ``scales`` (None: its ``min_size``)."""
    anchors = [s for level in preset.rpn_sizes for s in level]
    return ('sizes: shorter side {} (training: {}), longer side at most '
            '{}; anchors {} px; backbone norm {}'.format(
                preset.min_size, ' '.join(map(str, scales or
                                              (preset.min_size,))),
                preset.max_size, ' '.join(map(str, anchors)), preset.norm))


def effective_sizes(preset):
    """{'min_size', 'max_size', 'anchor_sizes', 'norm'} of ``preset``, to
    record in ``config.json`` in place of the flags left unset."""
    return {'min_size': preset.min_size, 'max_size': preset.max_size,
            'anchor_sizes': [s for level in preset.rpn_sizes
                             for s in level],
            'norm': preset.norm}
