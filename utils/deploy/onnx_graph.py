"""ONNX nodes from the parameters of the project's Chainer links.

Each function appends the nodes of one link to a ``Graph`` and returns the
name of its output; arrays are (N, C, H, W) float32 as in the links.
This file holds the graph, convolutions and the heads; the backbones and
their norms are in ``onnx_backbones.py``. A link the exporter has no
nodes for raises ``UnsupportedModel``. ROIs are (x1, y1, x2, y2), the
order of both this
project (docs/conventions.md) and ONNX ``RoiAlign``, so they need no
conversion; ``aligned=False`` (Detectron) is ONNX's
``coordinate_transformation_mode='output_half_pixel'`` and ``aligned=True``
is ``'half_pixel'``.
"""
import collections

import numpy
from onnx import TensorProto, helper, numpy_helper

from functions.convolution_2d import _pair

#: RoiAlign-16 is the first with ``coordinate_transformation_mode``.
OPSET = 16


class UnsupportedModel(ValueError):
    """A link (a norm, a body, a layer setting) the exporter has no ONNX
    nodes for; the message names it and what is expected."""


class Graph:
    """Nodes, initializers, inputs and outputs of one ONNX graph.

    Parameters are cached by (link, name), so a link used twice (C4's res5,
    shared by the box and mask heads) is stored once.
    """

    def __init__(self):
        self.nodes, self.initializers = [], []
        self.inputs, self.outputs = [], []
        self._counts = collections.Counter()
        self._params = {}

    def fresh(self, hint):
        self._counts[hint] += 1
        return '{}_{}'.format(hint, self._counts[hint])

    def const(self, value, hint, dtype=numpy.float32):
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(
            numpy.ascontiguousarray(value, dtype), name))
        return name

    def param(self, link, key, make):
        """The initializer ``key`` of ``link``, ``make()`` on first use."""
        if (id(link), key) not in self._params:
            self._params[id(link), key] = self.const(make(), key)
        return self._params[id(link), key]

    def op(self, op_type, inputs, **attrs):
        out = self.fresh(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out],
                                           **attrs))
        return out

    def add_input(self, name, shape, elem_type=TensorProto.FLOAT):
        self.inputs.append(helper.make_tensor_value_info(name, elem_type,
                                                         shape))
        return name

    def add_output(self, value, name, shape):
        """Expose ``value`` under ``name`` (an Identity node)."""
        self.nodes.append(helper.make_node('Identity', [value], [name]))
        self.outputs.append(helper.make_tensor_value_info(
            name, TensorProto.FLOAT, shape))

    def make(self, name='mask_rcnn'):
        return helper.make_graph(self.nodes, name, self.inputs, self.outputs,
                                 self.initializers)


def _relu(g, x, relu):
    return g.op('Relu', [x]) if relu else x


def conv(g, link, x, relu=False, make_w=None, make_b=None):
    """A ``Convolution2D``, grouped (W (O, C/groups, kh, kw), ONNX Conv's
    ``group``: a depthwise conv has groups = C) or dilated; ``make_w`` /
    ``make_b`` replace its weights (a folded norm)."""
    w = g.param(link, 'W', make_w or (lambda: link.W.array))
    inputs = [x, w]
    if make_b is not None or link.b is not None:
        inputs.append(g.param(link, 'b', make_b or (lambda: link.b.array)))
    kh, kw = link.W.shape[2:]
    (sy, sx), (ph, pw) = _pair(link.stride), _pair(link.pad)
    y = g.op('Conv', inputs, kernel_shape=[kh, kw], strides=[sy, sx],
             pads=[ph, pw, ph, pw], group=link.groups,
             dilations=list(_pair(link.dilate)))
    return _relu(g, y, relu)


def rpn(g, link, features):
    """``models.rpn.RPNHead`` on each level: objectness logits (N, H, W, A)
    and deltas (N, H, W, A*4), channels last so that a reshape gives the
    (H, W, A) order of the anchors."""
    logits, deltas = [], []
    for x in features:
        h = conv(g, link.conv, x, relu=True)
        logits.append(g.op('Transpose', [conv(g, link.cls_logits, h)],
                           perm=[0, 2, 3, 1]))
        deltas.append(g.op('Transpose', [conv(g, link.bbox_pred, h)],
                           perm=[0, 2, 3, 1]))
    return logits, deltas


def roi_align(g, pooler, x, rois, scale):
    """ONNX RoiAlign of one level's (R, 4) rois, all of image 0."""
    # (R, 4) -> (1,) [R] -> (R,) int64 zeros: every ROI is of image 0.
    n = g.op('Slice', [g.op('Shape', [rois]),
                       g.const([0], 'zero', numpy.int64),
                       g.const([1], 'one', numpy.int64)])
    batch = g.op('ConstantOfShape', [n], value=helper.make_tensor(
        'zero', TensorProto.INT64, [1], [0]))
    mode = 'half_pixel' if pooler.aligned else 'output_half_pixel'
    return g.op('RoiAlign', [x, rois, batch], mode='avg',
                output_height=pooler.outsize, output_width=pooler.outsize,
                sampling_ratio=pooler.sampling_ratio,
                spatial_scale=float(scale),
                coordinate_transformation_mode=mode)


def pool(g, pooler, features, rois):
    """``models.poolers.ROIPooler`` given the rois of each level: their
    pooled features concatenated level by level (the caller restores the
    order, ``utils.ops.fpn_levels.group_by_level``)."""
    pooled = [roi_align(g, pooler, x, r, s)
              for x, r, s in zip(features, rois, pooler.scales)]
    return pooled[0] if len(pooled) == 1 else g.op('Concat', pooled, axis=0)


def linear(g, link, x, relu=False, rows=None):
    """``L.Linear`` on (R, ...) flattened in (C, H, W) order; ``rows``
    reorders the output rows."""
    rows = slice(None) if rows is None else rows
    h = g.op('Gemm', [g.op('Flatten', [x], axis=1),
                      g.param(link, 'W', lambda: link.W.array[rows]),
                      g.param(link, 'b', lambda: link.b.array[rows])],
             transB=1)
    return _relu(g, h, relu)


def box_predictor(g, link, h):
    """``models.box_head.BoxPredictor``: (R, K+1) logits with background at
    row 0, and (R, 4(K+1)) deltas."""
    rows = None
    if link.background_index == -1:
        n = link.cls_score.W.shape[0]
        rows = numpy.r_[n - 1, 0:n - 1]  # [1..K, bg] -> [bg, 1..K]
    return linear(g, link.cls_score, h, rows=rows), linear(g, link.bbox_pred,
                                                           h)


def mask_predictor(g, link, h):
    """``models.mask_head.MaskPredictor``: 2x2/2 deconv + ReLU, 1x1 logits."""
    d = link.deconv
    if d.outsize not in (None, (None, None)) or d.groups != 1 or \
            _pair(d.dilate) != (1, 1):
        raise UnsupportedModel(
            'mask deconvolution with outsize {}, groups {}, dilate {}; '
            'expected no outsize, groups 1, dilate 1'.format(
                d.outsize, d.groups, d.dilate))
    kh, kw = d.W.shape[2:]
    (sy, sx), (ph, pw) = _pair(d.stride), _pair(d.pad)
    h = g.op('ConvTranspose', [h, g.param(d, 'W', lambda: d.W.array),
                               g.param(d, 'b', lambda: d.b.array)],
             kernel_shape=[kh, kw], strides=[sy, sx], pads=[ph, pw, ph, pw])
    return conv(g, link.logits, g.op('Relu', [h]))
