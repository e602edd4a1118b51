"""A Detectron model-zoo-format ``model_final.pkl``, converted by
``utils/detectron_parser.py``, exported and run on onnxruntime, gives the
Chainer model's detections (issue #18). These are Detectron's full widths
(R-50, FPN 256, the 1024-wide fc head, the 256-channel mask head, 81
classes), which the small crafted models of ``onnx_models.py`` narrow.
The pickle is random (``tests/helpers/synthetic_weights.py``); its output
layers are then calibrated as in ``onnx_models.py``, and the box head's
deltas brought within +-2 (a random R-50's are in the hundreds, every box
clipped), so that the detections are not degenerate."""
import dataclasses

import pytest

pytest.importorskip('onnx')
pytest.importorskip('onnxruntime')

import chainer  # noqa: E402
import numpy  # noqa: E402

from models.presets import get_preset, preset_overrides  # noqa: E402
from tests.helpers.onnx_models import calibrate, images  # noqa: E402
from tests.helpers.synthetic_weights import (  # noqa: E402
    write_detectron_pickle)
from tests.utils_tests.deploy_tests.test_onnx_predict import (  # noqa: E402
    assert_same)
from utils import detectron_parser, export_onnx  # noqa: E402
from utils.deploy.onnx_predict import OnnxMaskRCNN  # noqa: E402
from utils.ops.image import prepare  # noqa: E402
from utils.weights.model_io import load_model, save_model  # noqa: E402

# 128 px and 30 proposals keep R-50 within seconds on the CPU.
SMALL = dict(min_size=128, max_size=160, rpn_pre_nms_top_n=(2000, 300),
             rpn_post_nms_top_n=(2000, 30))


@pytest.mark.slow
@pytest.mark.parametrize('arch', ['fpn', 'c4'])
def test_converted_detectron_pickle(tmp_path, arch):
    pkl, npz = tmp_path / 'model_final.pkl', tmp_path / 'converted.npz'
    write_detectron_pickle(str(pkl), arch)
    detectron_parser.main([str(pkl), '-o', str(npz)])
    small = dict(SMALL, rpn_collect_top_n=(2000, 30)) if arch == 'fpn' \
        else SMALL
    model, meta = load_model(str(npz), **small)
    assert meta['arch'] == arch and meta['n_fg_class'] == 80
    calibrate(model, images()[0])
    _calibrate_box_deltas(model, images()[0])
    preset = dataclasses.replace(get_preset(arch), **small)
    calibrated = str(tmp_path / 'calibrated.npz')
    save_model(calibrated, model, dict(meta, preset=preset_overrides(
        preset)))
    export_onnx.main([calibrated, '-o', str(tmp_path / 'model.onnx')])
    ours = model.predict(images())
    theirs = OnnxMaskRCNN(str(tmp_path / 'model.onnx')).predict(images())
    for i in range(3):
        assert len(ours[0][i]) > 0, 'no detections: the test proves nothing'
        assert_same([o[i] for o in ours], [t[i] for t in theirs])


def _calibrate_box_deltas(model, img):
    x, scale, _ = prepare(img, model.min_size, model.max_size,
                          model.pad_stride)
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        features = model.extractor(x[None])
        rois = model.propose(features, x.shape[1:], scale)
        _, deltas = model.box_head(features[model.head_levels], rois,
                                   numpy.zeros(len(rois), numpy.int32))
    layer = model.box_head.predictor.bbox_pred
    factor = 2. / float(abs(deltas.array).max())
    layer.W.array *= factor
    layer.b.array *= factor
