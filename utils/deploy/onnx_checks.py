"""What an ``.onnx`` file must be before ``OnnxMaskRCNN`` uses it, each
problem one ``OnnxModelError`` line naming the file and what was expected.

* ``check_external_data``, before onnxruntime opens the file: a tensor
  stored outside the file (ONNX "external data") must lie in the model's
  folder. Its ``location`` is refused when absolute or when, normalised,
  it leads out with ``..``: onnxruntime would otherwise read any file the
  user can read (symbolic links inside the folder are the user's own and
  followed). The file is read field by field (``utils.protobuf_wire``),
  so the predictor still needs neither onnx nor protobuf.
* ``check_graph``: the graph has the inputs and outputs of
  ``utils/deploy/onnx_export.py`` for its RPN levels and head levels.
* ``check_runtime_types``: the ``runtime`` metadata has the JSON types
  ``predict`` uses (ranges are checked with the rest of the metadata).
"""

from utils.inside_folder import leaving_problem
from utils.protobuf_wire import LEN, VARINT, WireError, fields


class OnnxModelError(ValueError):
    """An ``.onnx`` file that is missing, unreadable or not an export of
    ``utils/export_onnx.py``, or onnxruntime missing."""


# Field numbers of onnx.proto: the messages that can hold a TensorProto.
MODEL_GRAPH, MODEL_TRAINING_INFO, MODEL_FUNCTIONS = 7, 20, 25
TRAINING_GRAPHS = (1, 2)              # initialization, algorithm
FUNCTION_NODE = 7
GRAPH_NODE, GRAPH_INITIALIZER, GRAPH_SPARSE_INITIALIZER = 1, 5, 15
NODE_ATTRIBUTE = 5
ATTR_TENSORS, ATTR_GRAPHS, ATTR_SPARSE = (5, 10), (6, 11), (22, 23)
SPARSE_TENSORS = (1, 2)               # values, indices
TENSOR_NAME, TENSOR_EXTERNAL_DATA, TENSOR_DATA_LOCATION = 8, 13, 14
EXTERNAL = 1                          # TensorProto.DataLocation
MAX_DEPTH = 64                        # subgraphs in subgraphs


def _len_fields(buf, numbers):
    for number, wire, value in fields(buf):
        if wire == LEN and number in numbers:
            yield number, value


def _model_tensors(buf):
    """Every TensorProto (bytes) of a ModelProto: initializers, sparse
    ones and node attributes, in graphs, subgraphs, training graphs and
    functions."""
    for number, value in _len_fields(buf, (MODEL_GRAPH, MODEL_TRAINING_INFO,
                                           MODEL_FUNCTIONS)):
        if number == MODEL_GRAPH:
            yield from _graph_tensors(value, 0)
        elif number == MODEL_TRAINING_INFO:
            for _, graph in _len_fields(value, TRAINING_GRAPHS):
                yield from _graph_tensors(graph, 0)
        else:
            for _, node in _len_fields(value, (FUNCTION_NODE,)):
                yield from _node_tensors(node, 0)


def _graph_tensors(buf, depth):
    if depth > MAX_DEPTH:
        raise WireError('subgraphs nested deeper than {}'.format(MAX_DEPTH))
    for number, value in _len_fields(buf, (GRAPH_NODE, GRAPH_INITIALIZER,
                                           GRAPH_SPARSE_INITIALIZER)):
        if number == GRAPH_INITIALIZER:
            yield value
        elif number == GRAPH_SPARSE_INITIALIZER:
            yield from (t for _, t in _len_fields(value, SPARSE_TENSORS))
        else:
            yield from _node_tensors(value, depth)


def _node_tensors(buf, depth):
    for _, attr in _len_fields(buf, (NODE_ATTRIBUTE,)):
        for number, value in _len_fields(
                attr, ATTR_TENSORS + ATTR_GRAPHS + ATTR_SPARSE):
            if number in ATTR_TENSORS:
                yield value
            elif number in ATTR_GRAPHS:
                yield from _graph_tensors(value, depth + 1)
            else:
                yield from (t for _, t in _len_fields(value, SPARSE_TENSORS))


def _external_location(tensor):
    """(name, external-data location or None) of a TensorProto; '' for an
    external tensor without a location."""
    name, location, external = '', '', False
    for number, wire, value in fields(tensor):
        if number == TENSOR_NAME and wire == LEN:
            name = bytes(value).decode('utf-8', 'replace')
        elif number == TENSOR_DATA_LOCATION and wire == VARINT:
            external = value == EXTERNAL
        elif number == TENSOR_EXTERNAL_DATA and wire == LEN:
            entry = {n: bytes(v).decode('utf-8', 'replace')
                     for n, w, v in fields(value) if w == LEN}
            if entry.get(1) == 'location':
                location = entry.get(2, '')
    return name, location if external else None


