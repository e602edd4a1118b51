"""The runtime metadata of an ONNX file has the npz metadata's ranges, and
the graph's class and anchor counts must agree with it
(``onnx_predict.runtime_problem``, ``graph_problem``); checked on the
JSON, without onnxruntime."""
import copy
from types import SimpleNamespace

import pytest

from utils.deploy.onnx_predict import graph_problem, runtime_problem

GOOD = {
    'format': 1, 'arch': 'fpn', 'min_size': 800, 'max_size': 1333,
    'pad_stride': 32, 'rpn_strides': [4, 8, 16, 32, 64],
    'cell_anchors': [[[-22., -10., 25., 13.]] * 3] * 5,
    'proposals': {'pre_nms_top_n': [2000, 1000],
                  'post_nms_top_n': [2000, 1000],
                  'collect_top_n': [2000, 1000], 'nms_thresh': 0.7,
                  'min_size': 0., 'box_offset': 1},
    'k_min': 2, 'bbox_reg_weights': [10., 10., 5., 5.], 'mask_thresh': 0.5}


def _edit(key, value):
    rt = copy.deepcopy(GOOD)
    if key.startswith('proposals.'):
        rt['proposals'][key[len('proposals.'):]] = value
    else:
        rt[key] = value
    return rt


def test_the_exported_values_pass():
    assert runtime_problem(GOOD) is None
    c4 = _edit('rpn_strides', [16])
    c4['cell_anchors'] = GOOD['cell_anchors'][:1]
    assert runtime_problem(c4) is None
    assert runtime_problem(_edit('proposals.collect_top_n', None)) is None


@pytest.mark.parametrize('key, value, words', [
    ('min_size', 100000, "'min_size' is 100000, expected an integer in "
     '[1, 4096]'),
    ('pad_stride', 0, "'pad_stride' is 0, expected an integer in [1, 128]"),
    ('rpn_strides', [0, 8, 16, 32, 64], "'rpn_strides' is [0, 8, 16, 32, "
     '64], expected one of [[16], [4, 8, 16, 32, 64]]'),
    ('rpn_strides', [4, 8, 16, 32, 128], "'rpn_strides' is [4, 8, 16, 32, "
     '128]'),
    ('bbox_reg_weights', [10, 10, 5, 0], "'bbox_reg_weights' is [10, 10, "
     '5, 0], expected a number in [0.001, 1000.0]'),
    ('mask_thresh', float('nan'), "'mask_thresh' is nan"),
    ('proposals.nms_thresh', float('nan'), "'proposals.nms_thresh' is "
     'nan'),
    ('proposals.pre_nms_top_n', [10 ** 9, 1000], "'proposals.pre_nms_top_n'"
     ' is [1000000000, 1000], expected an integer in [1, 100000]'),
    ('cell_anchors', [[[0, 0, 1e9, 1]]] * 5, "'cell_anchors' is not one "
     'list'),
    ('cell_anchors', [[[0, 0, 1, 1]]] * 4, "'cell_anchors' is not one "
     'list'),
    ('k_min', -1, "'k_min' is -1, expected an integer in [0, 8]"),
    ('proposals', None, "'proposals' is not an object")])
def test_a_field_out_of_range_is_named(key, value, words):
    problem = runtime_problem(_edit(key, value))
    assert problem is not None and words in problem, problem


def _session(n_class, n_anchors=3):
    outputs = [SimpleNamespace(name='rpn_logits_{}'.format(j),
                               shape=[1, 'h', 'w', n_anchors])
               for j in range(5)]
    outputs.append(SimpleNamespace(name='cls_score', shape=['r', n_class]))
    return SimpleNamespace(get_outputs=lambda: outputs)


def test_coco_names_on_a_three_class_graph_are_refused():
    assert graph_problem(_session(4), {'n_fg_class': 3}, GOOD) is None
    assert graph_problem(_session(81), {}, GOOD) is None  # COCO's default
    assert graph_problem(_session(4), {}, GOOD) == (
        'its graph scores 4 classes (background included), its metadata '
        'n_fg_class is 80')


def test_anchors_per_level_must_be_the_graphs():
    assert graph_problem(_session(81, n_anchors=9), {}, GOOD) == (
        'its graph scores 9 anchors at RPN level 0, its runtime metadata '
        'has 3')
