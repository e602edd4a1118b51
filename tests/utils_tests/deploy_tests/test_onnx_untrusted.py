"""ONNX files from outside: external data outside the model's folder is
refused before onnxruntime reads it, a graph that is not an export of
``utils/export_onnx.py`` and metadata of the wrong JSON types are one
``OnnxModelError`` line naming the file, and a fuzz of truncated,
flipped and retyped files keeps it so."""
import json
import os

import numpy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

onnx = pytest.importorskip('onnx')
pytest.importorskip('onnxruntime')

from tests.helpers.onnx_models import images, write_npz  # noqa: E402
from utils.deploy.onnx_predict import (  # noqa: E402
    OnnxMaskRCNN, OnnxModelError)
from utils.weights.model_io import ModelFileError, check_meta  # noqa: E402


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    """(path of an fpn-tiny export, its proto, its detections on a test
    image)."""
    from utils import export_onnx
    folder = tmp_path_factory.mktemp('onnx')
    npz = write_npz('fpn-tiny', folder / 'model.npz')
    path = str(folder / 'model.onnx')
    export_onnx.main([str(npz), '-o', path])
    dets = OnnxMaskRCNN(path).predict([images()[0]])
    return path, onnx.load(path), dets


def _save(proto, path):
    with open(str(path), 'wb') as f:
        f.write(proto.SerializeToString())
    return str(path)


def _one_line(path, *words):
    with pytest.raises(OnnxModelError) as info:
        OnnxMaskRCNN(str(path))
    text = str(info.value)
    assert '\n' not in text and str(path) in text, text
    for word in words:
        assert word in text, text
    return text


def _externalise(proto, location, data_folder):
    """A copy of ``proto`` whose largest initializer lies in the file
    ``location`` (relative to the model), written under ``data_folder``."""
    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    tensor = max(proto.graph.initializer, key=lambda t: len(t.raw_data))
    os.makedirs(os.path.dirname(os.path.join(data_folder, location)) or '.',
                exist_ok=True)
    with open(os.path.join(data_folder, location), 'wb') as f:
        f.write(tensor.raw_data)
    del tensor.external_data[:]
    for key, value in (('location', location), ('offset', '0'),
                       ('length', str(len(tensor.raw_data)))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    tensor.data_location = onnx.TensorProto.EXTERNAL
    tensor.ClearField('raw_data')
    return proto


def _same(a, b):
    for x, y in zip(a, b):
        for u, v in zip(x, y):
            numpy.testing.assert_array_equal(u, v)


def test_external_data_inside_the_folder_is_read(exported, tmp_path):
    path, proto, dets = exported
    model = tmp_path / 'm'
    model.mkdir()
    ext = _externalise(proto, 'weights/w.bin', str(model))
    # A link inside the folder is the user's own: followed.
    os.symlink(str(model / 'weights' / 'w.bin'), str(model / 'link.bin'))
    for location in ('weights/w.bin', 'link.bin', 'weights/../link.bin'):
        entry = max(ext.graph.initializer, key=lambda t: len(
            t.external_data)).external_data[0]
        entry.value = location
        _same(OnnxMaskRCNN(_save(ext, model / 'x.onnx')).predict(
            [images()[0]]), dets)


@pytest.mark.parametrize('location, words', [
    ('../secret.bin', 'leads out of the model\'s folder'),
    ('a/../../secret.bin', 'leads out of the model\'s folder'),
    (None, 'is an absolute path'),
])
def test_external_data_outside_the_folder_is_refused(exported, tmp_path,
                                                     monkeypatch, location,
                                                     words):
    import onnxruntime
    path, proto, _ = exported
    model = tmp_path / 'm'
    model.mkdir()
    secret = tmp_path / 'secret.bin'
    location = location or str(secret)
    ext = _externalise(proto, location, str(model))
    assert secret.exists()  # the data is there: it would have been read

    def no_session(*args, **kwargs):
        raise AssertionError('onnxruntime opened the file')

    monkeypatch.setattr(onnxruntime, 'InferenceSession', no_session)
    _one_line(_save(ext, model / 'x.onnx'), repr(location), words)


def _with_props(proto, **props):
    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    old = {p.key: p.value for p in proto.metadata_props}
    old.update(props)
    onnx.helper.set_model_props(proto, old)
    return proto


def _runtime(proto):
    return json.loads({p.key: p.value for p in proto.metadata_props}
                      ['runtime'])


def test_a_graph_that_is_not_mask_rcnn_is_refused(exported, tmp_path):
    _, proto, _ = exported
    bare = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node('Relu', ['image'], ['y'])], 'g',
        [onnx.helper.make_tensor_value_info('image', 1, [1, 3, 4, 4])],
        [onnx.helper.make_tensor_value_info('y', 1, [1, 3, 4, 4])]),
        opset_imports=[onnx.helper.make_opsetid('', 16)])
    bare = _with_props(bare, **{p.key: p.value for p in
                                proto.metadata_props})
    _one_line(_save(bare, tmp_path / 'bare.onnx'),
              'not a Mask R-CNN graph', 'features_0')


