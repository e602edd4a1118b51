"""Weights by name: the model-zoo files that ``train.py --pretrained`` and
``demo.py --modelfile`` accept, fetched once and converted once.

==============================  =========================================
name                            file
==============================  =========================================
``R-50.pkl``, ``R-101.pkl``     Detectron's ImageNet ResNets (MSRA), a
                                backbone for ``--pretrained``
``e2e_mask_rcnn_R-50-C4_1x``    Detectron's ``model_final.pkl``, model
``e2e_mask_rcnn_R-50-FPN_1x``   ids 35858791 and 35858933 (Detectron's
                                semantics)
``mask_rcnn_R_50_FPN_3x``       detectron2's ``model_final_f10217.pkl``
``mask_rcnn_R_50_C4_3x``        and ``model_final_4ce675.pkl``
                                (detectron2's semantics)
==============================  =========================================

The URLs are those of Detectron's and detectron2's ``MODEL_ZOO.md``. A
name is downloaded (``utils/weights/download.py``: bounded, atomic) to
``CACHE/STEM.pkl``, converted by the restricted unpickler and the strict
converters (``utils/weights/detectron.py``: exact names and shapes, every
blob used) to ``CACHE/STEM.npz``, and from then on the npz is used without
any connection. A file placed at ``CACHE/STEM.pkl`` by hand is converted
the same way: that is the way offline, and what a failed download says.

Integrity. detectron2 names each file by the start of its MD5
(``model_final_f10217.pkl``: its ``MODEL_ZOO.md`` says "any model on this
page contains its md5 prefix in its file name"); that prefix is checked.
Detectron publishes no checksum, and neither project a SHA-256: an entry's
``sha256`` is checked where one is recorded (none is yet), and otherwise
the converter's name, shape, dtype and finiteness checks (and the expected
architecture and depth) are the guard. The SHA-256 of every file is
printed and kept in the npz metadata (``source``).

Settings: the cache folder is ``$MASK_RCNN_CHAINER_CACHE``, else
``$XDG_CACHE_HOME/mask-rcnn-chainer``, else ``~/.cache/mask-rcnn-chainer``;
the URLs are relative to ``$MASK_RCNN_CHAINER_ZOO_URL`` (default
``https://dl.fbaipublicfiles.com/``: a mirror with the same paths, or a
test server).
"""
import dataclasses
import os
import urllib.parse

from utils.weights.detectron import convert_pickle
from utils.weights.download import DownloadError, fetch as download, \
    file_digests
from utils.weights.model_io import ModelFileError, save_model
from utils.weights.safe_pickle import ConversionError, one_line

BASE_URL = 'https://dl.fbaipublicfiles.com/'
URL_ENV = 'MASK_RCNN_CHAINER_ZOO_URL'
CACHE_ENV = 'MASK_RCNN_CHAINER_CACHE'
MIB = 1 << 20

_DETECTRON_FINAL = ('output/train/coco_2014_train%3Acoco_2014_valminusminival'
                    '/generalized_rcnn/model_final.pkl')


@dataclasses.dataclass(frozen=True)
class Entry:
    """One catalogue file.

    Attributes:
        path (str): URL path under the base URL.
        arch (str): what the converter must find: 'backbone', 'c4', 'fpn'.
        depth (int): the ResNet's depth it must find.
        max_bytes (int): the most bytes the download may have (about
            twice the real file: a hostile server cannot fill the disk).
        md5_prefix (str): the MD5's first hex digits the file is named by
            (detectron2), or None.
        sha256 (str): the recorded SHA-256, or None.
    """
    path: str
    arch: str
    depth: int
    max_bytes: int
    md5_prefix: str = None
    sha256: str = None


CATALOGUE = {
    'R-50.pkl': Entry('detectron/ImageNetPretrained/MSRA/R-50.pkl',
                      'backbone', 50, 256 * MIB),
    'R-101.pkl': Entry('detectron/ImageNetPretrained/MSRA/R-101.pkl',
                       'backbone', 101, 512 * MIB),
    'e2e_mask_rcnn_R-50-C4_1x': Entry(
        'detectron/35858791/12_2017_baselines/'
        'e2e_mask_rcnn_R-50-C4_1x.yaml.01_45_57.ZgkA7hPB/' + _DETECTRON_FINAL,
        'c4', 50, 1024 * MIB),
    'e2e_mask_rcnn_R-50-FPN_1x': Entry(
        'detectron/35858933/12_2017_baselines/'
        'e2e_mask_rcnn_R-50-FPN_1x.yaml.01_48_14.DzEQe4wC/' + _DETECTRON_FINAL,
        'fpn', 50, 1024 * MIB),
    'mask_rcnn_R_50_FPN_3x': Entry(
        'detectron2/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x/'
        '137849600/model_final_f10217.pkl', 'fpn', 50, 1024 * MIB,
        md5_prefix='f10217'),
    'mask_rcnn_R_50_C4_3x': Entry(
        'detectron2/COCO-InstanceSegmentation/mask_rcnn_R_50_C4_3x/'
        '137849525/model_final_4ce675.pkl', 'c4', 50, 1024 * MIB,
        md5_prefix='4ce675'),
}
MODELS = tuple(n for n, e in CATALOGUE.items() if e.arch != 'backbone')


