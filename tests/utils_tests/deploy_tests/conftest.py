"""Crafted models of every architecture, exported once per session."""
import pytest

from tests.helpers.onnx_models import ARCHS, write_npz


@pytest.fixture(scope='session', params=ARCHS)
def pair(request, tmp_path_factory):
    """(arch, Chainer model, path of its .onnx, path of its npz)."""
    pytest.importorskip('onnx')
    pytest.importorskip('onnxruntime')
    from utils import export_onnx  # needs onnx: after the skip above
    from utils.weights.model_io import load_model
    folder = tmp_path_factory.mktemp(request.param)
    npz = str(write_npz(request.param, folder / 'model.npz'))
    onnx_path = str(folder / 'model.onnx')
    export_onnx.main([npz, '-o', onnx_path])
    model, _ = load_model(npz)
    return request.param, model, onnx_path, npz
