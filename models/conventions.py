"""The semantic options that differ between Detectron and detectron2.

One model serves both: these options change how it reads its input and
its own outputs, never its layers. A converted npz carries them in its
metadata (``utils/weights/model_io.py``), so weights always run with the semantics
they were trained under. ``docs/conventions.md`` explains each one.

=================  ======================  ================================
option             Detectron (default)     detectron2
=================  ======================  ================================
channel_order      'BGR'                   'BGR' (INPUT.FORMAT)
pixel_mean         102.9801, 115.9465,     103.530, 116.280, 123.675
                   122.7717 (in channel    (MODEL.PIXEL_MEAN)
                   order)
pixel_std          1, 1, 1                 1, 1, 1 (MODEL.PIXEL_STD)
aligned            False: ROIAlign at      True: ROIAlignV2, half-pixel
                   ``x * scale``           shift ``x * scale - 0.5``
box_offset         1: widths ``x2-x1+1``   0: widths ``x2 - x1``
background_index   0: ``cls_score`` row 0  -1: the last row
anchors            'detectron': centre     'detectron2': centre at the
                   ``(stride-1)/2``,       cell corner (OFFSET 0), exact
                   rounded sizes,          sizes, size-major order
                   ratio-major order
paste              'detectron': resize     'detectron2': ``grid_sample``
                   to the expanded box,    at pixel centres, ``>= 0.5``
                   ``> 0.5``               (``utils/ops/masks.py``)
proposal_bounds    'padded': test-time     'image': the resized image
                   proposals are clipped   before padding
                   to the padded blob
                   (``im_info``)
resize             'detectron': OpenCV     'detectron2': Pillow bilinear
                   bilinear on mean-       on the uint8 image, sides
                   subtracted floats, one  ``int(x + 0.5)``, a scale per
                   scale                   axis (``predict`` only)
=================  ======================  ================================

``background_index`` only says where ``cls_score`` keeps the background
logit: the box head rolls it to row 0, so labels are always 0 for
background and 1..K for the classes everywhere else. Box and mask rows of
a detectron2 checkpoint (which has none for background) get an all-zero
background row on conversion; it is never read.
"""
import dataclasses

from utils.ops.image import DETECTRON_PIXEL_MEANS

CHANNEL_ORDERS = ('BGR', 'RGB')
ANCHOR_STYLES = ('detectron', 'detectron2')
PASTE_RULES = ('detectron', 'detectron2')
PROPOSAL_BOUNDS = ('padded', 'image')
RESIZES = ('detectron', 'detectron2')


@dataclasses.dataclass(frozen=True)
class Conventions:
    channel_order: str = 'BGR'
    pixel_mean: tuple = DETECTRON_PIXEL_MEANS
    pixel_std: tuple = (1., 1., 1.)
    aligned: bool = False
    box_offset: int = 1
    background_index: int = 0
    anchors: str = 'detectron'
    paste: str = 'detectron'
    proposal_bounds: str = 'padded'
    resize: str = 'detectron'

    def __post_init__(self):
        if self.channel_order not in CHANNEL_ORDERS:
            raise ValueError('channel_order must be one of {}, got {!r}'
                             .format(CHANNEL_ORDERS, self.channel_order))
        for name in ('pixel_mean', 'pixel_std'):
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) != 3:
                raise ValueError('{} must have 3 values, got {}'.format(
                    name, len(value)))
            # NaN would silently blank every image; 0-255 pixels.
            if not all(abs(v) <= 1000 for v in value):
                raise ValueError('{} must be finite numbers in [-1000, '
                                 '1000], got {}'.format(name, value))
            object.__setattr__(self, name, value)
        if self.box_offset not in (0, 1):
            raise ValueError('box_offset must be 0 or 1, got {!r}'.format(
                self.box_offset))
        if self.background_index not in (0, -1):
            raise ValueError('background_index must be 0 (first) or -1 '
                             '(last), got {!r}'.format(self.background_index))
        if self.anchors not in ANCHOR_STYLES:
            raise ValueError('anchors must be one of {}, got {!r}'.format(
                ANCHOR_STYLES, self.anchors))
        if self.paste not in PASTE_RULES:
            raise ValueError('paste must be one of {}, got {!r}'.format(
                PASTE_RULES, self.paste))
        if self.proposal_bounds not in PROPOSAL_BOUNDS:
            raise ValueError('proposal_bounds must be one of {}, got {!r}'
                             .format(PROPOSAL_BOUNDS, self.proposal_bounds))
        if self.resize not in RESIZES:
            raise ValueError('resize must be one of {}, got {!r}'.format(
                RESIZES, self.resize))
        if min(self.pixel_std) <= 0:
            raise ValueError('pixel_std must be positive, got {}'.format(
                self.pixel_std))

    def to_dict(self):
        """JSON-ready dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d):
        """Conventions from npz metadata; missing keys take Detectron's,
        except ``proposal_bounds`` and ``resize`` of a detectron2 model
        written before those options existed (its anchors say which it
        is)."""
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError('unknown convention(s): {}'.format(
                ', '.join(unknown)))
        if d.get('anchors') == 'detectron2':
            d = dict({'proposal_bounds': 'image', 'resize': 'detectron2'},
                     **d)
        return cls(**d)


DETECTRON = Conventions()

# detectron2's Base-RCNN-{C4,FPN}.yaml with MSRA (Caffe2) ImageNet weights,
# the configuration of its mask_rcnn_R_50_{C4,FPN}_{1x,3x} model-zoo files.
DETECTRON2 = Conventions(pixel_mean=(103.530, 116.280, 123.675),
                         aligned=True, box_offset=0, background_index=-1,
                         anchors='detectron2', paste='detectron2',
                         proposal_bounds='image', resize='detectron2')
