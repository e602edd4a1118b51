"""Array operations the models need, without parameters: boxes and their
coder, NMS, proposals, FPN levels, per-class detection, mask pasting and
targets, image preparation, random-state serialisation. The only part of
``utils`` that ``models/`` imports; it imports nothing above it. The
onnxruntime predictor (``utils/deploy/onnx_predict.py``) runs the same
post-processing, so the modules it uses import no chainer."""
