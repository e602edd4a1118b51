"""Crafted models of every architecture and norm, exported once per
session."""
import pytest

from tests.helpers.onnx_models import CASES, case_id, write_npz


@pytest.fixture(scope='session', params=CASES,
                ids=[case_id(*c) for c in CASES])
def pair(request, tmp_path_factory):
    """(arch, norm (None: the preset's), Chainer model, path of its .onnx,
    path of its npz)."""
    pytest.importorskip('onnx')
    pytest.importorskip('onnxruntime')
    from utils import export_onnx  # needs onnx: after the skip above
    from utils.weights.model_io import load_model
    arch, norm = request.param
    folder = tmp_path_factory.mktemp(case_id(arch, norm))
    npz = str(write_npz(arch, folder / 'model.npz', norm=norm))
    onnx_path = str(folder / 'model.onnx')
    export_onnx.main([npz, '-o', onnx_path])
    model, _ = load_model(npz)
    return arch, norm, model, onnx_path, npz
