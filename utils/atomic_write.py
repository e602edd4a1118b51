"""Every output file of the project is written whole or not at all.

``atomic_write(path)`` opens a temporary file beside ``path`` (same
folder, so the rename stays on one file system), hands it to the caller,
then flushes, ``fsync``s, closes and ``os.replace``s it onto ``path``. Any
failure on the way (a full disk, a read-only folder, an exception of the
caller) removes the temporary file and leaves ``path`` as it was: the old
file, or none. An ``OSError`` becomes one ``OutputError`` line naming
``path``; other exceptions pass through unchanged.

Temporary names start with a dot and end in ``.tmp`` so that no reader
of the folder (image lists, snapshot lists) takes them for an output.
"""
import contextlib
import itertools
import os

_counter = itertools.count()


class OutputError(ValueError):
    """An output file that cannot be written (full disk, no permission);
    ``strerror`` is the system's reason."""

    def __init__(self, message, strerror=None):
        super().__init__(message)
        self.strerror = strerror


def _temporary_name(path):
    folder, base = os.path.split(os.path.abspath(path))
    return os.path.join(folder, '.{}.{}-{}.tmp'.format(
        base, os.getpid(), next(_counter)))


@contextlib.contextmanager
def atomic_write(path, mode='w', what='output'):
    """Context manager yielding a file object (``mode`` 'w' text or 'wb'
    binary) whose content lands at ``path`` only when the block ends
    without an exception (module docstring).

    Args:
        path (str): the output file.
        mode (str): 'w' or 'wb'.
        what (str): how the error line names the output ('--json', 'model
            file', ...).

    Raises:
        OutputError: an ``OSError`` while creating, writing or renaming.
    """
    if mode not in ('w', 'wb'):
        raise ValueError('mode must be w or wb, got {!r}'.format(mode))
    tmp = _temporary_name(path)
    try:
        # O_EXCL: never write through a file or link someone put there;
        # 0o666 and the umask give the permissions open() would.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        why = e.strerror or str(e)
        raise OutputError('cannot write the {} {}: {}'.format(
            what, path, why), why) from None
    finally:
        with contextlib.suppress(OSError):
            os.remove(tmp)
