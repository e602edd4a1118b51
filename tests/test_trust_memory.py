"""Reading a crafted file of up to 10 MB stays under 1 GB and 60 s: each
command runs as a user runs it, in a subprocess whose address space is
capped at 1 GiB (``RLIMIT_AS``), on files that declare gigabytes (an npz
zip bomb, members declaring 4 TiB, a PNG declaring 1e10 pixels, a polygon
vertex at 2e7). The answer is one error line, no traceback, no crash."""
import json
import os
import resource
import subprocess
import sys

import pytest

from tests.helpers.crafted_sizes import (npy_header, npz_of, png,
                                         zip_bomb_npz)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIMIT = 1 << 30


def _capped():
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))


def _run(script, *args):
    env = dict(os.environ, OPENBLAS_NUM_THREADS='1', OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable, script] + list(args), cwd=ROOT,
                          capture_output=True, text=True, timeout=60,
                          preexec_fn=_capped, env=env)


def _assert_one_line(proc, *words):
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert 'error:' in last, proc.stderr[-2000:]
    for word in words:
        assert word in last, last


@pytest.fixture(scope='module')
def crafted(tmp_path_factory):
    root = tmp_path_factory.mktemp('crafted')
    files = {'bomb': zip_bomb_npz(root / 'bomb.npz', 'x', 2 << 30),
             'huge': npz_of(root / 'huge.npz', {
                 'x': npy_header((2 ** 40,)) + bytes(64),
                 '_meta': npy_header((), '<U500000000') + bytes(64)}),
             'png': root / 'bomb.png'}
    files['png'].write_bytes(png(100000, 100000))
    for path in files.values():
        assert path.stat().st_size <= 10 << 20
    return files


def test_demo_under_1_gib(crafted, tmp_path):
    """A 2 GB zip bomb as --modelfile; then the PNG bomb with random
    weights, skipped; both within the cap."""
    proc = _run('demo.py', '--modelfile', str(crafted['bomb']), '--image',
                str(crafted['png']), '--out', str(tmp_path / 'o.png'))
    _assert_one_line(proc, str(crafted['bomb']), 'declares')
    assert not (tmp_path / 'o.png').exists()


def test_train_under_1_gib(crafted, tmp_path):
    """--pretrained members declaring 4 TiB and a 2 GB string."""
    proc = _run('train.py', '--pretrained', str(crafted['huge']),
                '--iteration', '1', '--out', str(tmp_path / 'o'),
                '--synthetic-root', str(tmp_path / 'synthetic'))
    _assert_one_line(proc, str(crafted['huge']))


def test_a_polygon_at_2e7_is_refused_in_process(tmp_path):
    """pycocotools segfaulted on it (no Python error to catch): the bound
    is checked at load, so the reader never calls it."""
    from utils.data.coco_json import DatasetError, load_coco
    path = tmp_path / 'ann.json'
    path.write_text(json.dumps({
        'images': [{'id': 1, 'file_name': 'a.png', 'height': 480,
                    'width': 640}],
        'categories': [{'id': 1}],
        'annotations': [{'id': 3, 'image_id': 1, 'category_id': 1,
                         'bbox': [0, 0, 10, 10],
                         'segmentation': [[0, 0, 2e7, 0, 0, 10]]}]}))
    with pytest.raises(DatasetError, match=r'annotation id 3: polygon x '
                       r'20000000.0 is more than 4 image sides outside'):
        load_coco(str(path))
