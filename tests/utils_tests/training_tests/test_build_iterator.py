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


# Images of 512 x 512 (3 MB as float32) declared by their annotations, as
# a COCODataset declares them: beyond chainer's fixed 1 MiB before.
IMAGES = '''
import json
from utils import compat
import numpy
from utils.training.build import build_iterator


class Declared:
    sizes = [(64, 64), (512, 512), (300, 200)] * 2

    def __len__(self):
        return len(self.sizes)

    def example_boxes(self, i):
        return self.sizes[i], numpy.zeros((1, 4), numpy.float32)

    def __getitem__(self, i):
        return (numpy.full((3,) + self.sizes[i], i, numpy.float32),
                numpy.zeros((1, 4), numpy.float32))


iterator = build_iterator(Declared(), 2, 2, seed=1)
try:
    batches = [iterator.next() for _ in range(3)]
finally:
    iterator.finalize()
print(json.dumps(sorted([int(img[0, 0, 0]), img.shape[1]]
                        for batch in batches for img, _ in batch)))
'''


def test_images_larger_than_1_mib_load_quietly():
    proc = subprocess.run([sys.executable, '-c', IMAGES],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert 'Shared memory size is too small' not in proc.stderr
    assert json.loads(proc.stdout) == [[0, 64], [1, 512], [2, 300],
                                       [3, 64], [4, 512], [5, 300]]


def test_loader_shared_mem_fits_the_largest_declared_image():
    import chainer
    import numpy
    from utils.training.build import SHARED_MEM, loader_shared_mem

    class Declared(list):
        def example_boxes(self, i):
            return self[i], numpy.zeros((0, 4), numpy.float32)
    data = Declared([(100, 200), (512, 300), (64, 64)])
    expected = SHARED_MEM + 3 * 4 * 512 * 300
    assert loader_shared_mem(data) == expected
    # A ChainerMN shard is a SubDataset of it.
    assert loader_shared_mem(chainer.datasets.SubDataset(data, 0, 1)) == \
        expected
    assert loader_shared_mem([(numpy.zeros(3),)]) == SHARED_MEM
