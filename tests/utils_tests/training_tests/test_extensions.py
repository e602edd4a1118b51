"""The learning-rate schedule against hand-computed values."""
import pytest

from utils.training.lr_schedule import WarmupStepLR


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
