"""The compat shims make chainer 7.8.1 import and run the ops we use on
numpy 2. Each check runs in a fresh interpreter so that no earlier import
hides a missing shim."""
import subprocess
import sys
import textwrap

import numpy
import pytest

from utils import compat


def run_fresh(code):
    proc = subprocess.run([sys.executable, '-c', textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_shims_only_add_missing_names():
    assert isinstance(numpy.sctypes['int'], list)
    assert numpy.int32 in numpy.sctypes['int']
    assert numpy.float is float
    # Applying twice changes nothing.
    assert compat.install() == compat.SHIMS


def test_chainer_ops_that_need_shims():
    out = run_fresh('''
        import numpy as np
        from utils import compat
        import chainer, chainer.functions as F
        x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(1, 2, 3, 4)
        y = F.resize_images(x, (6, 8)).array        # numpy.float
        z = F.as_strided(np.arange(6, dtype=np.float32), (2, 2), (1, 2)).array
        print(chainer.__version__, y.shape, z.tolist())
    ''')
    assert out.split()[0] == '7.8.1'
    assert '(1, 2, 6, 8)' in out
    assert '[[0.0, 2.0], [1.0, 3.0]]' in out


def test_distutils_stand_in_when_numpy_distutils_is_missing():
    # Python 3.12 has no numpy.distutils; simulate that here on 3.11 by
    # blocking the import, then chainer must still import.
    out = run_fresh('''
        import sys, importlib.abc
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.startswith('numpy.distutils'):
                    raise ModuleNotFoundError(name)
        sys.meta_path.insert(0, Block())
        from utils import compat
        import chainer
        print(sorted(compat.SHIMS))
    ''')
    assert 'numpy.distutils.system_info' in out


def test_no_pkg_resources_warning_on_import():
    proc = subprocess.run(
        [sys.executable, '-W', 'default', '-c',
         'from utils import compat; import chainer'],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert 'pkg_resources is deprecated' not in proc.stderr


def test_no_nccl_warning_where_cupy_lacks_nccl():
    # chainer.training imports cupy.cuda.nccl; without libnccl CuPy warned
    # in ten lines on stderr of every train.py run (CI installs CuPy).
    pytest.importorskip('cupy', reason='CuPy is not installed')
    proc = subprocess.run(
        [sys.executable, '-W', 'default', '-c',
         'from utils import compat; import chainer.training'],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ''


@pytest.mark.gpu
def test_chainer_gpu_convolution_without_cudnn():
    import cupy
    import chainer.functions as F
    x = numpy.random.RandomState(0).randn(1, 3, 9, 9).astype(numpy.float32)
    w = numpy.random.RandomState(1).randn(4, 3, 3, 3).astype(numpy.float32)
    y_cpu = F.convolution_2d(x, w, pad=1).array
    y_gpu = F.convolution_2d(cupy.asarray(x), cupy.asarray(w), pad=1).array
    numpy.testing.assert_allclose(cupy.asnumpy(y_gpu), y_cpu, rtol=1e-4,
                                  atol=1e-4)


def test_chainermn_unpack_params_casts_under_numpy2():
    # ChainerMN's unpack_params copies a communication buffer back into
    # gradients of another dtype; a host "buffer" stands in for the GPU one.
    pytest.importorskip('mpi4py', reason='ChainerMN needs mpi4py')
    out = run_fresh('''
        import numpy as np
        from utils import compat
        import chainer, chainermn
        from chainermn.communicators import _memory_utility as mu

        class HostBuffer:
            def __init__(self, values):
                self.values = values
            def to_device(self, dst, size, offset, stream=None):
                n = size // dst.itemsize
                start = offset // dst.itemsize
                dst[...] = self.values[start:start + n].reshape(dst.shape)

        def run():
            p = chainer.Parameter(np.zeros((2, 3), np.float32))
            p.grad = np.zeros((2, 3), np.float32)
            buf = HostBuffer(np.arange(6, dtype=np.float16) / 4)
            mu.unpack_params([p], 'grad', buf, np.float16, False)
            return p.grad

        try:
            run()
            print('unpatched works')
        except ValueError:
            print('unpatched fails')
        print(compat.patch_chainermn())
        print(run().ravel().tolist(), run().dtype)
        print(compat.patch_chainermn() == compat.SHIMS)
    ''')
    assert 'unpatched fails' in out
    assert 'chainermn unpack_params' in out
    assert '[0.0, 0.25, 0.5, 0.75, 1.0, 1.25] float32' in out
    assert out.rstrip().endswith('True')
