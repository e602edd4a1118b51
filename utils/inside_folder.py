"""Whether a path that a file names stays inside the folder it is read
from: a COCO image ``file_name`` under its image folder, an ONNX tensor's
external-data ``location`` beside its model. The check is on the spelling,
before any file is opened; symbolic links inside the folder are the
user's and are followed.
"""
import os


def leaving_problem(name, folder):
    """Why ``name``, to be joined to the path of ``folder`` (the words a
    message uses for it, e.g. 'the image folder'), may not be read, or
    None: a NUL character, an absolute path or a drive, or ``..`` above
    the folder."""
    if '\0' in name:
        return 'holds a NUL character'
    if os.path.isabs(name) or os.path.splitdrive(name)[0]:
        return 'is an absolute path; expected a path inside {}'.format(
            folder)
    norm = os.path.normpath(name)
    if norm == os.pardir or norm.startswith(os.pardir + os.sep):
        return 'leads out of {} (..); expected a path inside it'.format(
            folder)
    return None
