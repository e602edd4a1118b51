"""The files of ``demo.py``: which images to read, where their drawings
go, and the refusal of any output that would write onto an input. Each
check runs before the model is built, so a bad path fails at once."""
import collections
import os

from utils.ops.image import ImageError
from utils.vis import file_format, save_formats

IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


class UsageError(ValueError):
    """A flag that cannot work, reported before any work is done."""


def list_images(paths):
    """Expand folders into their image files (``IMAGE_EXTS``, sorted);
    keep explicit files as given, which must exist."""
    out = []
    for path in paths:
        if os.path.isdir(path):
            out += sorted(os.path.join(path, f) for f in os.listdir(path)
                          if f.lower().endswith(IMAGE_EXTS))
        elif os.path.isfile(path):
            out.append(path)
        else:
            raise ImageError('image file not found: {}'.format(path))
    if not out:
        raise ImageError('no images found in {}'.format(' '.join(paths)))
    return out


def output_names(images):
    """File names of the drawings of ``images`` in one folder: ``STEM.png``
    each; images that share a stem get their whole file name
    (``NAME.EXT.png``), numbered if even that is shared
    (``NAME.EXT.2.png``). Names are compared without case, as a
    case-insensitive file system would."""
    bases = [os.path.basename(image) for image in images]
    stems = collections.Counter(os.path.splitext(b)[0].lower() for b in bases)
    names, taken = [], set()
    for base in bases:
        stem = os.path.splitext(base)[0]
        root = stem if stems[stem.lower()] == 1 else base
        name, n = root + '.png', 1
        while name.lower() in taken:
            n += 1
            name = '{}.{}.png'.format(root, n)
        taken.add(name.lower())
        names.append(name)
    return names


def output_paths(out, images):
    """(folder to create, path of each image's drawing): one image is
    drawn to the file ``out`` unless ``out`` is a folder (or ends in
    ``/``); several go into the folder ``out`` (``output_names``)."""
    if len(images) == 1 and not (os.path.isdir(out) or
                                 out.endswith(('/', os.sep))):
        if file_format(out) not in save_formats():
            raise UsageError('--out {}: cannot write .{} images, expected '
                             'one of .{}'.format(out, file_format(out),
                                                 ', .'.join(save_formats())))
        return os.path.dirname(out), [out]
    if os.path.isfile(out):
        raise UsageError('--out {} is a file; {} images need a folder'.format(
            out, len(images)))
    return out, [os.path.join(out, name) for name in output_names(images)]


def file_ids(paths):
    """(device, inode) of each existing path: one file has one id whatever
    its spelling, links or letter case."""
    ids = set()
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            continue
        ids.add((st.st_dev, st.st_ino))
    return ids


def refuse_overwrites(out, drawings, json_path, inputs):
    """Refuse an ``--out`` or ``--json`` that is, or would write onto, one
    of ``inputs`` (images, their folders, the model file)."""
    ids = file_ids(inputs)
    if file_ids([out]) & ids:
        raise UsageError('--out {} is an input; expected a new file or '
                         'folder'.format(out))
    for path in drawings:
        if file_ids([path]) & ids:
            raise UsageError('--out {} would overwrite the input {}; '
                             'expected another folder'.format(out, path))
    if json_path is None:
        return
    if file_ids([json_path]) & ids:
        raise UsageError('--json {} is an input; expected a new file'.format(
            json_path))
    if os.path.realpath(json_path) in map(os.path.realpath, drawings):
        raise UsageError('--json {} is also a drawing of --out; expected '
                         'another file'.format(json_path))


def make_folder(flag, folder):
    """Create the folder of an output now, so that a bad path fails before
    the slow work instead of after it."""
    folder = folder or '.'
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise UsageError('{} needs the folder {}, which cannot be created '
                         '({})'.format(flag, folder, e.strerror or e)) \
            from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError('{} needs the folder {}, which is not '
                         'writable'.format(flag, folder))


def prepare_outputs(out, json_path, inputs, images):
    """Check and create every output location of the drawings of
    ``images`` (into ``out``) and of the results file ``json_path`` (None:
    none), none of which may be one of ``inputs``; the drawing paths."""
    folder, drawings = output_paths(out, images)
    refuse_overwrites(out, drawings, json_path, inputs)
    if json_path is not None and os.path.isdir(json_path):
        raise UsageError('--json {} is a folder; expected a file name'.format(
            json_path))
    make_folder('--out', folder)
    if json_path is not None:
        make_folder('--json', os.path.dirname(json_path))
    return drawings
