import numpy as np
import pytest

from spiralprune.core.errors import InputError
from spiralprune.deploy.backends.ort_trt import shape_profiles


def test_profiles_span_the_batch_sizes_and_tune_for_the_first():
    inputs = {"input": (["batch", 3, 16, 16], np.dtype(np.float32)), "mask": ([1, 4], np.dtype(np.bool_))}
    assert shape_profiles(inputs, [4, 1, 16]) == {
        "trt_profile_min_shapes": "input:1x3x16x16,mask:1x4",
        "trt_profile_opt_shapes": "input:4x3x16x16,mask:1x4",
        "trt_profile_max_shapes": "input:16x3x16x16,mask:1x4",
    }


def test_static_models_need_no_profile_and_other_dynamic_dims_are_refused():
    assert shape_profiles({"input": ([1, 3, 16, 16], np.dtype(np.float32))}, [1]) is None
    with pytest.raises(InputError, match="besides the batch"):
        shape_profiles({"ids": (["batch", "seq"], np.dtype(np.int64))}, [1])