def check_external_data(path):
    """Refuse ``path`` when it is not an ONNX protobuf or a tensor's
    external data lies outside its folder (module docstring). Read with
    ``protobuf_wire``: the predictor needs neither onnx nor protobuf."""
    try:
        with open(path, 'rb') as f:
            buf = memoryview(f.read())
        tensors = [_external_location(t) for t in _model_tensors(buf)]
    except OSError as e:
        raise OnnxModelError('cannot read the ONNX model {} ({})'.format(
            path, e.strerror or e)) from None
    except WireError as e:
        raise OnnxModelError('{} is not a readable ONNX model ({})'.format(
            path, e)) from None
    for name, location in tensors:
        if location is None:
            continue
        problem = (leaving_problem(location, "the model's folder")
                   if location else 'has no location')
        if problem:
            raise OnnxModelError(
                '{}: the external data of tensor {!r}, {!r}, {}; expected '
                'a file in the model\'s folder'.format(
                    path, name, location, problem))


def check_graph(session, path, n_rpn, n_levels):
    """The inputs and outputs a Mask R-CNN export of ``n_rpn`` RPN levels
    and ``n_levels`` head levels has (``onnx_export``'s tables)."""
    n_levels = max(n_levels, 1)  # no features_ input: features_0 missing
    inputs = {i.name for i in session.get_inputs()}
    outputs = {o.name for o in session.get_outputs()}
    need_in = {'image'} | {'{}_{}'.format(kind, k) for k in range(n_levels)
                           for kind in ('features', 'box_rois',
                                        'mask_rois')}
    need_out = {'cls_score', 'bbox_pred', 'mask_logits'} | {
        '{}_{}'.format(kind, j) for j in range(n_rpn)
        for kind in ('rpn_logits', 'rpn_deltas')} | {
        'head_features_{}'.format(k) for k in range(n_levels)}
    missing = sorted(need_in - inputs) + sorted(need_out - outputs)
    if missing:
        raise OnnxModelError(
            '{} is not a Mask R-CNN graph of utils/export_onnx.py for its '
            'metadata ({} RPN levels): no {}'.format(
                path, n_rpn, ', '.join(missing[:4])))


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _numbers(v, n=None):
    return isinstance(v, list) and (n is None or len(v) == n) and all(
        _is_number(x) for x in v)


def _anchor_lists(v):
    return isinstance(v, list) and len(v) > 0 and all(
        isinstance(a, list) and len(a) > 0 and all(_numbers(b, 4) for b in a)
        for a in v)


def _pair(v):
    return isinstance(v, list) and len(v) == 2 and all(_is_int(x) for x in v)


_PROPOSALS = {
    'pre_nms_top_n': (_pair, 'a [train, test] pair of integers'),
    'post_nms_top_n': (_pair, 'a [train, test] pair of integers'),
    'collect_top_n': (lambda v: v is None or _pair(v),
                      'null or a [train, test] pair of integers'),
    'nms_thresh': (_is_number, 'a number'),
    'min_size': (_is_number, 'a number'),
    'box_offset': (_is_int, 'an integer'),
}
_RUNTIME = {
    'conventions': (lambda v: isinstance(v, dict), 'an object'),
    'proposals': (lambda v: isinstance(v, dict), 'an object'),
    'cell_anchors': (_anchor_lists, 'lists of [x1, y1, x2, y2] per level'),
    'rpn_strides': (lambda v: isinstance(v, list) and len(v) > 0 and all(
        _is_int(x) for x in v), 'a list of integers'),
    'min_size': (_is_int, 'an integer'),
    'max_size': (_is_int, 'an integer'),
    'pad_stride': (_is_int, 'an integer'),
    'k_min': (_is_int, 'an integer'),
    'bbox_reg_weights': (lambda v: _numbers(v, 4), 'a list of 4 numbers'),
    'mask_thresh': (_is_number, 'a number'),
}


def check_runtime_types(runtime, path):
    """Every key of the ``runtime`` metadata ``predict`` reads, of its JSON
    type; one ``cell_anchors`` list per RPN stride."""
    for table, where in ((_RUNTIME, runtime),
                         (_PROPOSALS, runtime.get('proposals'))):
        if not isinstance(where, dict):
            break  # 'proposals' itself is reported by the first table
        for key, (ok, expected) in table.items():
            if key not in where or not ok(where[key]):
                got = (repr(where[key])[:60] if key in where
                       else 'missing')
                raise OnnxModelError(
                    '{}: runtime metadata {!r} is {}, expected {}'.format(
                        path, key, got, expected))
    if len(runtime['cell_anchors']) != len(runtime['rpn_strides']):
        raise OnnxModelError(
            '{}: runtime metadata has {} cell_anchors lists for {} '
            'rpn_strides'.format(path, len(runtime['cell_anchors']),
                                 len(runtime['rpn_strides'])))
