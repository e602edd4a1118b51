"""The hand-made example the crop and perspective tests work by hand."""
import numpy

H, W = 8, 10
FILL = (1., 2., 3.)


def example():
    """An 8 x 10 image of distinct values; instance A a polygon covering
    rows 1..3, columns 2..5 (box 2, 1, 5, 3), instance B a bitmap covering
    rows 5..6, columns 7..9 (box 7, 5, 9, 6)."""
    img = numpy.arange(3 * H * W, dtype=numpy.float32).reshape(3, H, W)
    bitmap = numpy.zeros((H, W), bool)
    bitmap[5:7, 7:10] = True
    bbox = numpy.array([[2, 1, 5, 3], [7, 5, 9, 6]], numpy.float32)
    segms = [[numpy.array([2, 1, 6, 1, 6, 4, 2, 4], numpy.float64)], bitmap]
    return img, bbox, numpy.array([1, 2], numpy.int32), segms
