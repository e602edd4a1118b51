"""Convert Detectron and detectron2 weights to this project's npz.

    python utils/detectron_parser.py [FILE.pkl] [-o OUT.npz]
                                     [--arch auto|c4|fpn|backbone]

The format is recognised from the file:

* Detectron ``model_final.pkl`` (Mask R-CNN R-50/101-C4 or -FPN): a model
  npz with Detectron's semantics;
* Detectron ImageNet ``R-50.pkl`` / ``R-101.pkl`` (``--arch backbone``):
  a backbone npz for ``train.py --pretrained`` (C4 or FPN);
* detectron2 ``model_final_*.pkl`` of ``mask_rcnn_R_50_{C4,FPN}_*``: a
  model npz with detectron2's semantics (``utils/weights/detectron2.py``).

Pickles are read by a restricted unpickler that rebuilds NumPy arrays and
plain containers only (``utils/weights/safe_pickle.py``): a file that tries to run
code is refused before anything runs. Detectron's ``cfg`` YAML is never
parsed.
"""
import argparse
import os
import sys

if __name__ == '__main__':  # run as a script: make the repo importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))

from utils import compat  # noqa: F401,E402  (before chainer)
from utils.weights.checks import sha256  # noqa: E402
from utils.weights.detectron import convert_file  # noqa: E402
from utils.printable import printable  # noqa: E402
from utils.weights.model_io import ModelFileError, save_model  # noqa: E402
from utils.weights.safe_pickle import ConversionError, load_pickle  # noqa


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='Convert Detectron / detectron2 Mask R-CNN weights or a '
                    'Detectron ImageNet R-50/R-101.pkl to npz.')
    p.add_argument('pkl', nargs='?', default='modelfiles/model_final.pkl',
                   help='Detectron model_final.pkl or R-50.pkl / R-101.pkl, '
                        'or detectron2 model_final_*.pkl (default: '
                        'modelfiles/model_final.pkl)')
    p.add_argument('-o', '--out', default=None,
                   help='output npz (default: beside the input, named '
                        '<name>_<arch>.npz)')
    p.add_argument('--arch', choices=('auto', 'c4', 'fpn', 'backbone'),
                   default='auto',
                   help='expected architecture, backbone for an ImageNet '
                        'R-*.pkl (default: auto, detected from the names)')
    return p.parse_args(argv)


def check_output(pkl, out):
    """Refuse an output that would replace the input or cannot be written
    (``out`` None: the default, beside the input) before any work."""
    where = 'output {}'.format(out) if out else 'output beside {}'.format(pkl)
    if out is not None and os.path.isdir(out):
        raise ConversionError('{} is a directory, expected the path of the '
                              '.npz to write'.format(where))
    if (out is not None and os.path.exists(out) and os.path.exists(pkl)
            and os.path.samefile(out, pkl)):
        raise ConversionError('{} is the input file {}; refusing to '
                              'overwrite it'.format(where, pkl))
    # The output's folder, or the nearest ancestor it will be made in.
    existing = os.path.dirname(os.path.abspath(out or pkl))
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ConversionError('{}: {} is not a folder'.format(where,
                                                              existing))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConversionError('{}: folder {} is not writable (pass -o)'
                              .format(where, existing))


def main(argv=None):
    args = parse_args(argv)
    check_output(args.pkl, args.out)
    model, meta, report = convert_file(load_pickle(args.pkl), args.arch,
                                       args.pkl)
    meta['source'].update(file=os.path.basename(args.pkl),
                          sha256=sha256(args.pkl))
    out = args.out or '{}_{}.npz'.format(os.path.splitext(args.pkl)[0],
                                         meta.get('arch', 'backbone'))
    check_output(args.pkl, out)  # the default name is known only now
    try:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        save_model(out, model, meta)
    except ModelFileError as e:  # it names ``out``
        raise ConversionError(str(e)) from None
    except OSError as e:
        raise ConversionError('cannot write {}: {}'.format(
            out, e.strerror or e)) from None
    print('\n'.join(report))
    print('wrote {}'.format(out))
    return out


def one_line(text):
    """``text`` as one printable line: names from a file may hold line
    breaks or terminal escapes (``utils.printable``)."""
    return printable(text)


if __name__ == '__main__':
    try:
        main()
    except ConversionError as e:
        sys.exit('detectron_parser.py: error: {}'.format(one_line(str(e))))
