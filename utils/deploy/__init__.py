"""Running a trained model elsewhere: ONNX export (needs chainer and onnx)
and the onnxruntime predictor (needs onnxruntime, NumPy and OpenCV only,
never chainer)."""
