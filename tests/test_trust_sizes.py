"""train.py and demo.py on sizes declared by files and flags, in-process:
every numeric flag has a range (argparse's one line), a tampered snapshot
field is one line before the trainer reads it, an image declaring too
many pixels is named at start-up (train.py) or skipped (demo.py)."""
import json

import numpy
import pytest

import demo
import train
from tests.helpers.crafted_sizes import png
from tests.helpers.tiny_coco import coco_json_flags
from utils.data.coco_json import DatasetError
from utils.ops.image import ImageError
from utils.training.snapshots import SnapshotError


def _argparse_error(main, argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert 'Traceback' not in '\n'.join(err)
    return err[-1]


@pytest.mark.parametrize('flag, value, words', [
    ('--random-crop', '1,1000', 'expected 0 < LO <= HI with LO >= 0.05 '
     'and HI <= 4.0'),
    ('--random-crop', '0.01,1', 'with LO >= 0.05'),
    ('--min-size', '100000', "expected a positive integer, got '100000' "
     '(range 1..4096)'),
    ('--max-size', '0', 'range 1..4096'),
    ('--scales', '5000', 'range 1..4096'),
    ('--anchor-sizes', '0', 'range 1..4096'),
    ('--roi-size', '1000', "expected a ROI size, got '1000' (range 1..32)"),
    ('--seed', '-1', "expected a seed, got '-1' (range 0..4294967295)"),
    ('--color-jitter', 'inf,0,0,0', 'expected 4 comma-separated finite '
     'numbers'),
    ('--gamma', '-1', "expected a loss weight in [0, 1000], got '-1'"),
    ('--gamma', 'nan', 'expected a loss weight in [0, 1000]'),
    ('--lr', '0', "expected a learning rate in (0, 10], got '0'"),
    ('--lr', 'inf', 'expected a learning rate'),
    ('--weight-decay', '1', 'expected a weight decay in [0, 1)'),
    ('--loaders', '-1', 'range 0..64'),
    ('--gpu', '-2', 'range -1..1023'),
    ('--gpus', '0,-1', 'expected GPU ids 0..1023'),
    ('--warmup', '-5', 'range 0..1000000000'),
    ('--lr-steps', '-5', 'range 0..1000000000'),
    ('--synthetic-images', '0', 'range 1..100000'),
    ('--max-image-pixels', '0', 'expected a pixel count'),
    ('--threads', '0', 'range 1..1024'),
    ('--batchsize', '5000', 'range 1..1024')])
def test_train_flags_out_of_range(flag, value, words, capsys):
    extra = ['10'] if flag == '--synthetic-images' else []
    last = _argparse_error(train.main, [flag, value] + extra, capsys)
    assert last.startswith('usage: ') is False and flag in last, last
    assert words in last, last


@pytest.mark.parametrize('flag, value, words', [
    ('--nms-thresh', 'nan', "expected a probability in [0, 1], got 'nan'"),
    ('--score-thresh', '2.5', 'expected a score threshold in [0, 2]'),
    ('--score-thresh', '-0.1', 'expected a score threshold in [0, 2]'),
    ('--threads', '0', 'range 1..1024'),
    ('--gpu', '-7', 'range -1..1023'),
    ('--max-image-pixels', '-1', 'expected a pixel count')])
def test_demo_flags_out_of_range(flag, value, words, capsys):
    last = _argparse_error(demo.main, [flag, value], capsys)
    assert flag in last and words in last, last


def test_every_numeric_flag_documents_its_range(capsys):
    for main in (train.main, demo.main):
        with pytest.raises(SystemExit):
            main(['--help'])
        text = ' '.join(capsys.readouterr().out.split())
        for words in ('1..4096', '1..32', '0..2^32-1', '[0, 1000]',
                      "89478485, Pillow's decompression-bomb limit",
                      '0.05 <= LO <= HI <= 4') if main is train.main else (
                          'in [0, 1]', '1..1024', '-1..1023', '89478485'):
            assert words in text, (main, words)


@pytest.fixture
def data(tiny_coco_run):
    """Tiny train and val sets and a 2-iteration run's snapshot (read
    only: the session's, tests/conftest.py)."""
    return tiny_coco_run


def _flags(root, out, *extra):
    return coco_json_flags(root) + [
        '--arch', 'fpn-tiny', '--loaders', '0', '--iteration', '3',
        '--validation', '100', '--out', str(out)] + list(extra)


@pytest.mark.parametrize('key, value, words', [
    ('updater/iterator:main/current_position', 10 ** 12,
     'current_position is 1000000000000, expected an integer in [0, 5]'),
    ('updater/iterator:main/epoch', -3, 'epoch is -3'),
    ('updater/iterator:main/previous_epoch_detail', float('nan'),
     'previous_epoch_detail is nan, expected a finite epoch count'),
    ('updater/iterator:main/order', [0, 0, 1, 2, 3, 4],
     'order is not an order of the 6 training images'),
    ('updater/iteration', -5, 'updater/iteration is -5'),
    ('updater/iteration', 10 ** 12, 'expected an integer in [0, '
     '1000000000]'),
    ('updater/converter/rng_pos', 10 ** 6, 'rng_pos is 1000000, expected '
     'an integer in [0, 624]'),
    ('updater/converter/rng_key', numpy.zeros(5, numpy.uint32),
     'updater/converter/rng_key is (5,) in the file, expected (624,)'),
    ('updater/optimizer:main/model/rpn/conv/b/v', numpy.zeros(
        7, numpy.float32), 'rpn/conv/b/v is (7,) in the file, expected '
     '(64,)'),
    ('updater/model:main/model/rpn/conv/b', numpy.zeros(7, numpy.float32),
     'rpn/conv/b is (7,) in the file, expected (64,)')])
def test_a_tampered_snapshot_field_is_one_line(key, value, words, data,
                                               tmp_path):
    with numpy.load(str(data / 'run' / 'snapshot_iter_2')) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays[key] = numpy.asarray(value)
    path = tmp_path / 'snapshot.npz'
    numpy.savez(str(path), **arrays)
    with pytest.raises(SnapshotError) as e:
        train.main(_flags(data, tmp_path / 'o', '--resume', str(path)))
    assert '\n' not in str(e.value) and str(path) in str(e.value)
    assert words in str(e.value), str(e.value)


def test_the_untampered_snapshot_resumes(data, tmp_path):
    out = tmp_path / 'o'
    train.main(_flags(data, out, '--resume', str(data / 'run' /
                                                 'snapshot_iter_2')))
    assert (out / 'model_final.npz').is_file()


def test_train_names_an_oversized_image_at_start_up(data, tmp_path):
    images = tmp_path / 'images'
    images.mkdir()
    for f in (data / 'train' / 'images').iterdir():
        (images / f.name).write_bytes(f.read_bytes())
    bomb = sorted(images.iterdir())[2]
    bomb.write_bytes(png(60000, 60000))
    flags = _flags(data, tmp_path / 'o')
    flags[flags.index('--train-images') + 1] = str(images)
    with pytest.raises(DatasetError) as e:
        train.main(flags)
    assert '\n' not in str(e.value) and str(bomb) in str(e.value)
    assert 'more than the limit of 89478485 (--max-image-pixels)' in str(
        e.value)
    assert not (tmp_path / 'o' / 'snapshot_iter_3').exists()


def test_demo_skips_an_oversized_image_and_finishes_the_batch(
        data, tmp_path, capsys):
    model = data / 'run' / 'model_final.npz'
    good = sorted((data / 'val' / 'images').iterdir())[0]
    bomb = tmp_path / 'bomb.png'
    bomb.write_bytes(png(100000, 100000))
    out, results = tmp_path / 'drawn', tmp_path / 'r.json'
    with pytest.raises(ImageError) as e:
        demo.main(['--modelfile', str(model), '--image', str(bomb),
                   str(good), '--out', str(out), '--json', str(results)])
    assert str(e.value) == ('1 of 2 images failed (reasons above): '
                            '{}'.format(bomb))
    err = capsys.readouterr().err
    assert ('demo.py: skipped: {}: its header declares 100000 x 100000 = '
            '10000000000 pixels'.format(bomb)) in err
    assert (out / (good.stem + '.png')).is_file()
    assert isinstance(json.loads(results.read_text()), list)