class ZooError(ModelFileError):
    """Weights by name that cannot be had (a ``ModelFileError``, so the
    scripts report it in one line as they report a bad model file)."""


def cache_dir():
    """The cache folder (see the module docstring)."""
    folder = os.environ.get(CACHE_ENV)
    if not folder:
        base = os.environ.get('XDG_CACHE_HOME') or os.path.join('~',
                                                                '.cache')
        folder = os.path.join(base, 'mask-rcnn-chainer')
    return os.path.expanduser(folder)


def base_url():
    """The base URL of the catalogue's paths (see the module docstring)."""
    url = os.environ.get(URL_ENV) or BASE_URL
    return url if url.endswith('/') else url + '/'


def local_files(name, folder):
    """(pkl, npz) paths of ``name`` in the cache ``folder``."""
    stem = name[:-len('.pkl')] if name.endswith('.pkl') else name
    return (os.path.join(folder, stem + '.pkl'),
            os.path.join(folder, stem + '.npz'))


def weights_file(text, models_only=False, folder=None, url=None,
                 log=print, stream=None):
    """The npz a ``--pretrained`` or ``--modelfile`` value names: a
    catalogue name's cached npz (fetched and converted on first use), any
    other text unchanged (a path).

    Args:
        models_only (bool): refuse the ImageNet backbones (``demo.py``).
        folder (str): the cache folder (default ``cache_dir()``).
        url (str): the base URL (default ``base_url()``).
        log (callable): takes each line of what is done.
        stream: where the download's progress goes (default stdout).
    """
    if text not in CATALOGUE:
        return text
    if models_only and text not in MODELS:
        raise ZooError('{} is an ImageNet backbone for train.py '
                       '--pretrained; a detection model is one of {}'.format(
                           text, ', '.join(MODELS)))
    return fetch(text, folder or cache_dir(), url or base_url(), log,
                 stream)


def fetch(name, folder, base, log=print, stream=None):
    """The converted npz of catalogue ``name`` in ``folder``: as cached,
    else converted from a pkl there, else downloaded from ``base``."""
    entry = CATALOGUE[name]
    pkl, npz = local_files(name, folder)
    if os.path.isfile(npz):
        return npz
    url = urllib.parse.urljoin(base, entry.path)
    if os.path.isfile(pkl):  # placed by hand
        try:
            _check_digest(pkl, entry, None)
            _convert(pkl, npz, name, url, log)
        except ConversionError as e:
            raise ZooError(one_line(
                '{} (for {}) cannot be used: {}; replace it with a fresh '
                'download of {}'.format(pkl, name, _reason(e, pkl), url))) \
                from None
        return npz
    log('downloading {} from {}'.format(name, url))

    def verify(tmp, digests):
        log('sha256 {}'.format(digests['sha256']))
        try:
            _check_digest(tmp, entry, digests)
            _convert(tmp, npz, name, url, log)
        except (ConversionError, ModelFileError) as e:
            raise DownloadError(_reason(e, tmp)) from None

    try:
        download(url, pkl, entry.max_bytes, verify, stream=stream)
    except DownloadError as e:
        raise ZooError(one_line(
            'cannot fetch {} from {} ({}); download it by hand and place '
            'it at {}, where the next run converts it without '
            'downloading'.format(name, url, e, pkl))) from None
    return npz


def _reason(error, path):
    """The message of ``error`` without the name of ``path``, which the
    caller's line names (a download's temporary file: 'the file')."""
    return str(error).replace(path + ': ', '').replace(path, 'the file')


def _check_digest(path, entry, digests):
    """The file's MD5 prefix and SHA-256 against the entry's, where it
    has them (``digests`` None: computed here)."""
    if entry.md5_prefix is None and entry.sha256 is None:
        return
    digests = digests or file_digests(path)
    if entry.md5_prefix and not digests['md5'].startswith(entry.md5_prefix):
        raise ConversionError(
            'its MD5 starts with {}, but detectron2 names this file for an '
            'MD5 starting with {}: a broken or different file'.format(
                digests['md5'][:len(entry.md5_prefix)], entry.md5_prefix))
    if entry.sha256 and digests['sha256'] != entry.sha256:
        raise ConversionError('its SHA-256 is {}, expected {}'.format(
            digests['sha256'], entry.sha256))


def _convert(pkl, npz, name, url, log):
    """Convert ``pkl`` as the entry ``name`` expects it into ``npz``."""
    entry = CATALOGUE[name]
    log('converting {} once to {}'.format(name, npz))
    model, meta, report = convert_pickle(pkl, entry.arch,
                                         os.path.basename(entry.path))
    if meta['depth'] != entry.depth:
        raise ConversionError('it holds a ResNet-{}, expected ResNet-{}'
                              .format(meta['depth'], entry.depth))
    meta['source'].update(name=name, url=url)
    save_model(npz, model, meta)
    log('\n'.join(report))
