"""From scratch, the defaults train: a norm that trains (GroupNorm) and
gradient clipping; with --pretrained, Detectron's recipe as it was. A
diverged run names its likely cause and the command to run next."""
import dataclasses
import os

import chainer
import pytest

import train
from models.norm import AffineChannel2D
from tests.helpers.tiny_coco import write_tiny_coco
from utils.training.build import build_model, training_preset
from utils.training.divergence import DivergenceAdvice, with_flags
from utils.training.snapshots import TrainingDiverged

OWN_DATA = ['--dataset', 'coco-json', '--train-json', 't.json',
            '--train-images', 't', '--val-json', 'v.json',
            '--val-images', 'v']
# Every default of Detectron's recipe before this change (--pretrained,
# batch 2, no --iteration): frozen affine norm (the preset's), no
# clipping, 500 warm-up iterations.
DETECTRON = {'arch': 'fpn', 'iteration': 90000, 'lr': 0.0025,
             'lr_steps': [60000, 80000], 'warmup': 500, 'freeze_at': 2,
             'snapshot': 5000, 'validation': 10000,
             'crop_min_visible': 0.25, 'norm': None, 'clip_grad': 0.}


def _resolved(*flags):
    return train.resolve_defaults(train.parse_args(list(flags)))


def test_pretrained_keeps_detectrons_recipe():
    args = _resolved(*OWN_DATA, '--pretrained', 'R-50.npz')
    assert {k: getattr(args, k) for k in DETECTRON} == DETECTRON
    preset = training_preset(args.arch, 2, {'depth': 50}, norm=args.norm)
    assert preset.norm == 'affine'


def test_from_scratch_the_norm_trains_and_gradients_are_clipped():
    args = _resolved(*OWN_DATA, '--arch', 'fpn-tiny', '--iteration', '50')
    assert (args.norm, args.clip_grad, args.freeze_at) == ('gn', 20., 0)
    # The warm-up fits the run: 50 / 5, so the rate peaks before the
    # first step (at 33).
    assert (args.warmup, args.lr_steps) == (10, [33, 44])
    preset = training_preset('fpn', 2, {}, min_size=64, max_size=96,
                             norm=args.norm)
    model = build_model(dataclasses.replace(
        preset, width=8, blocks=(1, 1, 1, 1), fpn_channels=16,
        fc_channels=16, mask_channels=8))
    norms = [link for link in model.links()
             if isinstance(link, (AffineChannel2D,
                                  chainer.links.GroupNormalization))]
    assert norms and all(isinstance(n, chainer.links.GroupNormalization)
                         for n in norms)


def test_flags_override_the_scratch_defaults():
    args = _resolved(*OWN_DATA, '--norm', 'affine', '--clip-grad', '0',
                     '--warmup', '7')
    assert (args.norm, args.clip_grad, args.warmup) == ('affine', 0., 7)
    # The synthetic quickstart keeps its measured, unclipped recipe.
    args = _resolved()
    assert (args.norm, args.clip_grad, args.warmup) == ('gn', 0., 100)


def _advice(**changes):
    settings = dict(argv=('--dataset', 'coco-json', '--lr=0.0025',
                          '--arch', 'fpn'), lr=0.0025, norm='gn',
                    pretrained=False, clip_grad=20., warmup=1000)
    settings.update(changes)
    return DivergenceAdvice(**settings)


def test_frozen_affine_from_scratch_is_named_not_the_rate(tmp_path):
    text = _advice(norm='affine', clip_grad=0.)(str(tmp_path), 4)
    assert 'frozen affine' in text
    assert text.endswith('next: python train.py --dataset coco-json '
                         '--lr=0.0025 --arch fpn --norm gn')


def test_unclipped_run_is_told_to_clip(tmp_path):
    text = _advice(clip_grad=0.)(str(tmp_path), 4)
    assert 'not clipped' in text
    assert text.endswith('--arch fpn --clip-grad 20.0')


def test_rate_advice_lowers_the_rate_in_use_and_resumes(tmp_path):
    open(os.path.join(str(tmp_path), 'snapshot_iter_5'), 'w').close()
    text = _advice()(str(tmp_path), 9)
    assert 'learning rate 0.0025 is too high' in text
    # A quarter of the rate that diverged, never the rate itself.
    assert text.endswith('--arch fpn --lr 0.00063 --warmup 2000 --resume '
                         '{}'.format(os.path.join(str(tmp_path),
                                                  'snapshot_iter_5')))
    assert '--lr=0.0025' not in text


def test_with_flags_replaces_both_spellings():
    argv = ['--lr', '1', '--lr-steps', '3', '4', '--norm=bn', '-i', '9']
    assert with_flags(argv, {'--lr': 2, '--norm': 'gn', '--resume': None}) \
        == ['--lr-steps', '3', '4', '-i', '9', '--lr', '2', '--norm', 'gn']


def test_a_diverging_affine_run_says_to_train_a_norm(tmp_path):
    flags = write_tiny_coco(tmp_path, 2, 2) + [
        '--arch', 'fpn-tiny', '--norm', 'affine', '--lr', '10',
        '--clip-grad', '0', '--loaders', '0', '--iteration', '20',
        '--out', str(tmp_path / 'o')]
    with pytest.raises(TrainingDiverged) as e:
        train.main(flags)
    assert 'frozen affine' in str(e.value)
    assert str(e.value).endswith('--clip-grad 0 --loaders 0 --iteration 20 '
                                 '--out {} --norm gn'.format(tmp_path / 'o'))
