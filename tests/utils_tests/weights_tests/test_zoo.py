"""Weights by name (utils/weights/zoo.py, utils/weights/download.py),
against a local stand-in of the model zoos on 127.0.0.1: a good file is
downloaded once, converted and then used without a request; a broken
download (404, refused connection, truncated, oversized, refused by the
MD5 or by the converter) is one line naming the URL and the file to
place by hand, and leaves nothing in the cache."""
import hashlib
import io
import os
import pickle

import numpy
import pytest

from utils.weights import zoo
from utils.weights.download import DownloadError, Progress, fetch
from utils.weights.model_io import read_meta
from utils.weights.zoo import ZooError, weights_file
from tests.helpers.crafted_pickles import touch_payload
from tests.helpers.synthetic_weights import write_imagenet_pickle
from tests.helpers.zoo_server import Route, ZooServer, closed_port_url

R50 = zoo.CATALOGUE['R-50.pkl'].path
D2_FPN = zoo.CATALOGUE['mask_rcnn_R_50_FPN_3x'].path


@pytest.fixture(scope='module')
def r50(tmp_path_factory):
    """(blobs, bytes) of a synthetic Detectron ImageNet R-50.pkl."""
    path = str(tmp_path_factory.mktemp('r50') / 'R-50.pkl')
    blobs = write_imagenet_pickle(path, 50, seed=3)
    with open(path, 'rb') as f:
        return blobs, f.read()


@pytest.fixture
def server():
    with ZooServer() as s:
        yield s


def _fetch(name, folder, url, models_only=False):
    logs, progress = [], io.StringIO()
    path = weights_file(name, models_only, str(folder), url, logs.append,
                        progress)
    return path, logs, progress.getvalue()


def _refused(name, folder, url, *words):
    """The one-line error of fetching ``name``, which names the URL and
    the manual path; nothing is left in the cache."""
    with pytest.raises(ZooError) as e:
        _fetch(name, folder, url)
    line = str(e.value)
    assert '\n' not in line
    pkl = os.path.join(str(folder), name if name.endswith('.pkl')
                       else name + '.pkl')
    assert url + zoo.CATALOGUE[name].path in line, line
    assert 'place it at {}'.format(pkl) in line, line
    for word in words:
        assert word in line, line
    assert not os.path.exists(str(folder)) or os.listdir(str(folder)) == []
    return line


@pytest.mark.slow
def test_good_file_is_downloaded_once_and_converted(r50, server, tmp_path):
    blobs, body = r50
    server.routes[R50] = Route(body)
    path, logs, progress = _fetch('R-50.pkl', tmp_path / 'cache', server.url)
    assert path == str(tmp_path / 'cache' / 'R-50.npz')
    assert server.requests == [R50]
    assert sorted(os.listdir(str(tmp_path / 'cache'))) == ['R-50.npz',
                                                           'R-50.pkl']
    with open(str(tmp_path / 'cache' / 'R-50.pkl'), 'rb') as f:
        assert f.read() == body
    with numpy.load(path) as npz:
        numpy.testing.assert_array_equal(npz['conv1/conv/W'],
                                         blobs['conv1_w'])
        numpy.testing.assert_array_equal(npz['res5/2/branch2c/norm/bias'],
                                         blobs['res5_2_branch2c_bn_b'])
    meta = read_meta(path)
    assert meta['kind'] == 'backbone' and meta['depth'] == 50
    assert meta['source']['sha256'] == hashlib.sha256(body).hexdigest()
    assert meta['source']['url'] == server.url + R50
    assert 'sha256 {}'.format(hashlib.sha256(body).hexdigest()) in logs
    # Plain progress lines (not a terminal): ten steps, then the total.
    lines = progress.splitlines()
    assert '\r' not in progress and len(lines) == 11, lines
    assert lines[-1].strip().startswith('100% ')
    # The second call uses the npz: no request, nothing logged.
    again, logs, progress = _fetch('R-50.pkl', tmp_path / 'cache',
                                   server.url)
    assert again == path and logs == [] and progress == ''
    assert server.requests == [R50]


@pytest.mark.slow
def test_a_file_placed_by_hand_is_converted_without_a_request(r50,
                                                              tmp_path):
    blobs, body = r50
    (tmp_path / 'R-50.pkl').write_bytes(body)
    path, logs, _ = _fetch('R-50.pkl', tmp_path, closed_port_url())
    with numpy.load(path) as npz:
        numpy.testing.assert_array_equal(npz['res4/5/branch2b/conv/W'],
                                         blobs['res4_5_branch2b_w'])
    assert logs[0].startswith('converting R-50.pkl once to ')


@pytest.mark.slow
def test_wrong_depth_is_refused(r50, server, tmp_path):
    server.routes[zoo.CATALOGUE['R-101.pkl'].path] = Route(r50[1])
    _refused('R-101.pkl', tmp_path, server.url,
             'holds a ResNet-50, expected ResNet-101')


def test_404(server, tmp_path):
    _refused('R-50.pkl', tmp_path, server.url, 'HTTP 404')
    assert server.requests == [R50]


def test_no_network(tmp_path):
    _refused('e2e_mask_rcnn_R-50-FPN_1x', tmp_path, closed_port_url(),
             'refused')


