"""The floating-point dtypes saelab stores and computes in, by the names configs use.

One table for the activation store's storage dtype, the harvest's output cast and a model's parameter
dtype: NumPy scalar types (bfloat16 from ml_dtypes), which JAX accepts as they are.
"""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np

FLOAT_DTYPES: dict[str, Any] = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16, "float16": np.float16}


def float_dtype(name: str, what: str = "dtype") -> Any:
    """The dtype called `name`; ValueError naming `what` and the known names otherwise."""
    try:
        return FLOAT_DTYPES[name]
    except KeyError:
        raise ValueError(f"{what} {name!r} is not one of {sorted(FLOAT_DTYPES)}") from None
