"""The training iterator's loader processes hand examples of any size
over without chainer's shared-memory warnings (which repeated four lines
in the log whenever an example held more instances than the first
batch's)."""
import json
import subprocess
import sys

# One example of 2000 instances among five of 1, in seed 1's order after a
# first batch of small ones: they sized chainer's buffers at a few bytes
# before, and the large one warned. The loaders are forked processes that
# write to the real stderr, outside pytest's warning capture: a subprocess.
SCRIPT = '''
import json
from utils import compat
import numpy
from utils.training.build import build_iterator
dataset = [(numpy.full((n, 4), i, numpy.float32),
            numpy.full(n, i, numpy.int32))
           for i, n in enumerate([1, 1, 1, 1, 1, 2000])]
iterator = build_iterator(dataset, 2, 2, seed=1)
try:
    batches = [iterator.next() for _ in range(3)]
finally:
    iterator.finalize()
print(json.dumps([[[int(bbox[0, 0]), len(bbox), len(label)]
                   for bbox, label in batch] for batch in batches]))
'''


def test_examples_larger_than_the_first_batch_load_quietly():
    proc = subprocess.run([sys.executable, '-c', SCRIPT], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert 'Shared memory size is too small' not in proc.stderr
    batches = json.loads(proc.stdout)
    assert max(n for _, n, _ in batches[0]) == 1  # seed 1's order
    # Every example arrives whole, once per epoch.
    sizes = {i: (n, m) for batch in batches for i, n, m in batch}
    assert sizes == {0: (1, 1), 1: (1, 1), 2: (1, 1), 3: (1, 1), 4: (1, 1),
                     5: (2000, 2000)}
