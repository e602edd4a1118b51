"""The weight converter against untrusted files (issue #13): tiny pickles
that declare huge arrays, dtypes and values weights never have, outputs
that would replace the input, and garbage. Each is refused in one line
that names the file, leaves the input as it was and writes nothing."""
import collections
import glob
import hashlib
import os
import pickle
import subprocess
import sys

import numpy
import pytest
from numpy._core.multiarray import _reconstruct
from numpy._core.numeric import _frombuffer

from utils import detectron_parser as dp
from utils.weights import detectron
from utils.weights.safe_pickle import ConversionError, load_pickle
from tests.helpers.crafted_pickles import Reduce
from tests.helpers.synthetic_weights import (detectron2_state, detectron_blobs,
                                             write_imagenet_pickle)

# The repository root, three folders up.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
PREFIX = 'detectron_parser.py: error: '
# The converter's own peak (Python, NumPy, chainer) is about 80 MiB.
MAX_RSS_MIB = 250
Run = collections.namedtuple('Run', 'code stdout stderr rss_mib')


def _array(shape, data, dtype='f4'):
    """An ndarray pickled as NumPy does, with any shape and data."""
    return Reduce(_reconstruct, (numpy.ndarray, (0,), b'b'),
                  (1, shape, numpy.dtype(dtype), False, data))


# Runs the command given as arguments and writes its peak memory (KiB) to
# $RSS_FILE. A child started straight from pytest would report pytest's
# own peak: Linux carries the peak of the process that forks over exec.
LAUNCHER = """import os, subprocess, sys
proc = subprocess.Popen(sys.argv[1:])
_, status, usage = os.wait4(proc.pid, 0)
open(os.environ['RSS_FILE'], 'w').write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))"""


def run_parser(args, tmp_path):
    """The command's exit status, output and peak memory (MiB)."""
    files = [tmp_path / name for name in ('rss', 'stdout', 'stderr')]
    with open(files[1], 'w') as out, open(files[2], 'w') as err:
        code = subprocess.call(
            [sys.executable, '-c', LAUNCHER, sys.executable,
             'utils/detectron_parser.py'] + args, cwd=ROOT, stdout=out,
            stderr=err, env=dict(os.environ, RSS_FILE=str(files[0])),
            timeout=600)
    rss, stdout, stderr = (f.read_text() for f in files)
    for f in files:
        f.unlink()
    return Run(code, stdout, stderr, int(rss) / 1024)


def _sha(path):
    return hashlib.sha256(open(path, 'rb').read()).hexdigest()


def assert_refused(tmp_path, args, name, *words):
    """Run the converter on ``args``: one error line naming ``name`` (the
    input, or the output) and ``words``; every file in ``tmp_path`` (the input
    among them) unchanged, nothing new there (no output or temp file)."""
    before = {p: _sha(p) for p in glob.glob(str(tmp_path / '**'),
                                            recursive=True)
              if os.path.isfile(p)}
    run = run_parser(args, tmp_path)
    assert run.code != 0
    assert 'Traceback' not in run.stderr, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(PREFIX), run.stderr
    for word in (str(name),) + words:
        assert word in lines[0], (word, lines[0])
    after = {p: _sha(p) for p in glob.glob(str(tmp_path / '**'),
                                           recursive=True)
             if os.path.isfile(p)}
    assert after == before
    return run


def _dump(tmp_path, obj, name='model_final.pkl', protocol=2):
    path = tmp_path / name
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


# --- item 12: a declared shape is never allocated on trust ---

@pytest.mark.parametrize('value, words', [
    (Reduce(_reconstruct, (numpy.ndarray, (2 ** 40,), b'b')),
     ['_reconstruct']),
    # 128 MiB of int8 that the old converter then cast to float32.
    (Reduce(_reconstruct, (numpy.ndarray, (2 ** 27,), b'b')),
     ['_reconstruct']),
    (Reduce(numpy.ndarray, ((2 ** 40,), 'f4')), ['numpy.ndarray']),
    (_array((2 ** 40,), b'1234'), ['needs 4,398,046,511,104 bytes']),
    (Reduce(_frombuffer, (b'1234', numpy.dtype('f4'), (2 ** 40,), 'C')),
     ['needs 4,398,046,511,104 bytes']),
    (_array((-4,), b''), ['shape']),
    (Reduce(numpy.dtype, ('f4', False, False)), ['unexpected dtype']),
])
def test_declared_sizes_are_checked_before_allocating(tmp_path, value,
                                                      words):
    path = _dump(tmp_path, {'blobs': {'conv1_w': value}})
    assert path.stat().st_size < 300
    run = assert_refused(tmp_path, [str(path)], path, *words)
    assert run.rss_mib < MAX_RSS_MIB


