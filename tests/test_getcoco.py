"""getcoco.sh --dry-run: what it would fetch, resume and skip."""
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _dry(dest):
    proc = subprocess.run(['bash', 'getcoco.sh', str(dest), '--dry-run'],
                          cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_dry_run_lists_downloads_into_the_train_py_layout(tmp_path):
    out = _dry(tmp_path / 'coco')
    curls = [l for l in out.splitlines() if l.startswith('+ curl')]
    assert len(curls) == 3
    assert all(' -C - ' in l for l in curls)  # resumable
    for name in ('annotations_trainval2017.zip', 'val2017.zip',
                 'train2017.zip'):
        assert any(l.endswith('/' + name) for l in curls)
    assert not (tmp_path / 'coco').exists()  # a dry run writes nothing


def test_complete_parts_are_skipped(tmp_path):
    dest = tmp_path / 'coco'
    (dest / 'val2017').mkdir(parents=True)
    (dest / 'annotations').mkdir()
    (dest / 'annotations' / 'instances_val2017.json').write_text('{}')
    out = _dry(dest)
    assert 'val2017: already complete, skipped' in out
    assert [l for l in out.splitlines() if l.startswith('+ curl')] == [
        '+ curl -fL -C - -o {}/train2017.zip '
        'http://images.cocodataset.org/zips/train2017.zip'.format(dest)]
