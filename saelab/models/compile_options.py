"""XLA compiler options of the jitted model forwards: on CPU, dots through oneDNN instead of YNNPACK.

jaxlib's CPU backend hands every dot and reduction to YNNPACK by default. On the forward's GEMMs (2,048 tokens
x 576 x 576..1,536, float32) oneDNN's kernels ran up to 50% faster on the 2-core Xeon, while YNNPACK's
reductions (the softmax, the norms) beat XLA's own, so the dots go to oneDNN and the reductions stay with
YNNPACK (docs/benchmarks.md has the measurements and the machine). The options are passed per
jitted function (`jax.jit(..., compiler_options=...)`), so they change the model forwards only, not the rest
of the process (training steps keep XLA's defaults), and nothing on other backends. An `XLA_FLAGS` that
already names one of these options is the user's choice of CPU dot library, and wins.
"""

from __future__ import annotations

import os
from typing import Any

import jax

ONEDNN_DOTS: dict[str, Any] = {
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_REDUCE",  # YNNPACK keeps reductions, not dots
    "xla_cpu_use_onednn": True,
    "xla_cpu_experimental_onednn_fusion_type": "LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT",
}


def forward_options(backend: str | None = None, xla_flags: str | None = None) -> dict[str, Any] | None:
    """The compiler options of a jitted model forward: ONEDNN_DOTS on CPU, None on other backends or when
    `XLA_FLAGS` sets any of them (`backend` and `xla_flags` default to JAX's backend and the environment)."""
    backend = jax.default_backend() if backend is None else backend
    flags = os.environ.get("XLA_FLAGS", "") if xla_flags is None else xla_flags
    if backend != "cpu" or any(name in flags for name in ONEDNN_DOTS):
        return None
    return dict(ONEDNN_DOTS)