def test_data_shared_through_the_memo_is_counted_each_time(tmp_path):
    # 64 arrays over one 4 MiB string: 256 MiB of arrays (1 GiB as
    # float32) from a 4 MiB file.
    data = bytes(4 << 20)
    blobs = {'res4_{}_w'.format(i): _array((len(data),), data, 'i1')
             for i in range(64)}
    path = _dump(tmp_path, {'blobs': blobs})
    assert path.stat().st_size < (5 << 20)
    run = assert_refused(tmp_path, [str(path)], path,
                         'more bytes than the file holds')
    assert run.rss_mib < MAX_RSS_MIB


# --- item 16: protocol 5, and the other protocols, read alike ---

def test_every_protocol_loads_the_same_arrays(tmp_path):
    arrays = {'f4': numpy.arange(6, dtype='f4').reshape(2, 3),
              'fortran': numpy.asfortranarray(numpy.ones((2, 3)) / 3),
              'big_endian': numpy.arange(4, dtype='>u2'),
              'empty': numpy.zeros((0, 3), 'i8'),
              'bool': numpy.array([True, False]),
              'scalar': numpy.float32(2.5)}
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        path = _dump(tmp_path, {'blobs': arrays, 'cfg': 'x'},
                     protocol=protocol)
        loaded = load_pickle(str(path))['blobs']
        for name, value in arrays.items():
            assert type(loaded[name]) is type(value), (protocol, name)
            assert loaded[name].dtype == value.dtype, (protocol, name)
            numpy.testing.assert_array_equal(loaded[name], value)


def test_python2_pickle_loads(tmp_path):
    # What Detectron's Python 2 wrote: str data (BINSTRING), dtype
    # arguments as ints, numpy.core module names.
    data = numpy.arange(6, dtype='<f4').tobytes()
    array = (b'cnumpy.core.multiarray\n_reconstruct\nq\x01cnumpy\nndarray\n'
             b'q\x02K\x00\x85U\x01b\x87Rq\x03(K\x01K\x02K\x03\x86cnumpy\n'
             b'dtype\nq\x04U\x02f4K\x00K\x01\x87Rq\x05(K\x03U\x01<NNNJ\xff'
             b'\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89T' +
             len(data).to_bytes(4, 'little') + data + b'tb')
    path = tmp_path / 'R-50.pkl'
    path.write_bytes(b'\x80\x02}U\x07conv1_w' + array + b's.')
    numpy.testing.assert_array_equal(load_pickle(str(path))['conv1_w'],
                                     numpy.arange(6).reshape(2, 3))


def test_protocols_2_4_5_convert_to_identical_npz(tmp_path):
    blobs = write_imagenet_pickle(str(tmp_path / 'R-50.pkl'), seed=7)
    (tmp_path / 'R-50.pkl').unlink()
    npz = {}
    for protocol in (2, 4, 5):
        pkl = _dump(tmp_path, blobs, 'R-50-p{}.pkl'.format(protocol),
                    protocol)
        out = dp.main([str(pkl), '-o', str(tmp_path / 'p.npz')])
        with numpy.load(out, allow_pickle=False) as f:
            npz[protocol] = {k: f[k] for k in f.files if k != '_meta'}
        pkl.unlink()
    assert npz[2].keys() == npz[4].keys() == npz[5].keys()
    for name, value in npz[2].items():
        numpy.testing.assert_array_equal(npz[4][name], value)
        numpy.testing.assert_array_equal(npz[5][name], value)


# --- item 7: non-finite weights, negative variances ---

@pytest.fixture(scope='module')
def c4_blobs():
    return detectron_blobs('c4', seed=1, momentum=False)


