"""The README's line for your own data, as written there (without
``--gpu``), trains R-50-FPN from scratch on small objects without
diverging: the trial of issue #27 got a NaN loss at iteration 4 from the
same line, when a from-scratch fpn kept its frozen affine norms and had
no gradient clipping. The 512 px images are resized to 320 px instead of
the preset's 800 (a sixth of the time; the defaults under test, the norm,
clipping and warm-up, do not depend on the size)."""
import json
import os
import shlex

from tests.test_readme import _read
from tests.utils_tests.data_tests.test_object_sizes import _small_objects
import train

MARK = '# your own COCO-format data'


def _own_data_line():
    """The README's command after ``MARK``, as arguments of train.py."""
    lines = _read('README.md').splitlines()
    argv = shlex.split(lines[lines.index(MARK) + 1])
    assert argv[:2] == ['.venv/bin/python', 'train.py']
    return argv[2:]


def test_the_readmes_own_data_line_trains_without_diverging(tmp_path):
    root = _small_objects(str(tmp_path / 'data'))
    argv = _own_data_line()
    assert argv[argv.index('--arch') + 1] == 'fpn'
    assert '--pretrained' not in argv
    paths = {'--train-json': 'annotations.json', '--val-json':
             'annotations.json', '--train-images': 'images',
             '--val-images': 'images'}
    for flag, name in paths.items():
        argv[argv.index(flag) + 1] = os.path.join(root, name)
    i = argv.index('--gpu')
    del argv[i:i + 2]                     # the CPU
    out = tmp_path / 'o'
    train.main(argv + ['--min-size', '320', '--max-size', '320',
                       '--iteration', '6', '--log-interval', '1',
                       '--loaders', '0', '--out', str(out)])
    log = json.load(open(str(out / 'log')))
    losses = [row['main/loss'] for row in log]
    assert len(losses) == 6
    # Finite (a NaN raises TrainingDiverged) and falling.
    assert losses[-1] < losses[0]
    config = json.load(open(str(out / 'config.json')))
    assert (config['norm'], config['clip_grad']) == ('gn', 20.)
