"""The metadata checks of model files (``utils/weights/model_io.py``)."""
import pytest

from utils.weights.model_io import ModelFileError, check_meta


def test_ema_metadata_is_a_decay():
    check_meta({'ema': 0.999})
    for bad in (1.0, 0, 'x'):
        with pytest.raises(ModelFileError, match=r"^m.npz: metadata 'ema' "
                           r"is .*, expected a decay between 0 and 1$"):
            check_meta({'ema': bad}, 'm.npz')