@pytest.mark.parametrize('key, value, words', [
    ('min_size', '800', "'min_size' is '800', expected an integer"),
    ('cell_anchors', [[1, 2]], "'cell_anchors'"),
    ('rpn_strides', [4, 8, 'x'], "'rpn_strides'"),
    ('bbox_reg_weights', [10, 10, 5], "'bbox_reg_weights'"),
    ('proposals', {'nms_thresh': 0.7}, "'pre_nms_top_n' is missing"),
    ('k_min', None, "'k_min' is None"),
    ('mask_thresh', True, "'mask_thresh' is True"),
])
def test_runtime_metadata_of_wrong_types_is_one_line(exported, tmp_path,
                                                     key, value, words):
    _, proto, _ = exported
    runtime = dict(_runtime(proto), **{key: value})
    _one_line(_save(_with_props(proto, runtime=json.dumps(runtime)),
                    tmp_path / 'x.onnx'), words)


def test_metadata_nested_deep_is_one_line(exported, tmp_path):
    _, proto, _ = exported
    _one_line(_save(_with_props(proto, meta='[' * 100000 + ']' * 100000),
                    tmp_path / 'x.onnx'), 'no Mask R-CNN metadata')


def test_demo_refuses_a_bad_onnx_in_one_line(exported, tmp_path):
    import demo
    _, proto, _ = exported
    bad = _save(_with_props(proto, runtime='{"format": 1}'),
                tmp_path / 'x.onnx')
    with pytest.raises(OnnxModelError, match="'conventions' is missing"):
        demo.main(['--backend', 'onnxruntime', '--modelfile', bad,
                   '--out', str(tmp_path / 'o.png')])
    assert not os.path.exists(str(tmp_path / 'o.png'))


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) |
    st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=6)
FUZZ = settings(max_examples=40, deadline=10000, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


def _run(path):
    """OnnxMaskRCNN and one prediction: nothing but one line of
    OnnxModelError or ModelFileError may come out."""
    try:
        model = OnnxMaskRCNN(path)
        check_meta(model.meta, path)  # as demo.py does
        model.predict([images()[0][:, :96, :96]])
    except (OnnxModelError, ModelFileError) as e:
        assert '\n' not in str(e) and path in str(e), str(e)


@FUZZ
@given(key=st.sampled_from(['conventions', 'proposals', 'cell_anchors',
                            'rpn_strides', 'min_size', 'pad_stride',
                            'k_min', 'bbox_reg_weights', 'mask_thresh',
                            'format']), value=_JSON)
def test_fuzz_runtime_types(exported, tmp_path, key, value):
    _, proto, _ = exported
    runtime = _runtime(proto)
    if type(value) is type(runtime[key]):
        return  # same type: a range, checked with the other metadata
    runtime[key] = value
    _run(_save(_with_props(proto, runtime=json.dumps(runtime)),
               tmp_path / 'x.onnx'))


@FUZZ
@given(cut=st.floats(0, 1), flips=st.lists(st.tuples(
    st.floats(0, 1), st.integers(1, 255)), max_size=4))
def test_fuzz_truncated_and_flipped_files(exported, tmp_path, cut, flips):
    path, _, _ = exported
    with open(path, 'rb') as f:
        data = bytearray(f.read())
    for where, mask in flips:  # the graph structure, not the weights
        i = int(where * min(len(data), 3000))
        data[i] ^= mask
    data = bytes(data[:max(1, int(cut * len(data)))] if cut < 0.98
                 else data)
    bad = tmp_path / 'x.onnx'
    bad.write_bytes(data)
    _run(str(bad))


def test_the_wire_reader_finds_what_onnx_finds(exported):
    # The reference: onnx's own parser. Every initializer and Constant
    # tensor of the export is seen by the check.
    from utils.deploy.onnx_checks import _model_tensors
    path, proto, _ = exported
    with open(path, 'rb') as f:
        found = list(_model_tensors(memoryview(f.read())))
    constants = [a.t for n in proto.graph.node for a in n.attribute
                 if a.HasField('t')]
    assert len(found) == len(proto.graph.initializer) + len(constants)
    assert set(bytes(t) for t in found) == {
        t.SerializeToString() for t in list(proto.graph.initializer) +
        constants}


def test_external_data_in_a_subgraph_is_refused(exported, tmp_path):
    from utils.deploy.onnx_checks import check_external_data
    _, proto, _ = exported
    inner = _externalise(proto, '../../w.bin', str(tmp_path / 'a' / 'b'))
    weight = max(inner.graph.initializer, key=lambda t: len(t.external_data))
    branch = onnx.helper.make_graph(
        [onnx.helper.make_node('Identity', [weight.name], ['z'])], 'branch',
        [], [onnx.helper.make_tensor_value_info('z', 1, None)], [weight])
    node = onnx.helper.make_node('If', ['c'], ['y'], then_branch=branch,
                                 else_branch=branch)
    outer = onnx.helper.make_model(onnx.helper.make_graph(
        [node], 'g', [onnx.helper.make_tensor_value_info('c', 9, [])],
        [onnx.helper.make_tensor_value_info('y', 1, None)]))
    path = _save(outer, tmp_path / 'x.onnx')
    with pytest.raises(OnnxModelError, match=r"\.\./\.\./w\.bin.*leads out"):
        check_external_data(path)
