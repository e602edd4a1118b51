"""Array operations the models need, without parameters: boxes and their
coder, NMS, per-class detection, mask pasting and targets, image
preparation, random-state serialisation. The only part of ``utils`` that
``models/`` imports; it imports nothing above it."""
