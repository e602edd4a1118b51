"""``keep_freed_memory``: a large array freed and allocated again reuses
the same pages (no new page faults), where glibc's default maps and
zeroes them afresh. Each side runs in its own process."""
import subprocess
import sys

import pytest

from utils import heap

PROBE = '''
import resource, sys
import numpy
from utils import heap
applied = heap.keep_freed_memory() if sys.argv[1] == 'keep' else None
a = numpy.ones(1 << 26)          # 512 MB, every page written
del a
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
a = numpy.ones(1 << 26)
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
'''


def _faults(mode):
    out = subprocess.run([sys.executable, '-c', PROBE, mode],
                         capture_output=True, text=True, check=True)
    applied, faults = out.stdout.split()
    return applied, int(faults)


@pytest.mark.skipif(not sys.platform.startswith('linux'),
                    reason='glibc mallopt')
def test_freed_memory_is_reused_without_page_faults():
    applied, kept = _faults('keep')
    if applied != 'True':
        pytest.skip('this C library has no glibc mallopt')
    _, default = _faults('default')
    # 512 MB is 131072 small pages or 256 huge ones, faulted afresh by
    # default; reused, a handful.
    assert default >= 256
    assert kept <= 16


def test_no_mallopt_is_false(monkeypatch):
    class NoMallopt:
        def __init__(self, name):
            pass
    monkeypatch.setattr(heap.ctypes, 'CDLL', NoMallopt)
    assert heap.keep_freed_memory() is False
