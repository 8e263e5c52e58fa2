"""One table of float dtype names for the store, the harvest and the models."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from saelab.runtime.dtypes import FLOAT_DTYPES, float_dtype


def test_one_dtype_table_for_store_model_and_harvest() -> None:
    from saelab.store.format import STORE_DTYPES

    assert STORE_DTYPES is FLOAT_DTYPES
    assert float_dtype("bfloat16") is ml_dtypes.bfloat16 and np.dtype(float_dtype("float16")) == np.float16
    with pytest.raises(ValueError, match=r"model dtype 'int8' is not one of \['bfloat16', 'float16', 'float32'\]"):
        float_dtype("int8", "model dtype")
