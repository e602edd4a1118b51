"""Reading weight pickles without running code.

Detectron's ``model_final.pkl`` and ``R-50.pkl`` and detectron2's model-zoo
``model_final_*.pkl`` hold NumPy arrays in plain containers. The
restricted unpickler below rebuilds exactly those and refuses any other
global, so a malicious file fails before anything in it runs.
"""
import os
import pickle
import zipfile

_SAFE_GLOBALS = {
    ('numpy.core.multiarray', '_reconstruct'),
    ('numpy._core.multiarray', '_reconstruct'),
    ('numpy.core.multiarray', 'scalar'),
    ('numpy._core.multiarray', 'scalar'),
    ('numpy', 'ndarray'),
    ('numpy', 'dtype'),
    ('_codecs', 'encode'),
    ('collections', 'OrderedDict'),
}


class ConversionError(ValueError):
    """A weights file that is not of the expected kind."""


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _SAFE_GLOBALS:
            raise ConversionError(
                'refusing to load {}.{}: a weights pickle holds only NumPy '
                'arrays'.format(module, name))
        if module.startswith('numpy.core'):
            module = 'numpy._core' + module[len('numpy.core'):]
        return super().find_class(module, name)


def load_pickle(path):
    """The object in ``path``, read with ``latin1`` (Python 2 pickles) by
    the restricted unpickler."""
    if not os.path.isfile(path):
        raise ConversionError('file not found: {}'.format(path))
    if zipfile.is_zipfile(path):
        raise ConversionError(
            '{} is a zip archive (a PyTorch .pth checkpoint?); expected a '
            'pickle of NumPy arrays such as Detectron\'s model_final.pkl '
            'or detectron2\'s model-zoo model_final_*.pkl'.format(path))
    try:
        with open(path, 'rb') as f:
            return _SafeUnpickler(f, encoding='latin1').load()
    except ConversionError:
        raise
    except Exception as e:  # truncated, not a pickle, a torch zip, ...
        raise ConversionError('{} is not a readable pickle ({}: {})'.format(
            path, type(e).__name__, e)) from None