def test_truncated_download(server, tmp_path):
    server.routes[R50] = Route(b'\x80\x02}q\x00' + b'x' * 995, length=5000)
    _refused('R-50.pkl', tmp_path, server.url,
             'truncated', '1000 of the 5000 bytes')


def test_announced_size_above_the_bound_is_refused_before_reading(
        server, tmp_path):
    size = zoo.CATALOGUE['R-50.pkl'].max_bytes + 1
    server.routes[R50] = Route(b'x' * 1000, length=size)
    _refused('R-50.pkl', tmp_path, server.url,
             'announces {} bytes'.format(size))


def test_unannounced_size_above_the_bound_is_refused(server, tmp_path,
                                                     monkeypatch):
    entry = zoo.CATALOGUE['R-50.pkl']
    monkeypatch.setitem(zoo.CATALOGUE, 'R-50.pkl',
                        zoo.Entry(entry.path, 'backbone', 50, 4096))
    server.routes[R50] = Route(b'x' * 10000, length=None)
    _refused('R-50.pkl', tmp_path, server.url, 'more than the 4096 bytes')


def test_detectron2_md5_prefix_is_checked(server, tmp_path):
    body = b'not the checkpoint'
    assert not hashlib.md5(body).hexdigest().startswith('f10217')
    server.routes[D2_FPN] = Route(body)
    _refused('mask_rcnn_R_50_FPN_3x', tmp_path, server.url,
             'MD5 starts with {}'.format(hashlib.md5(body).hexdigest()[:6]),
             'f10217')


def test_converter_refusal(server, tmp_path):
    server.routes[R50] = Route(pickle.dumps(
        {'conv1_w': numpy.zeros((64, 3, 7, 7), numpy.float32)}, protocol=2))
    line = _refused('R-50.pkl', tmp_path, server.url,
                    'res4 has 0 blocks')
    assert '.part' not in line  # the temporary file is not named


def test_a_file_that_would_run_code_is_refused(server, tmp_path):
    marker = tmp_path / 'ran'
    server.routes[R50] = Route(pickle.dumps(touch_payload(str(marker)),
                                            protocol=2))
    _refused('R-50.pkl', tmp_path / 'cache', server.url, 'system')
    assert not marker.exists()


def test_bad_file_placed_by_hand_names_it(tmp_path):
    (tmp_path / 'e2e_mask_rcnn_R-50-C4_1x.pkl').write_bytes(b'junk')
    with pytest.raises(ZooError) as e:
        _fetch('e2e_mask_rcnn_R-50-C4_1x', tmp_path, closed_port_url())
    assert str(tmp_path / 'e2e_mask_rcnn_R-50-C4_1x.pkl') in str(e.value)
    assert 'fresh download of http://127.0.0.1' in str(e.value)
    # The user's file stays, and no npz was written.
    assert os.listdir(str(tmp_path)) == ['e2e_mask_rcnn_R-50-C4_1x.pkl']


def test_md5_and_sha256_of_an_entry(tmp_path):
    path = tmp_path / 'f'
    path.write_bytes(b'abc')
    md5, sha = hashlib.md5(b'abc').hexdigest(), hashlib.sha256(
        b'abc').hexdigest()
    zoo._check_digest(str(path), zoo.Entry('', 'c4', 50, 9, md5[:6], sha),
                      None)
    with pytest.raises(ValueError, match='SHA-256 is ' + sha):
        zoo._check_digest(str(path), zoo.Entry('', 'c4', 50, 9, md5[:6],
                                               '0' * 64), None)


def test_names_and_paths(tmp_path, monkeypatch):
    assert weights_file('model.npz') == 'model.npz'  # a path: untouched
    with pytest.raises(ZooError, match='ImageNet backbone'):
        _fetch('R-50.pkl', tmp_path, closed_port_url(), models_only=True)
    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path / 'c'))
    monkeypatch.setenv(zoo.URL_ENV, 'http://mirror/zoo')
    assert zoo.cache_dir() == str(tmp_path / 'c')
    assert zoo.base_url() == 'http://mirror/zoo/'
    monkeypatch.delenv(zoo.CACHE_ENV)
    monkeypatch.delenv(zoo.URL_ENV)
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'x'))
    assert zoo.cache_dir() == str(tmp_path / 'x' / 'mask-rcnn-chainer')
    assert zoo.base_url() == 'https://dl.fbaipublicfiles.com/'


def test_only_http_urls_are_opened(tmp_path):
    secret = tmp_path / 'secret'
    secret.write_bytes(b'local')
    with pytest.raises(DownloadError, match='not an http'):
        fetch('file://' + str(secret), str(tmp_path / 'out'), 100)
    assert not (tmp_path / 'out').exists()


def test_progress_on_a_terminal_is_one_redrawn_bar():
    class Tty(io.StringIO):
        def isatty(self):
            return True
    stream = Tty()
    progress = Progress(4 << 20, stream)
    for done in (1 << 20, 4 << 20):
        progress.last_draw = 0.  # draw each step
        progress.update(done)
    progress.finish(4 << 20)
    text = stream.getvalue()
    assert text.count('\n') == 1 and text.endswith('\n')
    assert text.split('\r')[-1].strip() == \
        '|{}| 100% 4.0 of 4.0 MiB'.format('#' * 30)
