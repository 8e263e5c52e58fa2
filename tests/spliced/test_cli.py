"""`saelab splice steer` and `saelab splice explain` on SmolLM2 with a small random SAE saved in SAELens format."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saelab.cli import main
from saelab.sae import ReLUConfig, SAEParams, save_saelens

HOOK = "blocks.2.hook_resid_post"


@pytest.fixture(scope="module")
def sae_dir(tmp_path_factory) -> Path:
    d, m = 576, 64
    k1, k2 = jax.random.split(jax.random.key(0))
    w = jax.random.normal(k1, (d, m)) / np.sqrt(d)
    params = SAEParams(w, 0.05 * jax.random.normal(k2, (m,)), w.T, jnp.zeros((d,)), None)
    out = tmp_path_factory.mktemp("sae") / "sae"
    save_saelens(out, params, ReLUConfig(d_in=d, d_sae=m), {"model_name": "smollm2-135m", "hook_name": HOOK})
    return out


def test_steer_with_alpha_zero_prints_the_same_text_twice(sae_dir: Path, capsys) -> None:
    args = [
        "splice",
        "steer",
        str(sae_dir),
        "The capital of France is",
        "--latent",
        "3",
        "--alpha",
        "0",
        "--max-new-tokens",
        "5",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "clean" in out and "latent 3 alpha 0.0" in out
    cells = [ln for ln in out.splitlines() if "Paris" in ln]
    assert cells and all(ln.count("Paris") == 2 for ln in cells)  # the same continuation in both columns


def test_steer_needs_alpha_or_clamp(sae_dir: Path, capsys) -> None:
    assert main(["splice", "steer", str(sae_dir), "Hi", "--latent", "3"]) == 2
    assert "--alpha" in capsys.readouterr().err


def test_explain_lists_latents_and_their_effects_on_the_target(sae_dir: Path, capsys) -> None:
    assert (
        main(["splice", "explain", str(sae_dir), "The capital of France is", "--target", " Paris", "--n-total", "2"])
        == 0
    )
    out = capsys.readouterr().out
    assert "top latents per position" in out and "what drives ' Paris'" in out and "ablated logit" in out
    rows = [
        ln for ln in out.split("what drives")[1].splitlines() if ln.startswith("│") and ln[1:].strip()[:1].isdigit()
    ]
    assert rows  # one row per attributed latent