@pytest.mark.parametrize('value', [numpy.nan, numpy.inf, -numpy.inf, 1e300])
def test_non_finite_blob_is_refused_by_name(c4_blobs, value):
    blobs = dict(c4_blobs)
    w = blobs['res3_1_branch2b_w'].astype(numpy.float64)
    w[1, 2, 0, 0] = value  # 1e300 is finite, but not as float32
    blobs['res3_1_branch2b_w'] = w
    with pytest.raises(ConversionError,
                       match=r'^m\.pkl: blob res3_1_branch2b_w holds 1 NaN'):
        detectron.convert_file({'blobs': blobs}, 'auto', 'm.pkl')


def test_non_finite_blob_from_the_command_line(tmp_path):
    blobs = write_imagenet_pickle(str(tmp_path / 'R-50.pkl'), seed=8)
    blobs['res2_0_branch2a_w'][0, 0, 0, 0] = numpy.nan
    path = _dump(tmp_path, blobs, 'R-50.pkl')
    assert_refused(tmp_path, [str(path)], path, 'res2_0_branch2a_w', 'NaN')


@pytest.fixture(scope='module')
def fpn_state():
    return detectron2_state('fpn', seed=4)


@pytest.mark.parametrize('name, value, words', [
    ('backbone.bottom_up.res3.1.conv2.norm.running_var', -0.5,
     'negative values'),
    ('roi_heads.box_head.fc1.weight', numpy.nan, 'NaN'),
    ('pixel_mean', numpy.array([1., 2., 3., 4.]), 'expected 3 finite'),
    ('pixel_std', numpy.array([1., 0., 1.]), 'expected 3 finite positive'),
])
def test_detectron2_values_refused_by_name(fpn_state, name, value, words):
    state = dict(fpn_state)
    if name in state:
        state[name] = state[name].copy()
        state[name].ravel()[3] = value
    else:
        state[name] = value
    with pytest.raises(ConversionError, match=r'^d2\.pkl: tensor ' +
                       name.replace('.', r'\.') + '.*' + words):
        detectron.convert_file({'model': state}, 'auto', 'd2.pkl')


# --- item 8: the output may not replace the input, and must be writable

def test_output_equal_to_the_input_is_refused_before_reading(tmp_path):
    path = tmp_path / 'model_final.pkl'
    path.write_bytes(b'not even a pickle')  # refused before it is read
    os.symlink(str(path), str(tmp_path / 'link.npz'))
    for out in (str(path), os.path.join(str(tmp_path), '.', path.name),
                str(tmp_path / 'link.npz')):
        assert_refused(tmp_path, [str(path), '-o', out], path,
                       'is the input file')


@pytest.mark.parametrize('out, words', [
    ('folder', 'is a directory'),
    ('a_file/out.npz', 'is not a folder'),
    ('a_file/deeper/out.npz', 'is not a folder'),
])
def test_unwritable_output_is_refused_before_reading(tmp_path, out, words):
    path = tmp_path / 'model_final.pkl'
    path.write_bytes(b'not even a pickle')
    (tmp_path / 'folder').mkdir()
    (tmp_path / 'a_file').write_text('x')
    out = str(tmp_path / out)
    assert_refused(tmp_path, [str(path), '-o', out], 'output ' + out, words)


@pytest.mark.skipif(os.geteuid() == 0, reason='root writes anywhere')
def test_read_only_output_folder(tmp_path):
    path = tmp_path / 'model_final.pkl'
    path.write_bytes(b'not even a pickle')
    (tmp_path / 'ro').mkdir(mode=0o555)
    out = str(tmp_path / 'ro' / 'o.npz')
    assert_refused(tmp_path, [str(path), '-o', out], 'output ' + out,
                   'is not writable')


def test_failed_write_is_one_error(tmp_path, monkeypatch):
    write_imagenet_pickle(str(tmp_path / 'R-50.pkl'), seed=9)

    def full_disk(path, model, meta):
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(dp, 'save_model', full_disk)
    with pytest.raises(ConversionError,
                       match='cannot write .*out.npz: No space left'):
        dp.main([str(tmp_path / 'R-50.pkl'), '-o', str(tmp_path / 'out.npz')])


