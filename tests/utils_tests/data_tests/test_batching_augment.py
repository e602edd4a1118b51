"""The batcher's augmentations: drawn from its one seeded generator in a
fixed order (flip, crop, perspective, colour jitter, mosaic, mixup, scale),
nothing drawn when off, and restored exactly from a snapshot."""
import chainer
import numpy

from tests.helpers.tiny_training import examples
from utils.data.batching import TrainBatcher
from utils.data.coco_dataset import flip_example
from utils.data.color_jitter import ColorJitter
from utils.data.mixup import MixUp, mixup_examples
from utils.data.mosaic import Mosaic, mosaic_examples
from utils.data.perspective import Perspective
from utils.data.random_crop import RandomCrop
from utils.ops.image import prepare

SCALES = (48, 64)
RGB_MEAN = (122.7717, 115.9465, 102.9801)


def _batcher(seed=3, on=True, mixup=None, mosaic=None, perspective=None):
    crop = RandomCrop((0.5, 1.5), 0.25, RGB_MEAN)
    jitter = ColorJitter(0.4, 0.4, 0.4, 0.1)
    return TrainBatcher(SCALES, 96, 32, flip=True, seed=seed,
                        crop=crop if on else None,
                        color_jitter=jitter if on else None,
                        mosaic=Mosaic(mosaic, 0.25, RGB_MEAN)
                        if mosaic else None,
                        mixup=MixUp(mixup, RGB_MEAN) if mixup else None,
                        perspective=Perspective(perspective, 0.25, RGB_MEAN)
                        if perspective is not None else None)


def _assert_same(out_a, out_b):
    x_a, scales_a, sizes_a, bboxes_a, labels_a, segms_a = out_a
    x_b, scales_b, sizes_b, bboxes_b, labels_b, segms_b = out_b
    numpy.testing.assert_array_equal(x_a, x_b)
    assert scales_a == scales_b and sizes_a == sizes_b
    for a, b in zip(bboxes_a + labels_a, bboxes_b + labels_b):
        numpy.testing.assert_array_equal(a, b)
    for segm_a, segm_b in zip(segms_a, segms_b):
        for a, b in zip(segm_a, segm_b):
            for pa, pb in zip(a, b):
                numpy.testing.assert_array_equal(pa, pb)


def test_draw_order_matches_a_hand_written_pipeline():
    batch = examples(3, seed=1)
    out = _batcher()(batch)
    batcher = _batcher()   # its crop and jitter, driven by our generator
    rng = numpy.random.RandomState(3)
    for i, (img, bbox, label, segms) in enumerate(batch):
        if rng.rand() < 0.5:
            img, bbox, segms = flip_example(img, bbox, segms)
        img, bbox, label, segms = batcher.crop(img, bbox, label, segms, rng)
        img = batcher.color_jitter(img, rng)
        x, scale, size = prepare(img, SCALES[rng.randint(2)], 96, 32)
        assert out[1][i] == scale and out[2][i] == size
        numpy.testing.assert_array_equal(out[0][i, :, :x.shape[1],
                                                :x.shape[2]], x)
        numpy.testing.assert_allclose(out[3][i], bbox * scale, rtol=1e-6)
        numpy.testing.assert_array_equal(out[4][i], label)
        assert len(out[5][i]) == len(segms)
        for a, b in zip(out[5][i], segms):
            for pa, pb in zip(a, b):
                numpy.testing.assert_array_equal(pa, pb)


def test_perspective_is_drawn_between_crop_and_jitter():
    batch = examples(3, seed=1)
    running = _batcher(perspective=0.05)
    out = running(batch)
    batcher = _batcher(perspective=0.05)   # its transforms, our generator
    rng = numpy.random.RandomState(3)
    for i, (img, bbox, label, segms) in enumerate(batch):
        if rng.rand() < 0.5:
            img, bbox, segms = flip_example(img, bbox, segms)
        img, bbox, label, segms = batcher.crop(img, bbox, label, segms, rng)
        img, bbox, label, segms = batcher.perspective(img, bbox, label,
                                                      segms, rng)
        img = batcher.color_jitter(img, rng)
        x, scale, size = prepare(img, SCALES[rng.randint(2)], 96, 32)
        numpy.testing.assert_array_equal(out[0][i, :, :x.shape[1],
                                                :x.shape[2]], x)
        numpy.testing.assert_allclose(out[3][i], bbox * scale, rtol=1e-6)
        numpy.testing.assert_array_equal(out[4][i], label)
        assert len(out[5][i]) == len(segms)
    assert running.rng.rand() == rng.rand()   # no draw unaccounted for


