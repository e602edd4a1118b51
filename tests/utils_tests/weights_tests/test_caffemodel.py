"""The caffemodel wire-format reader and writer against protobuf's own
encoder and decoder (chainer's ``caffe_pb2``, an independent reference)."""
import os
import subprocess
import sys

import numpy
import pytest

from utils.weights.caffemodel import CaffemodelError, read_caffemodel, write_caffemodel

# The repository root, three folders up.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))

# Runs in its own process: chainer's caffe_pb2 was generated for protobuf 3
# and imports only with the pure-Python implementation, which must be
# chosen before protobuf is first imported.
PROTOBUF = r'''
import sys
from utils import compat
import numpy
from chainer.links.caffe.protobuf3 import caffe_pb2

net = caffe_pb2.NetParameter()
net.name = 'tiny'
conv = net.layer.add()
conv.name, conv.type = 'conv1', 'Convolution'
w = conv.blobs.add()
w.shape.dim.extend([2, 3, 1, 1])
w.data.extend(numpy.arange(6, dtype=numpy.float32) - 2.5)
b = conv.blobs.add()
b.num, b.channels, b.height, b.width = 1, 1, 1, 2    # legacy shape
b.double_data.extend([0.25, -1.5])
bn = net.layer.add()
bn.name, bn.type = 'bn_conv1', 'BatchNorm'
bn.batch_norm_param.eps = 1e-3
for values in ([1., 2.], [3., 4.], [2.]):
    blob = bn.blobs.add()
    blob.shape.dim.extend([len(values)])
    blob.data.extend(values)
relu = net.layer.add()
relu.name, relu.type = 'relu', 'ReLU'
old = net.layers.add()                                 # V1LayerParameter
old.name = 'fc'
blob = old.blobs.add()
blob.shape.dim.extend([3])
blob.data.extend([7., 8., 9.])
with open(sys.argv[1], 'wb') as f:
    f.write(net.SerializeToString())

other = caffe_pb2.NetParameter()
with open(sys.argv[2], 'rb') as f:
    other.ParseFromString(f.read())
layer = other.layer[0]
print(layer.name, layer.type, list(layer.blobs[0].shape.dim),
      list(layer.blobs[0].data), list(layer.blobs[1].data))
'''


def test_reader_and_writer_agree_with_protobuf(tmp_path):
    ours = str(tmp_path / 'ours.caffemodel')
    write_caffemodel(ours, [('scale1', 'Scale', [
        numpy.array([[1.5, -2.], [0., 3.25]], numpy.float32),
        numpy.array([4.], numpy.float32)])])
    theirs = str(tmp_path / 'theirs.caffemodel')
    env = dict(os.environ, PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION='python',
               PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, '-c', PROTOBUF, theirs, ours],
                          cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    # protobuf reads what we wrote
    assert proc.stdout.split() == [
        'scale1', 'Scale', '[2,', '2]', '[1.5,', '-2.0,', '0.0,', '3.25]',
        '[4.0]']
    # we read what protobuf wrote
    layers = read_caffemodel(theirs)
    assert sorted(layers) == ['bn_conv1', 'conv1', 'fc', 'relu']
    w, b = layers['conv1']['blobs']
    numpy.testing.assert_array_equal(
        w, (numpy.arange(6) - 2.5).reshape(2, 3, 1, 1))
    assert b.shape == (1, 1, 1, 2) and b.dtype == numpy.float32
    numpy.testing.assert_array_equal(b.ravel(), [0.25, -1.5])
    assert layers['bn_conv1']['eps'] == pytest.approx(1e-3)
    assert [x.tolist() for x in layers['bn_conv1']['blobs']] == [
        [1., 2.], [3., 4.], [2.]]
    assert layers['relu']['blobs'] == []
    numpy.testing.assert_array_equal(layers['fc']['blobs'][0], [7., 8., 9.])


def test_truncated_file_is_one_line(tmp_path):
    path = str(tmp_path / 'cut.caffemodel')
    write_caffemodel(path, [('fc', 'InnerProduct',
                             [numpy.ones((4, 4), numpy.float32)])])
    with open(path, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(data[:-7])
    with pytest.raises(CaffemodelError, match='not a readable caffemodel'):
        read_caffemodel(path)
