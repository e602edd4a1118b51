"""The learning-rate schedule against hand-computed values."""
import math

import pytest

from utils.training.lr_schedule import WarmupCosineLR, WarmupStepLR


def test_warmup_and_steps_by_hand():
    s = WarmupStepLR(0.02, steps=(60, 80), warmup_iters=10,
                     warmup_factor=1. / 3)
    # it 0: 0.02 / 3; it 5: alpha 0.5 -> factor 1/3 * 0.5 + 0.5 = 2/3.
    assert s.lr_at(0) == pytest.approx(0.02 / 3)
    assert s.lr_at(5) == pytest.approx(0.02 * 2 / 3)
    assert s.lr_at(10) == pytest.approx(0.02)
    assert s.lr_at(59) == pytest.approx(0.02)
    assert s.lr_at(60) == pytest.approx(0.002)
    assert s.lr_at(80) == pytest.approx(0.0002)


def test_cosine_with_warmup_by_hand():
    s = WarmupCosineLR(0.04, max_iter=100, warmup_iters=10,
                       warmup_factor=1. / 3)
    # it 0: cos 0 = 1, warm 1/3; it 5: cos(pi/20), warm 2/3.
    assert s.lr_at(0) == pytest.approx(0.04 / 3)
    assert s.lr_at(5) == pytest.approx(
        0.04 * (1 + math.cos(math.pi * 0.05)) / 2 * 2 / 3)
    assert s.lr_at(10) == pytest.approx(0.04 * (1 + math.cos(0.1 * math.pi))
                                        / 2)
    assert s.lr_at(50) == pytest.approx(0.02)     # half way: cos = 0
    assert s.lr_at(75) == pytest.approx(0.04 * (1 - 0.5 ** 0.5) / 2)
    assert s.lr_at(100) == pytest.approx(0.) and s.lr_at(120) == 0.
