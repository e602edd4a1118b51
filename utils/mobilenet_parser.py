"""Convert the ImageNet MobileNetV1 caffemodel of shicai/MobileNet-Caffe to
a backbone npz for ``train.py --arch mobilenetv1-fpn --pretrained``.

    python utils/mobilenet_parser.py mobilenet.caffemodel [-o OUT.npz]

BatchNorm + Scale are folded into the frozen affine, and the Caffe input
normalisation ``(BGR - mean) * 0.017`` into conv1, so the backbone reads
this project's input (BGR minus Detectron's pixel means). The npz layout
and the one approximation (conv1's padded border) are described in
``utils/weights/mobilenet.py``. The caffemodel is read field by field from
its protobuf wire format; nothing in it is executed.
"""
import argparse
import os
import sys

if __name__ == '__main__':  # run as a script: make the repo importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))

from utils import compat  # noqa: F401,E402  (before chainer)
from utils.detectron_parser import check_output, one_line  # noqa: E402
from utils.weights.caffemodel import CaffemodelError  # noqa: E402
from utils.weights.mobilenet import convert_mobilenet  # noqa: E402
from utils.weights.model_io import ModelFileError  # noqa: E402
from utils.weights.safe_pickle import ConversionError  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='Convert shicai/MobileNet-Caffe\'s mobilenet.caffemodel '
                    '(ImageNet MobileNetV1) to a backbone npz.')
    p.add_argument('caffemodel', help='mobilenet.caffemodel')
    p.add_argument('-o', '--out', default=None,
                   help='output npz (default: beside the input, named '
                        '<name>_backbone.npz)')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if not os.path.isfile(args.caffemodel):
        raise ConversionError('caffemodel not found: {}'.format(
            args.caffemodel))
    out = args.out or '{}_backbone.npz'.format(
        os.path.splitext(args.caffemodel)[0])
    check_output(args.caffemodel, out)
    try:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        report = convert_mobilenet(args.caffemodel, out)
    except (CaffemodelError, ModelFileError) as e:  # they name the file
        raise ConversionError(str(e)) from None
    except ConversionError as e:
        raise ConversionError('{}: {}'.format(args.caffemodel, e)) from None
    except OSError as e:
        raise ConversionError('cannot write {}: {}'.format(
            out, e.strerror or e)) from None
    print('\n'.join(report))
    print('wrote {}'.format(out))
    return out


if __name__ == '__main__':
    try:
        main()
    except ConversionError as e:
        sys.exit('mobilenet_parser.py: error: {}'.format(one_line(str(e))))
