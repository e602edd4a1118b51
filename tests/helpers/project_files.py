"""The repository's own Python files, for the tests that scan source text
(the import layers, the CUDA kernel list, the CuPy calls)."""
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def python_files(folders=('functions', 'models', 'utils')):
    """Paths of every ``.py`` file under ``folders`` (relative to the
    repository), then of ``train.py`` and ``demo.py``."""
    for folder in folders:
        for parent, _, files in os.walk(os.path.join(ROOT, folder)):
            for name in files:
                if name.endswith('.py'):
                    yield os.path.join(parent, name)
    for script in ('train.py', 'demo.py'):
        yield os.path.join(ROOT, script)
