"""Weights from files: the project's npz format with its metadata, the
restricted unpickler, and the Detectron, detectron2 and MSRA converters
with their name tables. Every file here is treated as untrusted."""