# --- item 13: blobs of the wrong kind, one line naming file and blob ---

def _res4(value):
    return {'res4_{}_branch2a_w'.format(i): value for i in range(6)}


@pytest.mark.parametrize('blobs, words', [
    ({3: numpy.zeros(2, 'f4')}, ['blob name 3 is not a str']),
    ({b'conv1_w': numpy.zeros(2, 'f4')}, ["blob name b'conv1_w'"]),
    ({'conv1_w': numpy.array(['ab'])}, ['conv1_w has dtype U2']),
    ({'conv1_w': numpy.array([b'ab'])}, ['conv1_w has dtype S2']),
    ({'conv1_w': numpy.zeros(2, 'c8')}, ['conv1_w has dtype c8']),
    ({'conv1_w': numpy.zeros(2, 'i4,f4')}, ['conv1_w has dtype V8']),
    ({'conv1_w': numpy.array([1., 2.], object)}, ['conv1_w has dtype O8']),
    ({'bad\nname\x1b[2J': numpy.zeros(2, 'c8')},
     ['bad\\nname\\x1b[2J has dtype c8']),
    (dict(_res4(numpy.zeros(1, 'f4')), conv_rpn_w=numpy.zeros(1, 'f4')),
     ['cls_score_w missing']),
    (dict(_res4(numpy.zeros(1, 'f4')), conv_rpn_w=numpy.zeros(1, 'f4'),
          cls_score_w=numpy.zeros((), 'f4')), ['cls_score_w has shape ()']),
])
def test_wrong_blobs_are_named(tmp_path, blobs, words):
    path = _dump(tmp_path, {'blobs': blobs})
    assert_refused(tmp_path, [str(path)], path, *words)


def _d2_heads(**extra):
    """Just enough of a detectron2 FPN checkpoint to be recognised."""
    zero = numpy.zeros(1, 'f4')
    state = {'backbone.bottom_up.res4.{}.conv1.weight'.format(i): zero
             for i in range(6)}
    state.update({'backbone.fpn_lateral2.weight': zero,
                  'roi_heads.box_predictor.cls_score.weight':
                      numpy.zeros((81, 1), 'f4')}, **extra)
    return {'model': state}


@pytest.mark.parametrize('extra, words', [
    ({'pixel_mean': numpy.ones((4, 1, 1), 'f4')}, 'pixel_mean is [1., 1.'),
    ({'pixel_std': numpy.array([57., 0., 57.], 'f4')}, 'pixel_std is ['),
])
def test_detectron2_pixel_statistics(tmp_path, extra, words):
    path = _dump(tmp_path, _d2_heads(**extra), 'model_final_f10217.pkl')
    assert_refused(tmp_path, [str(path)], path, words, 'expected 3')


# --- garbage in, one line out ---

@pytest.mark.parametrize('make, words', [
    (lambda p: p.write_bytes(b''), 'not a readable pickle'),
    (lambda p: p.write_bytes(numpy.random.RandomState(0).bytes(4096)),
     'not a readable pickle'),
    (lambda p: p.write_text('{"blobs": {"conv1_w": [1, 2]}}'),
     'not a readable pickle'),
    (lambda p: p.mkdir(), 'is a directory'),
    (lambda p: None, 'file not found'),
    # BINBYTES8 declaring 64 GiB in an 11-byte file.
    (lambda p: p.write_bytes(b'\x80\x04\x8e' +
                             (1 << 36).to_bytes(8, 'little')),
     'not a readable pickle'),
])
def test_garbage_inputs(tmp_path, make, words):
    path = tmp_path / 'model_final.pkl'
    make(path)
    run = assert_refused(tmp_path, [str(path)], path, words)
    assert run.rss_mib < MAX_RSS_MIB


# --- item 17: --help states each default once ---

def test_help_states_each_default_once(tmp_path):
    run = run_parser(['--help'], tmp_path)
    assert run.code == 0
    text = ' '.join(run.stdout.split())
    assert 'None' not in text
    assert text.count('(default:') == 3
    for default in ('(default: modelfiles/model_final.pkl)',
                    '(default: beside the input, named <name>_<arch>.npz)',
                    '(default: auto, detected from the names)'):
        assert default in text
