"""The compiled train step keeps its fast paths: checked in the optimised HLO, not by timing.

A silent fallback (XLA turning `top_k` into a full-row sort of (batch, d_sae), measured at 5 s instead of
0.1 s per step at batch 4096, d_sae 4608) changes no value, so only the compiled program can show it.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import pytest

import saelab.sae.auxk as auxk
import saelab.sae.sparse as sparse
import saelab.sae.topk_select as topk_select
from saelab.sae import cpu_kernels, init_params, sae_config
from saelab.train.config import OptimConfig
from saelab.train.state import init_state, make_optimizer
from saelab.train.step import make_train_step

BATCH, D_IN, D_SAE, K = 256, 32, 2048, 16


def compiled_step_hlo(architecture: str = "topk") -> str:
    """Optimised HLO text of the jitted, donated train step at a small but realistic shape."""
    cfg = sae_config(architecture=architecture, d_in=D_IN, d_sae=D_SAE, k=K)
    tx = make_optimizer(OptimConfig(), steps=100, unit_norm=True)
    state = init_state(init_params(jax.random.key(0), cfg), tx, jax.random.key(1))
    step = make_train_step(cfg, tx, scale=1.0, dead_tokens=1000, sparsity_warmup_steps=0)
    x = jnp.ones((BATCH, D_IN), jnp.float32)
    return jax.jit(step, donate_argnums=0).lower(state, x).compile().as_text()


def full_row_sorts(hlo: str) -> list[str]:
    """The `sort` instructions over a (BATCH, D_SAE)-shaped operand: what a top-k fallback looks like."""
    shape = re.compile(rf"\[{BATCH},{D_SAE}\]")
    return [ln.strip() for ln in hlo.splitlines() if re.search(r"= .*\bsort\(", ln) and shape.search(ln)]


def topk_calls(hlo: str, target: str = "TopK") -> list[str]:
    """The custom calls to `target` whose output is (BATCH, K): the partial selection the step should use
    (XLA's TopK, or saelab's CPU kernel `saelab_top_k_bias`)."""
    return [ln for ln in hlo.splitlines() if f'custom_call_target="{target}"' in ln and f"[{BATCH},{K}]" in ln]


@pytest.mark.skipif(
    jax.default_backend() != "cpu",
    reason="checks XLA CPU's lowering of top_k (its TopK custom call); GPU and TPU lower top_k to other kernels",
)
@pytest.mark.parametrize("kernels", ["1", "0"])
def test_topk_step_selects_without_sorting_rows(monkeypatch: pytest.MonkeyPatch, kernels: str) -> None:
    """With saelab's CPU kernels the step selects in one call, screened on CPUs that multiply bfloat16 in
    hardware (`saelab_screened_top_k`), else `saelab_top_k_bias`; without them, in XLA's TopK."""
    monkeypatch.setenv("SAELAB_CPU_KERNELS", kernels)
    target = "TopK"
    if kernels == "1":
        target = "saelab_screened_top_k" if cpu_kernels.fast_bfloat16() else "saelab_top_k_bias"
    hlo = compiled_step_hlo()
    assert topk_calls(hlo, target), f"the train step no longer uses {target} for the k largest pre-activations"
    assert not full_row_sorts(hlo), "the train step sorts whole (batch, d_sae) rows:\n" + "\n".join(
        full_row_sorts(hlo)[:3]
    )


def test_detector_sees_a_sort_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above can fail: a top-k written as a full sort is caught."""

    def sorting_top_k(a: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
        idx = jnp.argsort(-a, axis=-1)[..., :k]
        return jnp.take_along_axis(a, idx, axis=-1), idx

    monkeypatch.setenv("SAELAB_CPU_KERNELS", "0")
    for module in (sparse, auxk, topk_select):
        monkeypatch.setattr(module, "top_k", sorting_top_k)
    hlo = compiled_step_hlo()
    assert full_row_sorts(hlo)
    assert not topk_calls(hlo)
