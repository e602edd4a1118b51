"""Strings from files, made safe to print on a terminal.

Names and paths read from a model file, an ONNX file's metadata or a COCO
file (class names, image file names) may hold line breaks or terminal
escape sequences (``ESC ] 0 ; title BEL`` retitles a terminal). Every such
string reaches stdout or stderr through ``printable``, which writes each
character Python does not call printable (controls, format characters
such as the bidirectional overrides, separators other than the space,
unassigned code points) as its ``repr`` escape: ``\\x1b``, ``\\n``,
``\\u202e``. Letters of every script stay as they are.
"""


def printable(text):
    """``text`` (any object, through ``str``) as one printable line."""
    return ''.join(c if c.isprintable() else repr(c)[1:-1]
                   for c in str(text))