def test_perspective_zero_draws_nothing():
    batch = examples(3, seed=2)
    plain, zero = _batcher(), _batcher(perspective=0.)
    _assert_same(plain(batch), zero(batch))
    assert plain.rng.rand() == zero.rng.rand()


def _augment(batcher, example, rng):
    img, bbox, label, segms = example
    if rng.rand() < 0.5:
        img, bbox, segms = flip_example(img, bbox, segms)
    img, bbox, label, segms = batcher.crop(img, bbox, label, segms, rng)
    return batcher.color_jitter(img, rng), bbox, label, segms


def test_mosaic_and_mixup_match_a_hand_written_pipeline():
    mixing = _batcher(mixup=0.5, mosaic=0.5)
    batcher = _batcher()
    rng = numpy.random.RandomState(3)
    n_mixed = n_mosaics = 0
    for seed in (6, 7, 8):
        batch = examples(3, seed=seed)
        out = mixing(batch)
        for i in range(3):
            img, bbox, label, segms = _augment(batcher, batch[i], rng)
            if rng.rand() < 0.5:   # a mosaic with the next three, drawn anew
                H, W = img.shape[1:]
                centre = (rng.randint(H // 4, 3 * H // 4 + 1),
                          rng.randint(W // 4, 3 * W // 4 + 1))
                others = [_augment(batcher, batch[(i + k) % 3], rng)
                          for k in (1, 2, 3)]
                img, bbox, label, segms = mosaic_examples(
                    [(img, bbox, label, segms)] + others, centre, RGB_MEAN,
                    0.25)
                n_mosaics += 1
            if rng.rand() < 0.5:   # mixed with the next example, drawn anew
                lam = rng.beta(32, 32)
                partner = _augment(batcher, batch[(i + 1) % 3], rng)
                img, bbox, label, segms = mixup_examples(
                    (img, bbox, label, segms), partner, lam, RGB_MEAN)
                n_mixed += 1
            x, scale, size = prepare(img, SCALES[rng.randint(2)], 96, 32)
            numpy.testing.assert_array_equal(out[0][i, :, :x.shape[1],
                                                    :x.shape[2]], x)
            numpy.testing.assert_allclose(out[3][i], bbox * scale,
                                          rtol=1e-6)
            numpy.testing.assert_array_equal(out[4][i], label)
            assert len(out[5][i]) == len(segms)
    assert 0 < n_mixed < 9 and 0 < n_mosaics < 9   # some, not all


def test_off_draws_what_the_detectron_recipe_draws():
    batch = examples(4, seed=2)
    plain = TrainBatcher(SCALES, 96, 32, flip=True, seed=3)
    off = _batcher(on=False)
    _assert_same(plain(batch), off(batch))
    assert plain.rng.rand() == off.rng.rand()   # as many draws
    # On, it draws more and changes the images.
    plain, aug = TrainBatcher(SCALES, 96, 32, flip=True, seed=3), _batcher()
    x_plain, x_aug = plain(batch)[0], aug(batch)[0]
    assert x_plain.shape != x_aug.shape or not (x_plain == x_aug).all()
    assert aug.rng.rand() != plain.rng.rand()


def test_snapshot_restores_the_draws(tmp_path):
    b1, b2 = examples(2, seed=4), examples(2, seed=5)
    full = _batcher(mixup=0.5, mosaic=0.5, perspective=0.05)
    full(b1)
    expect = full(b2)
    first = _batcher(mixup=0.5, mosaic=0.5, perspective=0.05)
    first(b1)
    path = str(tmp_path / 'batcher.npz')
    chainer.serializers.save_npz(path, first)
    resumed = _batcher(seed=99, mixup=0.5, mosaic=0.5,   # state wins
                       perspective=0.05)
    chainer.serializers.load_npz(path, resumed)
    _assert_same(resumed(b2), expect)
