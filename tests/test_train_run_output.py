"""What a short train.py run on a user's COCO-format data says and leaves
behind: the schedule it really uses first, the sizes of the preset
(printed and in config.json), plain progress lines without escape codes
and a time estimate, ap.png although --validation exceeds --iteration,
and --evaluate with the validation files alone."""
import inspect
import io
import json
import os
import sys

import pytest

import demo
import train
from tests.helpers.tiny_coco import coco_json_flags as _flags, write_tiny_coco
from utils.training.setup import VISUALIZE, write_demo


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    """A 3-iteration fpn-tiny run (preset sizes) and its stdout."""
    root = tmp_path_factory.mktemp('own')
    write_tiny_coco(root, 2, 2)
    capture = pytest.MonkeyPatch()
    stdout = io.StringIO()
    capture.setattr(sys, 'stdout', stdout)
    try:
        train.main(_flags(root) + [
            '--arch', 'fpn-tiny', '--loaders', '0', '--iteration', '3',
            '--log-interval', '1', '--validation', '100',
            '--out', str(root / 'run')])
    finally:
        capture.undo()
    return root, stdout.getvalue()


def test_the_first_line_is_the_schedule_in_effect(run):
    _, text = run
    # 3 iterations: warm-up 3 // 5 -> 1, steps at 2 and 2 (2/3, 8/9 of 3).
    assert text.splitlines()[0] == (
        'schedule: 3 iterations at lr 0.0025; warm-up over 1 from '
        '0.000833; x0.01 at 2 (to 2.5e-05); highest rate 0.0025 at '
        'iteration 2')


def test_preset_sizes_are_printed_and_recorded(run):
    root, text = run
    assert ('sizes: shorter side 192 (training: 192), longer side at most '
            '256; anchors 32 64 128 256 512 px; backbone norm gn') in text
    config = json.load(open(str(root / 'run' / 'config.json')))
    assert (config['min_size'], config['max_size'], config['anchor_sizes'],
            config['norm']) == (192, 256, [32, 64, 128, 256, 512], 'gn')


def test_progress_is_plain_with_an_estimate(run):
    _, text = run
    assert '\033' not in text
    lines = text.splitlines()
    start = lines.index('training: iterations 1 to 3, a progress line '
                        'every 1')
    assert any(line.startswith('iteration 1 of 3 done in ')
               for line in lines[start + 1:start + 4])
    estimate = [line for line in lines if line.startswith('estimate: ')]
    assert len(estimate) == 1 and '3 iterations take about' in estimate[0]
    assert 'inf' not in text.replace('info', '')


def test_ap_plot_is_written_when_validation_exceeds_iteration(run):
    root, _ = run
    assert os.path.isfile(str(root / 'run' / 'ap.png'))


def test_evaluate_needs_only_the_validation_files(run, tmp_path):
    root, _ = run
    train.main(_flags(root, ('val',)) + [
        '--evaluate', '--pretrained', str(root / 'run' / 'model_final.npz'),
        '--out', str(tmp_path)])
    assert any(n.startswith('coco_eval') for n in os.listdir(str(tmp_path)))


def test_demo_image_and_demo_py_share_one_score_threshold():
    default = inspect.signature(write_demo).parameters['thresh'].default
    parser_default = demo.VISUALIZE['score_thresh']
    assert default == parser_default == VISUALIZE['score_thresh'] == 0.7
