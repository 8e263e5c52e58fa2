"""A SynthSAEBench world in JAX: its true features, bias, firing probabilities, correlation factor, magnitudes
and hierarchy (arXiv 2602.14687 sec. 3; `sae_lens.synthetic.SyntheticModel`).

`make_world(cfg)` follows SAELens's recipe step for step. The deterministic parts (Zipf probabilities, the
forest, its compensation, the mean magnitudes) equal SAELens's; the random draws (feature directions, bias,
correlation factor, magnitude spreads) come from JAX's generator, so they have SAELens's distribution but not
its values. `save_world` writes SAELens's own files (`synthetic_model_config.json`,
`synthetic_model.safetensors`, `hierarchy.json`; `SyntheticModel.load_from_disk` reads them) plus the two
magnitude vectors SAELens does not store; `load_world` reads either side's.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from safetensors.numpy import load_file, save_file

from saelab.synth import hierarchy as hier
from saelab.synth.config import WorldConfig
from saelab.synth.hierarchy import Hierarchy

CONFIG_FILE = "synthetic_model_config.json"  # SAELens's file names (sae_lens.synthetic.synthetic_model)
WEIGHTS_FILE = "synthetic_model.safetensors"
HIERARCHY_FILE = "hierarchy.json"
MIN_DIAG = 0.01  # SAELens's floor on 1 - |F_i|^2 (generate_random_low_rank_correlation_matrix)


class World(NamedTuple):
    """Everything that defines the samples of one world; arrays are float32."""

    cfg: WorldConfig
    features: jax.Array  # (N, d) unit true feature directions f_i
    bias: jax.Array  # (d,) b
    probs: jax.Array  # (N,) firing probability after hierarchy compensation
    corr_factor: jax.Array | None  # (N, r) low-rank correlation factor F, None: independent firing
    corr_diag: jax.Array | None  # (N,) 1 - |F_i|^2
    mean_mag: jax.Array  # (N,) mu_i
    std_mag: jax.Array  # (N,) sigma_i
    hierarchy: Hierarchy

    @property
    def num_features(self) -> int:
        return self.features.shape[0]

    @property
    def hidden_dim(self) -> int:
        return self.features.shape[1]


def make_world(cfg: WorldConfig) -> World:
    """Build the world `cfg` describes (see the module docstring for what equals SAELens's)."""
    n, d = cfg.num_features, cfg.hidden_dim
    k_dir, k_bias, k_corr, k_std = jax.random.split(jax.random.key(cfg.seed), 4)
    h = hier.build(hier.generate_forest(cfg), n)
    base = zipf_probabilities(cfg)
    probs = base if h.empty or not cfg.compensate_probabilities else base * hier.compensation(h, base)
    feats = _unit_rows(jax.random.normal(k_dir, (n, d)))
    if cfg.orthogonalize_steps:
        feats = orthogonalize(feats, cfg.orthogonalize_steps, cfg.orthogonalize_lr)
    bias = jnp.zeros(d)
    if cfg.bias_norm > 0:
        b = jax.random.normal(k_bias, (d,))
        bias = b / jnp.maximum(jnp.linalg.norm(b), 1e-8) * cfg.bias_norm
    factor = diag = None
    if cfg.correlation_rank is not None:
        factor, diag = low_rank_correlation(k_corr, n, cfg.correlation_rank, cfg.correlation_scale)
    std = jnp.abs(cfg.std_magnitude_mean + jax.random.normal(k_std, (n,)) * cfg.std_magnitude_std)
    return World(
        cfg,
        feats.astype(jnp.float32),
        bias.astype(jnp.float32),
        jnp.asarray(np.minimum(probs, 1.0), jnp.float32),
        factor,
        diag,
        jnp.asarray(mean_magnitudes(cfg)),
        std.astype(jnp.float32),
        h,
    )


def zipf_probabilities(cfg: WorldConfig) -> np.ndarray:
    """(N,) float32 `p_min + (p_max - p_min)(r_i - r_N)/(r_1 - r_N)`, r_i = i^-exponent (SAELens, float32)."""
    if cfg.num_features == 1:
        return np.array([cfg.max_prob], np.float32)
    r = 1.0 / np.arange(1, cfg.num_features + 1, dtype=np.float32) ** np.float32(cfg.zipf_exponent)
    lo, hi = r.min(), r.max()
    return (np.float32(cfg.min_prob) + np.float32(cfg.max_prob - cfg.min_prob) * (r - lo) / (hi - lo)).astype(
        np.float32
    )


def mean_magnitudes(cfg: WorldConfig) -> np.ndarray:
    """(N,) float32 mu_i, linear from `mean_magnitude_start` to `mean_magnitude_end`, bit for bit as
    torch.linspace computes it: a float32 step, the first half counted up from the start and the second down
    from the end, each value a fused multiply-add (one rounding: exact in float64, then rounded)."""
    n, a, b = cfg.num_features, cfg.mean_magnitude_start, cfg.mean_magnitude_end
    if n == 1:
        return np.array([a], np.float32)
    step = np.float64(np.float32(b - a) / np.float32(n - 1))
    i = np.arange(n, dtype=np.float64)
    return np.where(i < n // 2, a + step * i, b - step * (n - 1 - i)).astype(np.float32)


def low_rank_correlation(key: jax.Array, n: int, rank: int, scale: float) -> tuple[jax.Array, jax.Array]:
    """(F (n, rank) with N(0, scale^2) entries, rows with |F_i|^2 > 1 - MIN_DIAG shrunk onto it; 1 - |F_i|^2)."""
    f = jax.random.normal(key, (n, rank)) * scale
    sq = jnp.sum(f * f, axis=1)
    capped = 1.0 - sq < MIN_DIAG
    f = jnp.where(capped[:, None], f * jnp.sqrt((1 - MIN_DIAG) / jnp.maximum(sq, 1e-30))[:, None], f)
    return f.astype(jnp.float32), (1.0 - jnp.sum(f * f, axis=1)).astype(jnp.float32)


def orthogonalize(feats: jax.Array, steps: int, lr: float) -> jax.Array:
    """SAELens's `orthogonalize_embeddings`: Adam on `sum_{i!=j} (f_i.f_j)^2 + N sum_i (|f_i|^2 - 1)^2` from
    unit rows, then renormalised. The off-diagonal sum is `|F^T F|_F^2 - sum_i |f_i|^4` (a d x d Gram instead
    of N x N; the same value)."""
    n = feats.shape[0]

    def loss(f: jax.Array) -> jax.Array:
        sq = jnp.sum(f * f, axis=1)  # (N,)
        gram = f.T @ f  # (d, d)
        return jnp.sum(gram * gram) - jnp.sum(sq * sq) + n * jnp.sum((sq - 1.0) ** 2)

    tx = optax.adam(lr)

    @jax.jit
    def run(f: jax.Array) -> jax.Array:
        def step(carry, _):
            f, s = carry
            g = jax.grad(loss)(f)
            u, s = tx.update(g, s, f)
            return (optax.apply_updates(f, u), s), None

        (f, _), _ = jax.lax.scan(step, (f, tx.init(f)), None, length=steps)
        return _unit_rows(f)

    return run(_unit_rows(feats))


def save_world(world: World, path: str | Path) -> Path:
    """Write the world in SAELens's format (loadable by `SyntheticModel.load_from_disk`) plus `mean_magnitudes`
    and `std_magnitudes`, which SAELens regenerates from the config instead of storing."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {
        "feature_vectors": np.asarray(world.features),
        "bias": np.asarray(world.bias),
        "firing_probabilities": np.asarray(world.probs),
        "mean_magnitudes": np.asarray(world.mean_mag),
        "std_magnitudes": np.asarray(world.std_mag),
    }
    if world.corr_factor is not None:
        tensors["correlation_factor"] = np.asarray(world.corr_factor)
        tensors["correlation_diag"] = np.asarray(world.corr_diag)
    save_file(tensors, str(path / WEIGHTS_FILE))
    (path / CONFIG_FILE).write_text(json.dumps(world.cfg.to_saelens(), indent=2))
    if not world.hierarchy.empty:
        (path / HIERARCHY_FILE).write_text(json.dumps({"roots": world.hierarchy.roots}))
    return path


def load_world(path: str | Path) -> World:
    """A world saved by `save_world` or by SAELens's `SyntheticModel.save`. SAELens does not store the
    magnitude spreads sigma_i: they are torch's folded-normal draws at seed + 1, regenerated here with torch
    (the `torch` extra) exactly as `SyntheticModel` regenerates them on load."""
    path = Path(path)
    if not (path / CONFIG_FILE).exists():
        raise FileNotFoundError(f"{path} holds no {CONFIG_FILE}: not a saved synthetic world")
    cfg = WorldConfig.from_saelens(json.loads((path / CONFIG_FILE).read_text()))
    w = load_file(str(path / WEIGHTS_FILE))
    h_file = path / HIERARCHY_FILE
    roots = json.loads(h_file.read_text())["roots"] if h_file.exists() else []
    std = w["std_magnitudes"] if "std_magnitudes" in w else _torch_folded_normal(cfg)
    mean = w["mean_magnitudes"] if "mean_magnitudes" in w else mean_magnitudes(cfg)
    corr = "correlation_factor" in w
    return World(
        cfg,
        jnp.asarray(w["feature_vectors"], jnp.float32),
        jnp.asarray(w["bias"], jnp.float32),
        jnp.asarray(w["firing_probabilities"], jnp.float32),
        jnp.asarray(w["correlation_factor"], jnp.float32) if corr else None,
        jnp.asarray(w["correlation_diag"], jnp.float32) if corr else None,
        jnp.asarray(mean, jnp.float32),
        jnp.asarray(std, jnp.float32),
        hier.build(roots, cfg.num_features),
    )


def _torch_folded_normal(cfg: WorldConfig) -> np.ndarray:
    try:
        import torch
    except ImportError:
        raise ValueError(
            "this world was saved by SAELens, which stores no magnitude spreads; they are torch draws "
            "(seed + 1), so loading it needs torch: pip install -e '.[torch]'"
        ) from None
    g = torch.Generator().manual_seed(cfg.seed + 1)
    draws = cfg.std_magnitude_mean + torch.randn(cfg.num_features, generator=g) * cfg.std_magnitude_std
    return draws.abs().numpy().astype(np.float32)


def _unit_rows(x: jax.Array) -> jax.Array:
    return x / jnp.maximum(jnp.linalg.norm(x, axis=1, keepdims=True), 1e-8)


def erfinv_threshold(p: jax.Array) -> jax.Array:
    """The Gaussian copula's cut `sqrt(2) erfinv(1 - 2p)`: a standard normal exceeds it with probability p."""
    return math.sqrt(2) * jax.scipy.special.erfinv(1 - 2 * p)
