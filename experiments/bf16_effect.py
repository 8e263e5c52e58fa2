"""What a bfloat16 harvest does to the stored activations, and to a trained SAE's explained variance on them.

The real harvester (`saelab.harvest.run`) stores the same held-out windows three ways: the float32 model into
a float32 store (the reference), the float32 model into a bfloat16 store (saelab's default) and the bfloat16
model into a bfloat16 store (`--model-dtype bfloat16`; its activations are bfloat16 already, so a float32 store
would hold the same values). For each it reports, against the reference, the relative difference of every token's
activation vector (||x - x_ref|| / ||x_ref||: mean and max over tokens, BOS positions excluded: their norms
are outliers) and the largest elementwise difference relative to the largest reference value; then, given a
trained SAE (`--sae`, default the demo's export when it exists), its explained variance on each variant.

    python experiments/bf16_effect.py [--quick] [--tokens N] [--layer 6] [--sae checkpoints/demo/sae]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent / "bench"))
from common import finish, parser  # noqa: E402

VARIANTS = {  # name: (model dtype, store dtype)
    "reference": ("float32", "float32"),
    "store_bf16": ("float32", "bfloat16"),
    "model_bf16": ("bfloat16", "bfloat16"),
}
DEMO_SAE = Path("checkpoints/demo/sae")


def harvest_variants(model_name: str, hook: str, tokens: int, tmp: Path) -> dict[str, np.ndarray]:
    """Each variant's stored activations at `hook`, (tokens without BOS, d_model) float32, the same windows."""
    from saelab.harvest import HarvestConfig, run
    from saelab.models import Model
    from saelab.store import ActivationStore

    out: dict[str, np.ndarray] = {}
    models: dict[str, Model] = {}
    for name, (model_dtype, dtype) in VARIANTS.items():
        model = models.setdefault(model_dtype, Model.load(model_name, dtype=model_dtype))
        cfg = HarvestConfig(
            model=model_name,
            hooks=[hook],
            split="heldout",
            tokens=tokens,
            model_dtype=model_dtype,
            dtype=dtype,
            out=tmp / name,
        )
        store = ActivationStore(run(cfg, model=model, progress=False))
        keep = np.asarray(store.pos) != 0  # (n_tokens,) BOS excluded
        out[name] = np.asarray(store.activations(hook), np.float32)[keep]
    return out


def differences(x: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """Per-token relative L2 difference (mean, max) and the largest elementwise difference over max |ref|."""
    rel = np.linalg.norm(x - ref, axis=1) / np.linalg.norm(ref, axis=1)  # (tokens,)
    return {
        "rel_diff_mean": float(rel.mean()),
        "rel_diff_max": float(rel.max()),
        "max_abs_diff_over_max_abs": float(np.abs(x - ref).max() / np.abs(ref).max()),
    }


def explained_variance(sae_path: Path, x: np.ndarray) -> float:
    """1 - SSE / SST of the SAE's reconstruction of x (raw units), in batches of 4096 tokens."""
    import jax.numpy as jnp

    from saelab.sae import load_sae

    sae = load_sae(sae_path)
    x_hat = np.concatenate([np.asarray(sae(jnp.asarray(x[i : i + 4096]))) for i in range(0, len(x), 4096)])
    return float(1.0 - ((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())


def main() -> None:
    ap = parser(__doc__, "bf16_effect", "8,192 tokens", layer=6)
    ap.add_argument("--tokens", type=int, help="held-out tokens harvested per variant (default 65,536)")
    ap.add_argument("--sae", type=Path, help=f"a trained SAE of the hook (default {DEMO_SAE} if it exists)")
    a = ap.parse_args()
    tokens = a.tokens or (8_192 if a.quick else 65_536)
    hook = f"blocks.{a.layer}.hook_resid_post"
    sae = a.sae or (DEMO_SAE if DEMO_SAE.exists() else None)
    with tempfile.TemporaryDirectory() as tmp:
        acts = harvest_variants(a.model, hook, tokens, Path(tmp))
    ref = acts["reference"]
    result: dict = {"model": a.model, "hook": hook, "tokens": len(ref), "sae": None if sae is None else str(sae)}
    for name, x in acts.items():
        row = differences(x, ref) if name != "reference" else {}
        if sae is not None:
            row["explained_variance"] = explained_variance(sae, x)
        result[name] = row
        print(name, " ".join(f"{k}={v:.4g}" for k, v in row.items()), flush=True)
    bf = result["model_bf16"]
    ev = (
        {}
        if sae is None
        else {"ev_f32": result["reference"]["explained_variance"], "ev_bf16": bf["explained_variance"]}
    )
    finish(a, result, rel_diff_mean=bf["rel_diff_mean"], rel_diff_max=bf["rel_diff_max"], **ev)


if __name__ == "__main__":
    main()
