"""Export a model npz to ONNX for ``demo.py --backend onnxruntime``.

    python utils/export_onnx.py MODEL.npz [-o MODEL.onnx]

Any model npz of ``train.py`` or a converter (archs c4, fpn, fpn-tiny,
mobilenetv1-fpn; norms affine, gn and bn, which is also what a syncbn
model is saved as) becomes one ``.onnx`` file (opset 16) holding the
backbone with the RPN, the box head and the mask head, and the npz
metadata in its ``metadata_props`` (``utils/deploy/onnx_export.py``). A
model with a layer the exporter has no ONNX nodes for is refused in one
line. Needs the ``onnx`` package (``bash setup.sh --onnx``).
"""
import argparse
import os
import sys

if __name__ == '__main__':  # run as a script: make the repo importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))

from utils import compat  # noqa: F401,E402  (before chainer)
from models.presets import ARCHS  # noqa: E402
from utils.atomic_write import OutputError  # noqa: E402
from utils.printable import printable  # noqa: E402
from utils.weights.model_io import ModelFileError, load_model  # noqa: E402


class ExportError(ValueError):
    """A refused output or a missing ``onnx`` package."""


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='Export a Mask R-CNN model npz to one ONNX file.')
    p.add_argument('npz', help='model npz (train.py or '
                               'utils/detectron_parser.py)')
    p.add_argument('--arch', choices=ARCHS, default=None,
                   help="architecture (default: the npz's metadata)")
    p.add_argument('-o', '--out', default=None,
                   help='output .onnx (default: beside the input, '
                        '<name>.onnx)')
    return p.parse_args(argv)


def check_output(npz, out):
    """Refuse an output that is a folder or the input itself."""
    if os.path.isdir(out):
        raise ExportError('output {} is a directory, expected the path of '
                          'the .onnx to write'.format(out))
    if os.path.exists(out) and os.path.exists(npz) and \
            os.path.samefile(out, npz):
        raise ExportError('output {} is the input file; refusing to '
                          'overwrite it'.format(out))
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise ExportError('output {}: folder {} does not exist'.format(
            out, folder))


def main(argv=None):
    args = parse_args(argv)
    out = args.out or os.path.splitext(args.npz)[0] + '.onnx'
    check_output(args.npz, out)
    try:
        from utils.deploy.onnx_export import (  # onnx: optional dependency
            export_onnx, save_onnx)
        from utils.deploy.onnx_graph import UnsupportedModel  # onnx too
    except ImportError as e:
        raise ExportError('exporting needs the onnx package ({}; bash '
                          'setup.sh --onnx installs it)'.format(e)) from None
    model, meta = load_model(args.npz, args.arch)
    arch = args.arch or meta['arch']
    try:
        proto = export_onnx(model, meta, arch)
    except UnsupportedModel as e:
        raise ExportError('{}: cannot export its {} model to ONNX: {}'.format(
            args.npz, arch, e)) from None
    save_onnx(proto, out)
    print('wrote {} ({} model, {} classes)'.format(
        out, arch, model.box_head.predictor.cls_score.W.shape[0] - 1))
    return out


if __name__ == '__main__':
    try:
        main()
    except (ExportError, ModelFileError, OutputError) as e:
        sys.exit('export_onnx.py: error: {}'.format(printable(e)))
    except OSError as e:
        sys.exit('export_onnx.py: error: cannot write the output: {}'.format(
            e.strerror or e))
