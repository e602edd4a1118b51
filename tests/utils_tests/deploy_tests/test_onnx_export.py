"""The exported file: a valid ONNX model (``onnx.checker``) with the npz
metadata, Detectron's ROIAlign mode, C4's shared res5 stored once; and
bad inputs refused in one line, by the exporter and by the predictor."""
import json
import os
import subprocess
import sys

import numpy
import pytest

onnx = pytest.importorskip('onnx')
pytest.importorskip('onnxruntime')

from utils.deploy.onnx_predict import OnnxMaskRCNN, OnnxModelError  # noqa
from utils.weights.model_io import read_meta  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))


def test_checker_metadata_and_roi_align(pair):
    arch, _, model, path, npz = pair
    onnx.checker.check_model(path, full_check=True)
    proto = onnx.load(path)
    assert [o.version for o in proto.opset_import] == [16]
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props['meta']) == read_meta(npz)
    runtime = json.loads(props['runtime'])
    assert runtime['arch'] == arch
    assert runtime['min_size'] == 128 and runtime['max_size'] == 160
    numpy.testing.assert_array_equal(runtime['cell_anchors'][0],
                                     model.cell_anchors[0])
    aligns = [n for n in proto.graph.node if n.op_type == 'RoiAlign']
    assert len(aligns) == (2 if arch == 'c4' else 8)  # box + mask, levels
    for node in aligns:
        attrs = {a.name: onnx.helper.get_attribute_value(a)
                 for a in node.attribute}
        # Detectron's aligned=False (docs/conventions.md).
        assert attrs['coordinate_transformation_mode'] == \
            b'output_half_pixel'
        assert attrs['sampling_ratio'] == (0 if arch == 'c4' else 2)


def test_shared_res5_is_stored_once(pair):
    arch, _, _, path, _ = pair
    seen = set()
    for init in onnx.load(path).graph.initializer:
        data = onnx.numpy_helper.to_array(init)
        if data.size > 1000 and data.std() > 0:  # not a zero bias
            key = data.tobytes()
            assert key not in seen, init.name
            seen.add(key)


def _export(*args):
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, 'utils', 'export_onnx.py')] +
        [str(a) for a in args], capture_output=True, text=True, timeout=300)


def _one_line_error(proc, *words):
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith('export_onnx.py: error: '), lines
    for word in words:
        assert word in lines[0], lines[0]


def test_export_refuses_bad_inputs_in_one_line(tmp_path):
    text = tmp_path / 'notes.npz'
    text.write_text('not a zip')
    _one_line_error(_export(text), str(text))
    _one_line_error(_export(tmp_path / 'missing.npz'), 'not found')
    wrong = tmp_path / 'wrong.npz'
    numpy.savez(wrong, x=numpy.zeros(3))
    _one_line_error(_export(wrong), str(wrong))  # no arch metadata
    _one_line_error(_export(wrong, '--arch', 'fpn'), 'does not fit')
    _one_line_error(_export(wrong, '-o', wrong), 'input')
    _one_line_error(_export(wrong, '-o', tmp_path), 'directory')


def test_predictor_refuses_bad_files(tmp_path, pair):
    path = pair[3]
    truncated = tmp_path / 'truncated.onnx'
    truncated.write_bytes(open(path, 'rb').read()[:5000])
    for bad, words in ((truncated, 'not a readable ONNX model'),
                       (tmp_path / 'missing.onnx', 'not found')):
        with pytest.raises(OnnxModelError, match=words) as e:
            OnnxMaskRCNN(str(bad))
        assert len(str(e.value).splitlines()) == 1
    bare = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node('Relu', ['x'], ['y'])], 'g',
        [onnx.helper.make_tensor_value_info('x', 1, [1])],
        [onnx.helper.make_tensor_value_info('y', 1, [1])]),
        opset_imports=[onnx.helper.make_opsetid('', 16)])
    onnx.save(bare, str(tmp_path / 'bare.onnx'))
    with pytest.raises(OnnxModelError, match='no Mask R-CNN metadata'):
        OnnxMaskRCNN(str(tmp_path / 'bare.onnx'))


def test_export_refuses_a_layer_without_onnx_nodes(tmp_path, monkeypatch):
    """A model whose norm has no ONNX nodes (every arch and norm of the
    presets has them) is refused in one line naming the file and what is
    expected, and nothing is written."""
    import chainer.links as L
    from models.presets import build_mask_rcnn
    from tests.helpers.onnx_models import small_preset
    from utils import export_onnx
    model = build_mask_rcnn(small_preset('fpn-tiny'),
                            norm=lambda c: L.LayerNormalization(c))
    monkeypatch.setattr(export_onnx, 'load_model',
                        lambda path, arch: (model, {'arch': 'fpn-tiny'}))
    npz, out = str(tmp_path / 'odd.npz'), tmp_path / 'odd.onnx'
    with pytest.raises(export_onnx.ExportError) as e:
        export_onnx.main([npz, '-o', str(out)])
    assert str(e.value) == (
        '{}: cannot export its fpn-tiny model to ONNX: norm layer '
        'LayerNormalization has no ONNX export; expected AffineChannel2D, '
        'BatchNormalization or GroupNormalization'.format(npz))
    assert not out.exists()
