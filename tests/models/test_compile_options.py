"""The model forwards' XLA options: oneDNN dots on CPU, valid for the installed jaxlib, the same numbers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from saelab.models.compile_options import ONEDNN_DOTS, forward_options


def test_options_only_on_cpu_and_not_over_the_users_flags() -> None:
    assert forward_options("cpu", "") == ONEDNN_DOTS
    assert forward_options("cpu", "--xla_force_host_platform_device_count=2") == ONEDNN_DOTS
    assert forward_options("gpu", "") is None
    assert forward_options("cpu", "--xla_cpu_use_onednn=false") is None
    assert forward_options("cpu", "--xla_cpu_experimental_ynn_fusion_type=individual_dot") is None


def test_the_options_compile_dots_to_onednn_with_the_default_results() -> None:
    rng = np.random.default_rng(0)
    h = jnp.asarray(rng.normal(size=(2, 16, 64)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(64, 96)), jnp.float32)

    def f(h, w):
        return jnp.einsum("bsm,mn->bsn", h, w), jnp.einsum("bsm,btm->bst", h, h)

    tuned = jax.jit(f, compiler_options=forward_options("cpu", ""))
    assert "onednn" in tuned.lower(h, w).compile().as_text()
    for got, want in zip(tuned(h, w), jax.jit(f)(h, w), strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-4)
