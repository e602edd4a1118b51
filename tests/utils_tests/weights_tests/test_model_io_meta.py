"""The metadata checks of model files (``utils/weights/model_io.py``)."""
import pytest

from utils.weights.model_io import ModelFileError, check_meta, preset_fields


def test_ema_metadata_is_a_decay():
    check_meta({'ema': 0.999})
    for bad in (1.0, 0, 'x'):
        with pytest.raises(ModelFileError, match=r"^m.npz: metadata 'ema' "
                           r"is .*, expected a decay between 0 and 1$"):
            check_meta({'ema': bad}, 'm.npz')


def test_preset_norm_must_be_a_known_norm():
    """A 'syncbn' model is saved as 'bn'; any other name would fail deep
    in the model builder, so it is refused naming the file."""
    assert preset_fields({'preset': {'norm': 'bn'}}, 'm.npz')['norm'] == 'bn'
    with pytest.raises(ModelFileError, match=r"^m.npz: preset field 'norm' "
                       r"is 'syncbn', expected one of affine, gn, bn$"):
        preset_fields({'preset': {'norm': 'syncbn'}}, 'm.npz')
